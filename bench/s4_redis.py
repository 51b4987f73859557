"""S4: two Atende instances on one PostgreSQL and one Redis. A webhook enters instance A;
receivers sit on A and on B. Atende's figure is the p99 latency that crossing to B adds
(p99 on B − p99 on A, per batch); the baseline is a raw redis-py PUBLISH → SUBSCRIBE p99."""

from __future__ import annotations

from bench import loadgen
from bench.harness import (
    REDIS_URL,
    REPS,
    Row,
    atende_env,
    median,
    native_url,
    pg_database,
    run_in_process,
    seed_tenant,
    start_atende,
    tokens_for,
    webhook_spec,
)

RECEIVERS = 10


def run(quick: bool) -> list[Row]:
    rounds = 20 if quick else 60
    with pg_database() as db:
        env = atende_env(db, REDIS_URL)
        tenant = seed_tenant(env, agents=2 * RECEIVERS)
        tokens = tokens_for(tenant, 2 * RECEIVERS, per_user=1)
        with start_atende("s4-atende-a", env) as a, start_atende("s4-atende-b", env) as b:
            out = run_in_process(
                loadgen.cross_instance,
                {
                    "reps": REPS,
                    "rounds": rounds,
                    "local": {
                        "dialect": "native",
                        "urls": [native_url(a, tenant, t) for t in tokens[:RECEIVERS]],
                    },
                    "remote": {
                        "dialect": "native",
                        "urls": [native_url(b, tenant, t) for t in tokens[RECEIVERS:]],
                    },
                    "trigger": webhook_spec(a, tenant),
                },
            )
        raw = run_in_process(
            loadgen.redis_pubsub, {"url": REDIS_URL, "reps": REPS, "rounds": rounds * 2}
        )
    added = [float(v) for v in out["added_p99_ms"]]
    base = [float(v) for v in raw["p99_ms"]]
    local, remote = median(out["local_p99_ms"]), median(out["remote_p99_ms"])
    note = f"p99 on A {local:.2f} ms, on B {remote:.2f} ms" if local and remote else ""
    if out["lost"]:
        note += f"; {out['lost']} lost"
    return [
        Row(
            "S4",
            f"p99 added by the second instance, {RECEIVERS}+{RECEIVERS} sockets",
            "ms",
            median(added),
            median(base),
            "lower",
            "redis-py pub/sub",
            note,
            samples={"atende": added, "baseline": base},
        )
    ]
