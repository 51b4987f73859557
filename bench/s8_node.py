"""S8: Socket.IO fan-out, Atende vs a Node `socket.io` server (npm package pinned by
bench/node/package-lock.json, installed with `npm ci` on first use) doing the same broadcast:
time from the trigger (Atende: the webhook POST; Node: POST /broadcast) to the last receipt."""

from __future__ import annotations

from bench import loadgen
from bench.harness import (
    REPS,
    Row,
    Spec,
    atende_env,
    ensure_node_modules,
    median,
    na_row,
    pg_database,
    run_in_process,
    seed_tenant,
    socketio_available,
    start_atende,
    start_node_socketio,
    tokens_for,
    webhook_spec,
)

SIZES = (100, 1000)
BASELINE = "Node socket.io"


def run(quick: bool) -> list[Row]:
    rounds = 10 if quick else 30
    reason = ensure_node_modules()
    if reason is not None:
        return [na_row("S8", f"Socket.IO fan-out to {s:,}", BASELINE, reason) for s in SIZES]
    rows: list[Row] = []
    with pg_database() as db:
        env = atende_env(db)
        tenant = seed_tenant(env, agents=-(-max(SIZES) // 3))
        tokens = tokens_for(tenant, max(SIZES))
        with start_atende("s8-atende", env) as server, start_node_socketio() as node:
            if not socketio_available(server):
                return [
                    na_row("S8", f"Socket.IO fan-out to {s:,}", BASELINE, "Socket.IO not available")
                    for s in SIZES
                ]
            for size in SIZES:
                common: Spec = {
                    "reps": REPS,
                    "rounds": rounds,
                    "dialect": "sio",
                    "tokens": tokens[:size],
                }
                atende = run_in_process(
                    loadgen.fanout,
                    {**common, "base": server.ws_url, "trigger": webhook_spec(server, tenant)},
                )
                base = run_in_process(
                    loadgen.fanout,
                    {
                        **common,
                        "base": node.ws_url,
                        "trigger": {
                            "kind": "broadcast",
                            "url": f"{node.url}/broadcast",
                            "headers": {"Content-Type": "application/json"},
                        },
                    },
                )
                note = f"{atende['lost']} lost" if atende["lost"] else ""
                for key, stat in (("p50_ms", "p50"), ("p99_ms", "p99")):
                    xs, ys = [float(v) for v in atende[key]], [float(v) for v in base[key]]
                    rows.append(
                        Row(
                            "S8",
                            f"Socket.IO fan-out to {size:,} sockets, {stat}",
                            "ms",
                            median(xs),
                            median(ys),
                            "lower",
                            BASELINE,
                            note,
                            samples={"atende": xs, "baseline": ys},
                        )
                    )
    return rows
