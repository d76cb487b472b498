"""`customer-focus up` as a real subprocess, the way a developer runs it."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

from ops.platform import SERVICES
from ops.stack import port_is_free

CLI = str(Path(sys.executable).parent / "customer-focus")
READY_LINE = "Ctrl-C stops everything."
TOKEN = re.compile(r"^\s+(eyJ[\w-]+\.[\w-]+\.[\w-]+)\s*$", re.MULTILINE)
SERVICE_URL = re.compile(r"^\s+(\w+)\s+(http://127\.0\.0\.1:(\d+))\s+docs:", re.MULTILINE)
KAFKA = re.compile(r"^\s+kafka\s+(\S+)", re.MULTILINE)


def free_port_range(count: int) -> int:
    """The first of `count` consecutive free ports, below Linux's ephemeral range (32768 up).

    A port in that range that is free now can become the source port of any outgoing connection
    before `up` binds it (a fresh-clone CI run lost the feedback port that way).
    """
    for _ in range(200):
        base = random.randint(20_000, 32_000)
        if all(port_is_free("127.0.0.1", base + offset) for offset in range(count)):
            return base
    raise RuntimeError("no range of free ports found")


class UpProcess:
    """One `customer-focus up`, its output collected line by line."""

    def __init__(self, data_dir: Path, *args: str, environ: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.started_at = time.monotonic()
        environment = dict(os.environ if environ is None else environ)
        # Its own process group, so a SIGINT to the group is what Ctrl-C in a terminal sends.
        self.process = subprocess.Popen(
            [CLI, "up", "--data-dir", str(data_dir), *args],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            with self._changed:
                self._lines.append(raw.decode("utf-8", "replace"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Wait for the banner; return the seconds from launch to ready."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(READY_LINE in line for line in self._lines):
                if self.process.poll() is not None:
                    raise AssertionError(f"`up` exited with {self.process.returncode}:\n{''.join(self._lines)}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"`up` not ready after {timeout:.0f}s:\n{''.join(self._lines)}")
                self._changed.wait(min(remaining, 0.5))
        return time.monotonic() - self.started_at

    def urls(self) -> dict[str, str]:
        return {match.group(1): match.group(2) for match in SERVICE_URL.finditer(self.output)}

    def token(self) -> str:
        match = TOKEN.search(self.output)
        assert match is not None, self.output
        return match.group(1)

    def bootstrap_servers(self) -> str:
        match = KAFKA.search(self.output)
        assert match is not None, self.output
        return match.group(1)

    def process_tree(self) -> set[int]:
        """`up`, everything under it, and the embedded PostgreSQL (which pg_ctl detaches) with its backends."""
        pids = {self.process.pid}
        with contextlib.suppress(psutil.NoSuchProcess):
            pids |= {child.pid for child in psutil.Process(self.process.pid).children(recursive=True)}
        postmaster = self.data_dir / "pg" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, psutil.NoSuchProcess):
            pid = int(postmaster.read_text().splitlines()[0])
            pids |= {pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))}
        return pids

    def send(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def stop(self, signum: int = signal.SIGINT, timeout: float = 60.0) -> int:
        """Send `signum` as a terminal would and wait for `up` to end; return its exit code."""
        if self.process.poll() is None:
            self.send(signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.send(signal.SIGKILL)
                self.process.wait(10)
                raise AssertionError(f"`up` did not stop within {timeout:.0f}s:\n{self.output}") from None
        return self.process.returncode


def alive(pids: set[int]) -> set[int]:
    """Those of `pids` still running (a zombie has ended)."""
    running = set()
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.add(pid)
    return running


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain `text` (a data dir, a port)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if text in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE and process.pid != os.getpid():
            found.append(f"{process.pid}: {cmdline}")
    return found


def service_ports(base_port: int) -> dict[str, int]:
    return {service: base_port + index for index, service in enumerate(SERVICES)}
