"""`python -m bench [--quick] [--only S1,S3] [--json-out bench/results/latest.json]`."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import BENCH_DIR, REPS, Row, raise_nofile

SCENARIOS: dict[str, str] = {
    "S1": "bench.s1_echo",
    "S2": "bench.s2_memory",
    "S3": "bench.s3_fanout",
    "S4": "bench.s4_redis",
    "S5": "bench.s5_end_to_end",
    "S6": "bench.s6_rest",
    "S7": "bench.s7_ingest",
    "S8": "bench.s8_node",
    "S9": "bench.s9_login",
}


def machine() -> dict[str, Any]:
    mem = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        mem = subprocess.run(["free", "-h"], capture_output=True, text=True, timeout=5).stdout
    total = next((line.split()[1] for line in mem.splitlines() if line.startswith("Mem:")), "?")
    return {
        "cpus": os.cpu_count(),
        "memory": total,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (about 5 minutes)")
    parser.add_argument("--only", default="", help="comma-separated scenarios, e.g. S1,S3")
    parser.add_argument(
        "--json-out", type=Path, default=BENCH_DIR / "results" / "latest.json", help="results file"
    )
    args = parser.parse_args(argv)
    wanted = [s.strip().upper() for s in args.only.split(",") if s.strip()] or list(SCENARIOS)
    unknown = [s for s in wanted if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    nofile = raise_nofile()
    info = machine()
    print(
        f"# Atende bench ({'quick' if args.quick else 'full'}): {info['cpus']} CPUs, "
        f"{info['memory']} RAM, Python {info['python']}, open files {nofile}, "
        f"median of {REPS} repetitions; ratio = Atende / baseline",
        flush=True,
    )
    rows: list[Row] = []
    failures: dict[str, str] = {}
    timings: dict[str, float] = {}
    for key in wanted:
        started = time.monotonic()
        try:
            module = importlib.import_module(SCENARIOS[key])
            found: list[Row] = module.run(args.quick)
        except Exception as exc:
            traceback.print_exc()
            failures[key] = f"{type(exc).__name__}: {exc}"
            print(f"{key:<3} FAILED: {failures[key]}", flush=True)
            continue
        finally:
            timings[key] = round(time.monotonic() - started, 1)
        for row in found:
            print(row.line(), flush=True)
        rows.extend(found)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(
        json.dumps(
            {
                "mode": "quick" if args.quick else "full",
                "machine": info,
                "repetitions": REPS,
                "rows": [r.to_dict() for r in rows],
                "failures": failures,
                "seconds": timings,
            },
            indent=2,
        )
    )
    print(f"# results written to {args.json_out}; seconds per scenario: {timings}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
