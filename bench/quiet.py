"""What the benchmarks share about the machine: waiting for it to be quiet,
telling afterwards how much CPU other programs took while they ran, and
describing it (and offload's revision) at the top of the output.

On a shared two-core machine a benchmark's ratios mean something only when
nothing else ran: each script waits for a low load and no other test or
benchmark first, and prints the other programs' share of the CPU at the end.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def describe(commands: list[list[str]], extra: str = "") -> str:
    """offload's revision, the machine, and the first line each command prints of its version."""
    versions = []
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True)
        versions.append((done.stdout + done.stderr).splitlines()[0].strip())
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    changed = subprocess.run([*git, "status", "--short", "offload"], capture_output=True, text=True)
    edits = len(changed.stdout.splitlines())
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"offload at {head.stdout.strip() or '?'}"
        + (f" with {edits} uncommitted change(s) under offload/" if edits else "")
        + f"; {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()},"
        f" Python {platform.python_version()}{extra}\n"
        + "\n".join(f"  {line}" for line in versions)
    )


class CpuWatch:
    """CPU time of the whole machine against this benchmark's own (its children included).

    Every tool and server a benchmark starts is a child that is waited for, so
    its CPU time (and that of its own workers) lands in RUSAGE_CHILDREN; the
    rest was spent by other programs.
    """

    def __init__(self, children: str) -> None:
        self.children = children  # what the benchmark's own CPU time includes, for the summary
        self.started = time.monotonic()
        self.machine, self.ours = self._machine(), self._ours()

    @staticmethod
    def _machine() -> float:
        # user nice system idle iowait irq softirq: a process's system time includes the
        # softirq work (loopback TCP) done on its behalf, so those count as busy too.
        fields = [int(x) for x in Path("/proc/stat").read_text().split()[1:8]]
        return (sum(fields[0:3]) + fields[5] + fields[6]) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _ours() -> float:
        mine = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        machine, ours = self._machine() - self.machine, self._ours() - self.ours
        others = max(machine - ours, 0.0)
        return (
            f"CPU time in {elapsed:.0f} s: {machine:.0f} s in all, {ours:.0f} s by this benchmark"
            f" ({self.children}), {others:.0f} s by other programs"
            f" ({others / elapsed:.2f} of {os.cpu_count()} cores)"
        )


def busy_others() -> list[str]:
    """Other benchmarks and test runs on the machine (not this process or its parents)."""
    mine = set()
    pid = os.getpid()
    while pid > 1:
        mine.add(pid)
        with contextlib.suppress(OSError, IndexError, ValueError):
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            continue
        break
    found = subprocess.run(
        ["pgrep", "-af", "pytest|bench/|bench_"], capture_output=True, text=True
    ).stdout.splitlines()
    return [line for line in found if int(line.split()[0]) not in mine]


def wait_quiet(limit: float, seconds: float) -> None:
    """Wait up to ``seconds`` for a 1-minute load below ``limit`` and no other benchmark."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        load, others = os.getloadavg()[0], busy_others()
        if load < limit and not others:
            return
        print(
            f"  load {load:.2f}, {len(others)} other benchmark/test process(es): waiting",
            flush=True,
        )
        time.sleep(30)
    print(f"  still busy after {seconds:.0f} s: running anyway", flush=True)
