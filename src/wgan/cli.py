"""What every stage script shares: argv checks, errors printed as one clear line, and the
share of the machine's cores a stage may use."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

__all__ = ["error_line", "run_stage", "thread_env", "usable_cpus"]

_MAX_LINE = 500
# TensorFlow wraps an op's message in where it ran: "{{function_node ...}} <message>
# [Op:IteratorGetNext] name: " and, inside graphs, "[[{{node ...}}]]" lines.
_TF_NOISE = re.compile(r"\{\{function_node [^}]*\}\}|\[\[.*?\]\]|\[Op:[^\]]*\]( name: ?\S*)?")


def error_line(err: BaseException) -> str:
    """``err`` as one line: its message (and notes), prefixed by its type unless it is one
    of the errors whose message says it all (``ValueError``, ``RuntimeError``, ``OSError``,
    the project's own), cut to a bounded length."""
    message = getattr(err, "message", None)  # TensorFlow's, without its node definitions
    text = str(message if isinstance(message, str) else err)
    text = " ".join(_TF_NOISE.sub(" ", text).split())
    notes = " ".join(" ".join(getattr(err, "__notes__", [])).split())
    if notes:
        text = f"{text} ({notes})" if text else notes
    if len(text) > _MAX_LINE:
        text = text[:_MAX_LINE] + "…"
    kind = type(err)
    if kind in (ValueError, RuntimeError) or issubclass(kind, OSError) or (
            kind.__module__.split(".")[0] == "wgan"):
        return text or kind.__name__
    return f"{kind.__name__}{': ' if text else ''}{text}; set WGAN_TRACEBACK=1 for the traceback"


def usable_cpus() -> int:
    """The cores this process may run on: its affinity mask (a SLURM or taskset
    allocation), not every core of the machine, which ``os.cpu_count`` reports."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def thread_env(environ: dict[str, str], cpus: int) -> dict[str, str]:
    """TensorFlow's thread-pool sizes for one of ``WGAN_JOBS`` experiments sharing ``cpus``
    cores (``WGAN_JOBS=2 dvc queue start -j 2``): each gets ``cpus / jobs`` (at least one)
    instead of every core, so the runs do not oversubscribe the machine. Sizes already set
    in ``environ`` win; no ``WGAN_JOBS``, nothing to set."""
    jobs = environ.get("WGAN_JOBS")
    if not jobs:
        return {}
    if not jobs.isdigit() or int(jobs) < 1:
        raise ValueError(f"WGAN_JOBS: {jobs[:20]!r} is not a positive integer; set it to the "
                         "number of experiments running at once (dvc queue start -j N)")
    share = str(max(1, cpus // int(jobs)))
    return {k: share for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
            if k not in environ}


def run_stage(main: Callable[[list[str]], None], usage: str, n_args: int) -> None:
    """Run ``main(argv)``; any error exits 1 with ``error: <what>`` on one line, not a
    traceback, and Ctrl-C exits 130 quietly.

    Set ``WGAN_TRACEBACK=1`` to see the full traceback instead.
    """
    argv = sys.argv[1:]
    if len(argv) != n_args:
        sys.exit(f"usage: {usage}")
    try:
        # Read by TensorFlow when its runtime starts, at the first op, which comes later.
        os.environ.update(thread_env(dict(os.environ), usable_cpus()))
        main(argv)
    except KeyboardInterrupt:
        if os.environ.get("WGAN_TRACEBACK"):
            raise
        sys.exit(130)
    except Exception as err:
        if os.environ.get("WGAN_TRACEBACK"):
            raise
        sys.exit(f"error: {error_line(err)}")
