"""S5: end to end. WhatsApp-style webhooks at 50 and 200 a second, each delivered to 50 agent
sockets, vs a bare Starlette route that only broadcasts the body to 50 sockets: p50/p99 from the
start of the request to the last receipt, and the count received (must equal the count sent)."""

from __future__ import annotations

from bench import loadgen
from bench.harness import (
    REPS,
    Row,
    Spec,
    atende_env,
    median,
    native_url,
    pg_database,
    run_in_process,
    seed_tenant,
    start_atende,
    start_baseline,
    tokens_for,
    webhook_spec,
)

AGENTS = 50
RATES = (50, 200)


def run(quick: bool) -> list[Row]:
    duration = 1.0 if quick else 5.0
    runs: dict[tuple[int, str], list[Spec]] = {(r, t): [] for r in RATES for t in ("a", "b")}
    with pg_database() as db:
        env = atende_env(db)
        tenant = seed_tenant(env, agents=AGENTS)
        tokens = tokens_for(tenant, AGENTS, per_user=1)
        with (
            start_atende("s5-atende", env) as server,
            start_baseline("starlette", "s5-starlette") as bare,
        ):
            atende_spec: Spec = {
                "dialect": "native",
                "urls": [native_url(server, tenant, t) for t in tokens],
                "trigger": {**webhook_spec(server, tenant), "phones": 50},
            }
            bare_spec: Spec = {
                "dialect": "plain",
                "urls": [f"{bare.ws_url}/ws"] * AGENTS,
                "trigger": {
                    "kind": "broadcast",
                    "url": f"{bare.url}/broadcast",
                    "headers": {"Content-Type": "application/json"},
                },
            }
            for _ in range(REPS):
                for rate in RATES:
                    load = {"rate": rate, "duration": duration}
                    runs[(rate, "a")].append(
                        run_in_process(loadgen.stream, {**atende_spec, **load})
                    )
                    runs[(rate, "b")].append(run_in_process(loadgen.stream, {**bare_spec, **load}))
    rows: list[Row] = []
    for rate in RATES:
        a, b = runs[(rate, "a")], runs[(rate, "b")]
        received = sum(int(r["received"]) for r in a)
        expected = sum(int(r["expected_receipts"]) for r in a)
        sent = sum(int(r["sent"]) for r in a)
        accepted = sum(int(r["accepted"]) for r in a)
        note = f"received {received:,}/{expected:,}, accepted {accepted:,}/{sent:,} webhooks"
        if received != expected or accepted != sent:
            note += "  MISMATCH"
        for key, name in (("p50_ms", "p50"), ("p99_ms", "p99")):
            xs = [float(r[key]) for r in a if r[key] is not None]
            ys = [float(r[key]) for r in b if r[key] is not None]
            rows.append(
                Row(
                    "S5",
                    f"webhook -> {AGENTS} sockets at {rate}/s, {name}",
                    "ms",
                    median(xs),
                    median(ys),
                    "lower",
                    "Starlette broadcast",
                    note if name == "p99" else "",
                    samples={"atende": xs, "baseline": ys},
                )
            )
    return rows
