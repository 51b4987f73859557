"""S3: one inbound message fanned out to 10 / 100 / 1,000 agents of one tenant (native and
Socket.IO) vs `websockets.broadcast` to as many sockets: time from the trigger (Atende: the
webhook POST; baseline: a frame on a trigger socket) until the last receiver has it."""

from __future__ import annotations

from bench import loadgen
from bench.harness import (
    REPS,
    Row,
    Spec,
    atende_env,
    median,
    na_row,
    native_url,
    pg_database,
    run_in_process,
    seed_tenant,
    socketio_available,
    start_atende,
    start_baseline,
    tokens_for,
    webhook_spec,
)

SIZES = (10, 100, 1000)


def run(quick: bool) -> list[Row]:
    rounds = 8 if quick else 30
    rows: list[Row] = []
    with pg_database() as db:
        env = atende_env(db)
        tenant = seed_tenant(env, agents=-(-max(SIZES) // 3))
        tokens = tokens_for(tenant, max(SIZES))
        with start_atende("s3-atende", env) as server, start_baseline("ws", "s3-ws") as raw:
            has_sio = socketio_available(server)
            for size in SIZES:
                common: Spec = {"reps": REPS, "rounds": rounds}
                raw_out = run_in_process(
                    loadgen.fanout,
                    {
                        **common,
                        "dialect": "plain",
                        "urls": [raw.ws_url] * size,
                        "trigger": {"kind": "ws", "url": raw.ws_url},
                    },
                )
                native = run_in_process(
                    loadgen.fanout,
                    {
                        **common,
                        "dialect": "native",
                        "urls": [native_url(server, tenant, t) for t in tokens[:size]],
                        "trigger": webhook_spec(server, tenant),
                    },
                )
                rows += _rows(size, "native", native, raw_out)
                if has_sio:
                    sio = run_in_process(
                        loadgen.fanout,
                        {
                            **common,
                            "dialect": "sio",
                            "base": server.ws_url,
                            "tokens": tokens[:size],
                            "trigger": webhook_spec(server, tenant),
                        },
                    )
                    rows += _rows(size, "Socket.IO", sio, raw_out)
                else:
                    rows.append(
                        na_row(
                            "S3",
                            f"fan-out to {size:,}, Socket.IO",
                            "websockets.broadcast",
                            "Socket.IO not available",
                        )
                    )
    return rows


def _rows(size: int, label: str, atende: Spec, base: Spec) -> list[Row]:
    note = f"{atende['lost']} lost" if atende["lost"] else ""
    out = []
    for key, name in (("p50_ms", "p50"), ("p99_ms", "p99")):
        xs, ys = [float(v) for v in atende[key]], [float(v) for v in base[key]]
        out.append(
            Row(
                "S3",
                f"fan-out to {size:,} sockets, {label}, {name}",
                "ms",
                median(xs),
                median(ys),
                "lower",
                "websockets.broadcast",
                note,
                samples={"atende": xs, "baseline": ys},
            )
        )
    return out
