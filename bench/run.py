"""`make bench`: every benchmark, one after the other, then one report.

Each benchmark runs as its own process with its own embedded PostgreSQL and
broker (or the external ones the settings name) and writes
`bench/results/<name>.json`; this collects them into `summary.json`,
`summary.md` and PNG charts: the latency distributions, a result's curve
(figures against the load, `bench.common.Curve`) where it has one, and the
throughputs.

    python -m bench.run [--only e2e_latency ...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, progress
from ops.readme import README, replace_section

BENCHMARKS: dict[str, list[str]] = {
    "feedback_ingest": [],
    "commitments_scheduler": [],
    "notifications_routing": [],
    "customers_timeline": [],
    "e2e_latency": [],
    "insight_volume": [],
}
QUICK: dict[str, list[str]] = {
    "e2e_latency": ["--rates", "100", "500", "--seconds", "6", "--floor-seconds", "4"],
    "customers_timeline": ["--seconds", "3"],
    "insight_volume": ["--scale", "0.01", "--seconds", "2"],
}


def run_all(names: list[str], *, quick: bool) -> dict[str, str]:
    outcome: dict[str, str] = {}
    for index, name in enumerate(names, 1):
        args = BENCHMARKS[name] + (QUICK.get(name, []) if quick else [])
        progress(f"[{index}/{len(names)}] {name} {' '.join(args)}")
        started = time.monotonic()
        completed = subprocess.run([sys.executable, "-m", f"bench.{name}", *args])
        took = time.monotonic() - started
        outcome[name] = "ok" if completed.returncode == 0 else f"failed (exit {completed.returncode})"
        progress(f"[{index}/{len(names)}] {name}: {outcome[name]} in {took:.0f} s")
    return outcome


def load_results() -> list[dict[str, Any]]:
    results = []
    for path in sorted(RESULTS.glob("*.json")):
        if path.name == "summary.json":
            continue
        body = json.loads(path.read_text())
        if isinstance(body, dict) and "figures" in body:
            results.append(body)
    return results


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:
        return "n/a"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return f"{text} {unit}".strip()


def markdown(results: list[dict[str, Any]], outcome: dict[str, str]) -> str:
    lines = [
        "| benchmark | figure | measured | floor (same run) | ratio | goal | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for figure in result["figures"]:
            met = {True: "yes", False: "**no**", None: ""}[figure.get("met")]
            ratio = "" if figure.get("ratio") is None else f"{figure['ratio']:.2f}×"
            lines.append(
                f"| {result['benchmark']} | {figure['name']} | {_number(figure['value'], figure['unit'])} | "
                f"{_number(figure.get('floor'), figure['unit'])} | {ratio} | {figure.get('goal', '')} | {met} |"
            )
    notes = [f"- {r['benchmark']}: {note}" for r in results for note in r.get("notes", [])]
    failed = [f"- {name}: {state}" for name, state in outcome.items() if state != "ok"]
    measured = max((r.get("measured_at", "") for r in results), default="")
    text = f"Measured {measured} on this machine ({_machine()}).\n\n" + "\n".join(lines) + "\n"
    if notes:
        text += "\nNotes:\n" + "\n".join(notes) + "\n"
    if failed:
        text += "\nDid not complete:\n" + "\n".join(failed) + "\n"
    return text


def _machine() -> str:
    import os
    import platform

    return f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"


def charts(results: list[dict[str, Any]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for result in results:
        if "curve" in result:
            written.append(curve_chart(result))
            continue
        samples = {k: v for k, v in result.get("samples", {}).items() if v}
        if not samples:
            continue
        figure, axis = plt.subplots(figsize=(8, 4.5))
        for label, values in samples.items():
            ordered = sorted(values)
            axis.plot([100 * (i + 1) / len(ordered) for i in range(len(ordered))], ordered, label=label)
        axis.set_xlabel("percentile")
        axis.set_ylabel("value")
        axis.set_yscale("log")
        axis.set_title(f"{result['benchmark']}: distribution")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
        path = RESULTS / f"{result['benchmark']}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    throughput = [
        (f"{r['benchmark']}: {f['name']}", f["value"], f.get("floor"))
        for r in results
        for f in r["figures"]
        if f["unit"] in ("req/s", "events/s", "deliveries/s")
    ]
    if throughput:
        figure, axis = plt.subplots(figsize=(9, 1 + 0.6 * len(throughput)))
        labels = [t[0] for t in throughput]
        axis.barh(labels, [t[1] for t in throughput], label="measured")
        axis.barh(labels, [t[2] or 0 for t in throughput], alpha=0.4, label="floor")
        axis.set_xlabel("per second")
        axis.legend()
        path = RESULTS / "throughput.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written


def curve_chart(result: dict[str, Any]) -> Path:
    """A result's figures against the load (`bench.common.Curve`): one colour per series name without its
    quantile, p50 dashed, the rest solid, a floor grey."""
    import matplotlib.pyplot as plt

    curve = result["curve"]
    figure, axis = plt.subplots(figsize=(8, 5))
    palette = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    colors: dict[str, str] = {}
    for label, values in curve["series"].items():
        what = label.rsplit(" p", 1)[0]
        color = colors.setdefault(what, "grey" if "floor" in what else next(palette))
        style = "--" if label.endswith("p50") else "-"
        axis.plot(curve["x"], values, style, marker="o", label=label, color=color)
    axis.set_xlabel(curve["x_label"])
    axis.set_ylabel(curve["y_label"])
    axis.set_xticks(curve["x"])
    axis.set_yscale("log")
    axis.set_title(f"{result['benchmark']}: latency against load")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize="small")
    path = RESULTS / f"{result['benchmark']}.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke check")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the last results")
    parser.add_argument("--no-readme", action="store_true", help="leave the README's table as it is")
    args = parser.parse_args()
    outcome = {} if args.report_only else run_all(args.only or list(BENCHMARKS), quick=args.quick)
    results = load_results()
    (RESULTS / "summary.json").write_text(
        json.dumps(
            {"outcome": outcome, "results": [{k: v for k, v in r.items() if k != "samples"} for r in results]}, indent=2
        )
        + "\n"
    )
    table = markdown(results, outcome)
    (RESULTS / "summary.md").write_text(table)
    if not args.no_readme:
        README.write_text(replace_section(README.read_text(), "bench-table", table))
        progress(f"README: table updated in {README}")
    for path in charts(results):
        progress(f"chart: {path}")
    print(table)
    if any(state != "ok" for state in outcome.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
