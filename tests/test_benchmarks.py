"""Smoke test: every benchmark runs at its smallest size and writes well-formed results.

Benchmarks are not timed tests; only that they run and report is checked, so none of
them rots. Everything they generate goes to a temporary directory.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = {"prepare", "evaluation", "inception", "dvc_pipeline", "train_steps",
           "layer_profile", "input_pipeline", "eval_overhead", "study_queue"}
# Three runs at once, each in its own work directory: study_queue alone (about 75 s of
# mostly waiting on DVC's queue and its workers), the other DVC and stage-process ones,
# and the TensorFlow ones in one process; each of the last two takes about 45 s.
GROUPS = [["study_queue"], ["prepare", "evaluation", "inception", "dvc_pipeline",
                            "input_pipeline"], ["eval_overhead", "train_steps", "layer_profile"]]


def test_every_benchmark_runs_quick_and_reports(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "DVC_NO_ANALYTICS": "1",
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    runs = []
    try:
        for i, group in enumerate(GROUPS):
            out, markdown, log = (tmp_path / f"{name}-{i}" for name in
                                  ("results.json", "BENCHMARKS.md", "log"))
            with log.open("w") as sink:  # a file: an unread pipe would stall the other run
                proc = subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.run", "--quick", "--only",
                     ",".join(group), "--out", str(out), "--markdown", str(markdown)],
                    cwd=ROOT, env={**env, "WGAN_BENCH_WORK": str(tmp_path / f"work-{i}")},
                    stdout=sink, stderr=subprocess.STDOUT)
            runs.append((proc, out, markdown, log))
        for proc, _, _, log in runs:
            assert proc.wait(timeout=1500) == 0, log.read_text()[-6000:]
    finally:
        for proc, *_ in runs:
            proc.kill()  # a no-op for a run that has exited
            proc.wait()

    figures = {}
    for _, out, markdown, _ in runs:
        results = json.loads(out.read_text())
        assert results["machine"]["cores"] >= 1 and results["machine"]["tensorflow"]
        table = markdown.read_text()
        assert "<!-- results:start -->" in table and "| Figure |" in table
        assert results["machine"]["tensorflow"] in table
        assert not figures.keys() & results["figures"].keys()
        figures.update(results["figures"])
    assert sorted(m for group in GROUPS for m in group) == sorted(MODULES)
    assert {f["command"].split("--only ")[1].split()[0] for f in figures.values()} == MODULES
    for key, fig in figures.items():
        assert key == fig["id"]
        assert isinstance(fig["value"], (int, float)) and math.isfinite(fig["value"]), fig
        assert fig["unit"] and fig["what"] and "--quick" in fig["command"]
        assert fig["meets"] in (True, False, None)
        assert fig["load"] is None or fig["load"] >= 0
        assert fig["size"] == "quick" and fig["module"] in fig["command"]


def test_merge_drops_the_figures_a_run_no_longer_produces():
    from benchmarks.run import merge, render  # the repository root is on sys.path

    stored = {key: {"id": key, "module": module, "size": size, "value": 1}
              for key, module, size in [("kept", "prepare", "default"),
                                        ("renamed", "prepare", "default"),
                                        ("quick", "prepare", "quick"),
                                        ("full-only", "prepare", "full"),
                                        ("other", "evaluation", "default")]}
    stored["untagged"] = {"id": "untagged", "value": 1}  # from a results file before tags
    emitted = [{"id": "kept", "value": 2}, {"id": "new", "value": 3}]
    assert sorted(merge(stored, "prepare", "default", emitted, "t1", "cpu A")) == [
        "quick", "renamed"]
    assert sorted(stored) == ["full-only", "kept", "new", "other", "untagged"]  # keeps full-only
    assert stored["kept"] == {"id": "kept", "value": 2, "measured_at": "t1",
                              "module": "prepare", "size": "default", "cpu": "cpu A"}
    assert "t1 (cpu A)" in render({"machine": {}, "figures": {
        "kept": {**stored["kept"], "what": "w", "unit": "s", "target": "<= 1", "meets": False,
                 "command": "c"}}})
    assert merge(stored, "prepare", "full", [{"id": "kept", "value": 4}], "t2") == [
        "full-only", "new"]
    assert sorted(stored) == ["kept", "other", "untagged"]
