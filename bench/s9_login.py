"""S9: logins beside everything else. 8 clients log in back to back (argon2 hashes) while a probe
GETs /health every 10 ms; baseline: the same probe on the same server with no logins.

argon2 costs ~100-300 ms of a core per login. On the event loop it stalls every socket and
webhook for that long (issue 10 item 5: /health max 2.4 s under 8 login loops); in a thread
pool behind a small semaphore the loop keeps answering and only logins queue."""

from __future__ import annotations

from bench import loadgen
from bench.harness import (
    REPS,
    Row,
    Spec,
    atende_env,
    median,
    pg_database,
    run_in_process,
    seed_tenant,
    start_atende,
)

LOGIN_CLIENTS = 8


def run(quick: bool) -> list[Row]:
    duration = 3.0 if quick else 8.0
    loaded: list[Spec] = []
    idle: list[Spec] = []
    with pg_database() as db:
        env = atende_env(db)
        tenant = seed_tenant(env)
        with start_atende("s9-atende", env) as server:
            spec: Spec = {
                "login_url": f"{server.url}/api/v1/auth/login",
                "health_url": f"{server.url}/health",
                "email": tenant.admin_email,
                "password": tenant.admin_password,
                "duration": duration,
            }
            for _ in range(REPS):
                idle.append(run_in_process(loadgen.logins_and_health, {**spec, "logins": 0}))
                loaded.append(
                    run_in_process(loadgen.logins_and_health, {**spec, "logins": LOGIN_CLIENTS})
                )
    rows: list[Row] = []
    errors = sum(int(r["errors"]) for r in loaded)
    rate = median([int(r["logins"]) / duration for r in loaded]) or 0.0
    for key, label in (("health_p50_ms", "p50"), ("health_max_ms", "max")):
        xs = [float(r[key]) for r in loaded]
        ys = [float(r[key]) for r in idle]
        note = f"{LOGIN_CLIENTS} login loops, {rate:.1f} logins/s" if label == "p50" else ""
        if errors:
            note += f"; {errors} failed logins"
        rows.append(
            Row(
                "S9",
                f"GET /health {label} during logins",
                "ms",
                median(xs),
                median(ys),
                "lower",
                "same server idle",
                note,
                samples={"atende": xs, "baseline": ys},
            )
        )
    xs = [float(r["login_p50_ms"]) for r in loaded]
    rows.append(Row("S9", "POST /api/v1/auth/login p50", "ms", median(xs), None, "lower", "-", ""))
    return rows
