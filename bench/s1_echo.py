"""S1: WebSocket echo over `/ws/chat` (`ping` → `pong`) vs a raw `websockets` echo server.

Atende gives each socket a budget of 20 frames a second (flood protection), so a socket here
sends at most 15 a second and throughput comes from many sockets: `SATURATE` sockets for the
throughput figure, 16 lightly loaded sockets (10 pings a second each) for the latency figures.
"""

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
)

LIGHT_CONNS = 16
PING = '{"type":"ping"}'


def run(quick: bool) -> list[Row]:
    saturate = 500 if quick else 1000
    duration = 2.0 if quick else 5.0
    loads: dict[str, Spec] = {
        "saturated": {"conns": saturate, "pace": 1 / 15, "warmup": 1.0, "duration": duration},
        "light": {"conns": LIGHT_CONNS, "pace": 0.1, "warmup": 0.5, "duration": duration},
    }
    with pg_database() as db:
        env = atende_env(db)
        tenant = seed_tenant(env, agents=-(-saturate // 3))
        with start_atende("s1-atende", env) as server, start_baseline("ws", "s1-ws") as raw:
            urls = [native_url(server, tenant, t) for t in tokens_for(tenant, saturate)]
            common: Spec = {"loads": loads, "reps": REPS, "message": PING}
            atende = run_in_process(
                loadgen.echo, {**common, "dialect": "native", "urls": urls, "expect": "pong"}
            )
            base = run_in_process(
                loadgen.echo,
                {**common, "dialect": "plain", "urls": [raw.ws_url] * saturate, "expect": "ping"},
            )
    refused = sum(int(r["refused"]) for runs in atende.values() for r in runs)
    note = f"{refused} pings refused by the frame budget" if refused else ""
    name = "websockets echo"
    sat, light = f"{saturate} sockets x <=15/s", f"{LIGHT_CONNS} sockets x 10/s"
    return [
        _row(
            f"throughput, {sat}",
            "/s",
            "higher",
            "rate",
            atende["saturated"],
            base["saturated"],
            name,
            note,
        ),
        _row(
            f"round trip p50, {light}",
            "ms",
            "lower",
            "p50_ms",
            atende["light"],
            base["light"],
            name,
        ),
        _row(
            f"round trip p99, {light}",
            "ms",
            "lower",
            "p99_ms",
            atende["light"],
            base["light"],
            name,
        ),
    ]


def _row(
    metric: str,
    unit: str,
    better: str,
    key: str,
    a: list[Spec],
    b: list[Spec],
    name: str,
    note: str = "",
) -> Row:
    xs, ys = [float(r[key]) for r in a], [float(r[key]) for r in b]
    return Row(
        "S1",
        metric,
        unit,
        median(xs),
        median(ys),
        better,
        name,
        note,
        samples={"atende": xs, "baseline": ys},
    )
