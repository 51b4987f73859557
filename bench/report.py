"""Render a results file as the Markdown table of docs/benchmarks.md:
`python -m bench.report bench/results/latest.json`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.harness import fmt


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Run: {results['mode']}, {m['date']}; {m['cpus']} CPUs, {m['memory']} RAM, "
        f"Python {m['python']}, {m['platform']}; median of {results['repetitions']} "
        "repetitions; ratio = Atende / baseline.",
        "",
        "| scenario | metric | Atende | baseline | baseline figure | ratio | better | note |",
        "| --- | --- | ---: | --- | ---: | ---: | --- | --- |",
    ]
    for row in results["rows"]:
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}"
        lines.append(
            f"| {row['scenario']} | {row['metric']} | {fmt(row['atende'], row['unit'])} | "
            f"{row['baseline_name']} | {fmt(row['baseline'], row['unit'])} | {ratio} | "
            f"{row['better']} | {row['note']} |"
        )
    for key, reason in results.get("failures", {}).items():
        lines.append(f"| {key} | failed | | | | | | {reason} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench/results/latest.json")
    sys.stdout.write(markdown(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
