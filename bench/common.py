"""What every benchmark shares: percentiles, results files, wrk, progress, a stack's infrastructure."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ops.platform import auth_secret
from ops.stack import Stack, StackOptions

RESULTS = Path(__file__).parent / "results"


def progress(message: str) -> None:
    """One line of progress on stderr, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class Figure:
    """One measured figure, next to its floor and goal where it has them."""

    name: str
    value: float
    unit: str
    goal: str = ""
    met: bool | None = None
    floor: float | None = None
    ratio: float | None = None


@dataclass
class Curve:
    """Figures against a load (one point per rate): `bench.run` charts it instead of the samples' distribution."""

    x_label: str
    y_label: str
    x: list[float]
    series: dict[str, list[float]]


@dataclass
class Result:
    benchmark: str
    figures: list[Figure] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    curve: Curve | None = None

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.benchmark}.json"
        body: dict[str, Any] = {
            "benchmark": self.benchmark,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "figures": [asdict(f) for f in self.figures],
            "notes": self.notes,
            "samples": self.samples,
        }
        if self.curve is not None:
            body["curve"] = asdict(self.curve)
        path.write_text(json.dumps(body, indent=2) + "\n")
        return path


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: `apt-get install -y wrk` (Debian), then run again")
    return wrk


@dataclass(frozen=True)
class WrkRun:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def run_wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    threads: int = 1,
    script: Path | None = None,
    env: dict[str, str] | None = None,
    timeout_seconds: int | None = None,
) -> WrkRun:
    """Load `url` with wrk and read its throughput and latency percentiles (`timeout_seconds`: wrk's, default 2)."""
    command = [require_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if timeout_seconds is not None:
        command[-1:-1] = ["--timeout", f"{timeout_seconds}s"]
    if script is not None:
        command[1:1] = ["-s", str(script)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latencies = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    for kind in re.findall(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        errors += sum(int(n) for n in kind)
    return WrkRun(rps, _ms(latencies.get("50", "nan")), _ms(latencies.get("99", "nan")), errors)


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        return math.nan
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def infrastructure(options: StackOptions, cleanup: contextlib.ExitStack) -> Stack:
    """A stack's PostgreSQL (migrated) and broker (its topics made), no service started yet; stopped by `cleanup`."""
    stack = Stack(options, out=io.StringIO())  # its own lines are not the benchmark's output
    cleanup.callback(stack.stop)
    stack.secret = auth_secret(stack.data_dir, stack.environ, create=True)
    stack.start_databases()
    stack.migrate()
    stack.start_broker()
    stack.create_topics()
    return stack


def process_ids(stack: Stack, service: str) -> dict[str, int]:
    """The running `service`'s, PostgreSQL's and the broker's process ids, to count their CPU."""
    pids = {
        "service": stack.services[service].pid,
        "postgres": stack.postgres.pid if stack.postgres is not None else None,
        "broker": stack.broker.process.pid if stack.broker is not None and stack.broker.process is not None else None,
    }
    missing = [name for name, pid in pids.items() if pid is None]
    if missing:
        raise RuntimeError(f"not running: {', '.join(missing)}")
    return {name: pid for name, pid in pids.items() if pid is not None}
