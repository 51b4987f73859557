"""S2: server memory per idle, authenticated socket (native `/ws/chat` and Socket.IO) vs a raw
`websockets` server without compression (Atende serves without per-message deflate, SPEC §9).

Full run: a fresh server per repetition climbs 1k → 5k → 10k sockets; the figure at a level is
(RSS there − RSS before the first socket) / sockets. Quick run: one server per target takes three
batches of 334 sockets (1k in all); the figure is RSS growth per socket of each batch.
"""

from __future__ import annotations

from bench import loadgen
from bench.harness import (
    REPS,
    Row,
    Server,
    Spec,
    Tenant,
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
)

KIB = 1024.0


def run(quick: bool) -> list[Row]:
    levels = [334, 667, 1000] if quick else [1000, 5000, 10000]
    top = levels[-1]
    results: dict[str, list[list[float]]] = {"native": [], "sio": [], "raw": []}
    rates: dict[str, list[float]] = {k: [] for k in results}
    failed: dict[str, int] = {k: 0 for k in results}
    sio_missing = False
    with pg_database() as db:
        env = atende_env(db)
        tenant = seed_tenant(env, agents=-(-top // 3))
        tokens = tokens_for(tenant, top)
        servers = 1 if quick else REPS
        for _ in range(servers):
            for target in ("native", "sio", "raw"):
                if target == "sio" and sio_missing:
                    continue
                server = (
                    start_baseline("ws", "s2-ws")
                    if target == "raw"
                    else start_atende(f"s2-atende-{target}", env)
                )
                with server:
                    if target == "sio" and not socketio_available(server):
                        sio_missing = True
                        continue
                    spec = _spec(target, server, tenant, tokens, levels)
                    out = run_in_process(loadgen.idle_memory, spec, timeout=1800)
                    rss, counts = out["rss"], out["open"]
                    rates[target].append(float(out["connect_rate"]))
                    failed[target] += int(out["failed"])
                    if quick:  # three batches on one server: growth per socket of each
                        results[target] += [
                            [(rss[i + 1] - rss[i]) / max(1, counts[i + 1] - counts[i])]
                            for i in range(len(levels))
                        ]
                    else:
                        results[target].append(
                            [
                                (rss[i + 1] - rss[0]) / max(1, counts[i + 1])
                                for i in range(len(levels))
                            ]
                        )
    shown = [top] if quick else levels
    rows: list[Row] = []
    for index, level in enumerate(shown):
        for target, label in (("native", "native /ws/chat"), ("sio", "Socket.IO")):
            metric = f"RSS per idle socket, {level:,} sockets, {label}"
            if target == "sio" and sio_missing:
                rows.append(na_row("S2", metric, "raw websockets", "Socket.IO not available"))
                continue
            col = 0 if quick else index
            xs = [r[col] / KIB for r in results[target]]
            ys = [r[col] / KIB for r in results["raw"]]
            rows.append(
                Row(
                    "S2",
                    metric,
                    "KiB",
                    median(xs),
                    median(ys),
                    "lower",
                    "raw websockets",
                    samples={"atende": xs, "baseline": ys},
                )
            )
    for target, label in (("native", "native /ws/chat"), ("sio", "Socket.IO")):
        if rates[target]:
            rows.append(
                Row(
                    "S2",
                    f"connections accepted per second, {label}",
                    "/s",
                    median(rates[target]),
                    median(rates["raw"]),
                    "higher",
                    "raw websockets",
                    f"{failed[target]} sockets failed to open" if failed[target] else "",
                    samples={"atende": rates[target], "baseline": rates["raw"]},
                )
            )
    return rows


def _spec(
    target: str, server: Server, tenant: Tenant, tokens: list[str], levels: list[int]
) -> Spec:
    spec: Spec = {"pid": server.pid, "levels": levels}
    if target == "native":
        return {
            **spec,
            "dialect": "native",
            "urls": [native_url(server, tenant, t) for t in tokens],
        }
    if target == "sio":
        return {**spec, "dialect": "sio", "base": server.ws_url, "tokens": tokens}
    return {**spec, "dialect": "plain", "urls": [server.ws_url] * len(tokens)}
