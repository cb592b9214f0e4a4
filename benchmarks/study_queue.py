"""Study throughput: a 4-run study through DVC's queue at ``-j 1`` and at ``-j 2``.

Issue 16 item 5: ``WGAN_JOBS=N dvc queue start -j N`` runs N experiments at once, each
sizing TensorFlow's thread pools to its share of the cores (``wgan.cli``). This measures
what that buys on this machine. In a temporary clone of the working copy
(:func:`benchmarks.dvc_pipeline.clone`, the tiny params of that benchmark) ``dvc repro
reference`` (prepare, classifier, reference) is made and committed off the clock, so each
experiment runs train, sample and evaluate: a tiny run is mostly process start-up, DVC's
and TensorFlow's, which is what many short runs of a study pay.
A round queues ``runs`` experiments (``dvc exp run --queue -S seed=…``, a seed never
used before, so the run cache cannot skip them), then times ``WGAN_JOBS=N dvc queue
start -j N`` until every one has its experiment commit. Rounds alternate between the
two settings (j1, j2, j2, j1, …) so that both see the same machine speed.

The queue's workers are daemons (double-forked by ``dvc queue start``). This process
makes itself their *subreaper* (``PR_SET_CHILD_SUBREAPER``), so they are re-parented to
it and reaped here when they exit (10 s after the queue is empty): their CPU time is
then this process's children's, and the load column counts only other processes.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks.common import Figure, command, gated
from benchmarks.dvc_pipeline import TINY, _env, _run, clone

SIZES = {
    "quick": dict(runs=1, order=(1, 2)),  # the smoke test: every code path, one run each
    "default": dict(runs=4, order=(1, 2, 2, 1)),
}
SIZES["full"] = {**SIZES["default"], "order": (1, 2, 2, 1, 1, 2)}
TIMEOUT_S = 3600  # one round, on a busy machine
_PR_SET_CHILD_SUBREAPER = 36


def _adopt_orphans() -> None:
    """Re-parent this process's orphaned descendants (the queue workers) to it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _children() -> set[int]:
    """The process ids whose parent is this process (from ``/proc/<pid>/stat``)."""
    me, found = os.getpid(), set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == me:
            found.add(int(stat.parent.name))
    return found


def _reap(before: set[int], deadline: float) -> None:
    """Wait for the children that are not in ``before`` (the adopted queue workers, which
    exit once the queue has been empty for 10 s), so their CPU time is counted as ours."""
    while pending := _children() - before:
        for pid in pending:
            os.waitpid(pid, os.WNOHANG)
        if time.monotonic() > deadline:
            raise TimeoutError(f"the queue's workers {sorted(pending)} did not exit after "
                               "the queue drained")
        time.sleep(0.2)


def _experiments(repo: Path) -> set[str]:
    """The names of the experiments of HEAD (DVC's refs/exps/<HEAD>/<name>)."""
    head = _run(["git", "rev-parse", "HEAD"], repo)[0].strip()
    refs = _run(["git", "for-each-ref", "--format=%(refname)",
                 f"refs/exps/{head[:2]}/{head[2:]}/"], repo)[0]
    return {ref.rsplit("/", 1)[1] for ref in refs.split()}


def _round(repo: Path, jobs: int, names: list[str], seeds: list[int]) -> float:
    """Queue ``names`` (off the clock), run them with ``jobs`` workers; the seconds until
    the last one has its commit. The workers are reaped before returning."""
    for name, seed in zip(names, seeds, strict=True):
        _run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"seed={seed}"], repo)
    log = repo.parent / f"{repo.name}-queue.log"
    before = _children()
    t0 = time.perf_counter()
    with log.open("a") as out:  # not a pipe: the daemons inherit it and would hold it open
        subprocess.run(["dvc", "queue", "start", "-j", str(jobs)], cwd=repo, check=True,
                       stdout=out, stderr=subprocess.STDOUT,
                       env={**_env(repo), "WGAN_JOBS": str(jobs)})
    deadline, polls = time.monotonic() + TIMEOUT_S, itertools.count()
    while not set(names) <= _experiments(repo):
        if next(polls) % 30 == 29:  # a failed experiment never gets its commit
            status = _run(["dvc", "queue", "status"], repo)[0]
            if "Failed" in status:
                raise RuntimeError(f"an experiment failed in {repo}:\n{status}\n"
                                   f"(logs: dvc queue logs <name>, and {log})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{names} not done after {TIMEOUT_S} s in {repo} ({log})")
        time.sleep(1.0)
    seconds = time.perf_counter() - t0
    _reap(before, time.monotonic() + 120)
    return seconds


def run(size: str = "default") -> list[Figure]:
    spec = SIZES[size]
    _adopt_orphans()
    repo = clone("study-queue-clone", TINY)
    # Shared by every run; train, sample and evaluate depend on the seed, so each runs them.
    _run(["dvc", "repro", "reference"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "baseline run", "--allow-empty"], repo)
    seeds, attempt = itertools.count(1), itertools.count()
    per_jobs: dict[int, list] = {1: [], 2: []}
    for jobs in spec["order"]:
        def one_round(jobs=jobs) -> float:
            tag = next(attempt)
            names = [f"a{tag}-j{jobs}-{i}" for i in range(spec["runs"])]
            return _round(repo, jobs, names, [next(seeds) for _ in names])

        result = gated(one_round, 1)
        per_jobs[jobs].append((result.seconds[0], result.load, result.discarded,
                               result.niced[0]))
    cmd, runs = command("study_queue", size), spec["runs"]
    what = (f"{runs}-run study of tiny runs via `dvc queue start` (bundled MNIST, "
            f"{TINY['train']['steps']} steps, batch {TINY['train']['batch']}, width "
            f"{TINY['model']['base_channels']}; train + sample + evaluate per run)")
    rate = {j: [60 * runs / s for s, *_ in rounds] for j, rounds in per_jobs.items()}
    median = {j: statistics.median(r) for j, r in rate.items()}
    load = {j: max(ld for _, ld, *_ in rounds) for j, rounds in per_jobs.items()}
    figures = [Figure(
        id=f"study_queue.j{j}.runs_per_min", what=f"{what}, `WGAN_JOBS={j} … -j {j}`",
        value=round(median[j], 3), unit="runs/min", command=cmd, load=load[j],
        details={"round_seconds": [round(s, 1) for s, *_ in per_jobs[j]],
                 "round_loads": [ld for _, ld, *_ in per_jobs[j]],
                 "round_niced_loads": [n for *_, n in per_jobs[j]],
                 "rounds_discarded_for_load": sum(d for _, _, d, _ in per_jobs[j]),
                 "order": list(spec["order"])}) for j in (1, 2)]
    figures.append(Figure(
        id="study_queue.j2_vs_j1", what=f"{what}: throughput at -j 2 / at -j 1 on "
        f"{os.cpu_count()} cores (medians of alternating rounds)",
        value=round(median[2] / median[1], 3), unit="×", command=cmd,
        load=max(load.values())))
    return figures


if __name__ == "__main__":
    import sys

    for fig in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(fig.id, fig.value, fig.unit, fig.load, fig.details)
