"""What every benchmark shares: machine facts, load accounting, medians and figures.

A *figure* is one measured number with its unit, target, the command that reproduces
it and the CPU load that other processes put on the machine while it was taken. That
load is measured, not guessed: busy time from ``/proc/stat`` minus the CPU time of this
process and its children, over the figure's wall time, in cores. A figure taken while
other processes used 0.5 cores or more is flagged "under load".

Because the machine is shared, timed rounds are *quiet-gated* (:func:`gated`): before a
round the benchmark waits for other processes to go quiet, and a round during which they
used ``QUIET_LIMIT`` cores or more is thrown away and repeated, within a waiting budget
(``--quiet-budget`` of ``run.py``; 0 in ``--quick``). When the budget runs out, rounds
are kept whatever the load, and the figure's load column says so.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["ROOT", "WORK", "Figure", "LoadMeter", "machine", "command", "gated", "Gated",
           "wait_for_quiet"]

ROOT = Path(__file__).resolve().parents[1]
# Generated data and scratch (git-ignored); the smoke test points it at a temporary dir.
WORK = Path(os.environ.get("WGAN_BENCH_WORK", ROOT / "benchmarks" / "work"))
LOAD_LIMIT = 0.5  # cores used by other processes above which a figure is "under load"
QUIET_LIMIT = float(os.environ.get("WGAN_BENCH_QUIET_LIMIT", 0.25))  # a round's allowance
# Seconds this process may spend waiting for quiet and repeating disturbed rounds.
_budget = [float(os.environ.get("WGAN_BENCH_QUIET_BUDGET", 0))]


@dataclass
class Figure:
    """One number in ``results.json`` and one row in the ``BENCHMARKS.md`` table."""

    id: str  # unique key, e.g. "train.dcgan28.wgan-gp.xla.iteration_s"
    what: str  # human description
    value: float | int | None
    unit: str
    command: str
    target: str = ""  # e.g. "<= 0.45"
    meets: bool | None = None  # None: no target
    load: float | None = None  # cores used by other processes during the measurement
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _cpu_busy_seconds() -> tuple[float, float]:
    """Machine-wide non-idle CPU seconds since boot (all cores): (at normal priority,
    of niced processes). Niced work only takes cycles nobody else wants, so it is kept
    apart; the kernel books a niced process's system time as normal, which errs safe."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:8]) - idle - fields[1]) / tick, fields[1] / tick


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadMeter:
    """Cores used by *other* processes at normal priority between ``start()`` and
    ``stop()``; ``niced`` is what niced processes used meanwhile (not counted as load).

    Children that are still running at ``stop()`` are not counted as ours yet, so call
    it after they have been waited for.
    """

    def __init__(self) -> None:
        self.niced = 0.0
        self.start()

    def start(self) -> None:
        self._wall, self._busy, self._own = time.perf_counter(), _cpu_busy_seconds(), \
            _own_cpu_seconds()

    def stop(self) -> float:
        wall = max(time.perf_counter() - self._wall, 1e-9)
        (busy, niced), (busy0, niced0) = _cpu_busy_seconds(), self._busy
        other = (busy - busy0) - (_own_cpu_seconds() - self._own)
        self.niced = round((niced - niced0) / wall, 2)
        return round(max(other, 0.0) / wall, 2)


@dataclass
class Gated:
    """Kept rounds of :func:`gated`: seconds, other processes' load, and rounds discarded."""

    seconds: list[float]
    loads: list[float]
    discarded: int
    values: list  # what fn returned in each kept round
    niced: list[float] = field(default_factory=list)  # niced processes' cores, per round

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def load(self) -> float:
        """The worst load among the kept rounds (what the figure was measured under)."""
        return max(self.loads) if self.loads else 0.0

    def details(self, scale: float = 1.0, digits: int = 4) -> dict:
        return {"rounds": [round(t * scale, digits) for t in self.seconds],
                "round_loads": self.loads, "round_niced_loads": self.niced,
                "rounds_discarded_for_load": self.discarded}


def wait_for_quiet() -> None:
    """Sleep in 1 s steps until other processes use < QUIET_LIMIT cores (or no budget)."""
    while _budget[0] > 0:
        meter = LoadMeter()
        time.sleep(1.0)
        _budget[0] -= 1.0
        if meter.stop() < QUIET_LIMIT:
            return


def gated(fn: Callable[[], object], rounds: int) -> Gated:
    """Time ``rounds`` calls of ``fn``, each started on a quiet machine and kept only if
    other processes stayed under ``QUIET_LIMIT`` cores while it ran (within the budget)."""
    kept, loads, niced, values, discarded = [], [], [], [], 0
    while len(kept) < rounds:
        wait_for_quiet()
        meter = LoadMeter()
        t0 = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - t0
        load = meter.stop()
        if load >= QUIET_LIMIT and _budget[0] > 0:
            discarded += 1
            _budget[0] -= seconds
            continue
        kept.append(seconds)
        loads.append(load)
        niced.append(meter.niced)
        values.append(value)
    return Gated(kept, loads, discarded, values, niced)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
    except OSError:
        pass
    return []


def machine() -> dict:
    """Cores, CPU model, memory, library versions, load average: the table's header."""
    import keras
    import numpy
    import tensorflow as tf

    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "memory_gib": round(pages / 2**30, 1),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "loadavg_at_start": [round(v, 2) for v in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def peak_rss_mib_children() -> float:
    """Largest peak RSS of any waited-for child process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def command(module: str, size: str, extra: str = "") -> str:
    """The exact command line that reproduces a figure of ``module`` at ``size``."""
    size_flag = {"quick": " --quick", "full": " --full"}.get(size, "")
    return f"python -m benchmarks.run --only {module}{size_flag}{extra}"
