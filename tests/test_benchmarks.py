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


def test_every_benchmark_runs_quick_and_reports(tmp_path):
    out, markdown = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    env = {**os.environ, "WGAN_BENCH_WORK": str(tmp_path / "work"), "TF_CPP_MIN_LOG_LEVEL": "2",
           "DVC_NO_ANALYTICS": "1", "PATH": str(Path(sys.executable).parent) + os.pathsep
           + os.environ["PATH"]}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick",
                           "--out", str(out), "--markdown", str(markdown)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    results = json.loads(out.read_text())
    assert results["machine"]["cores"] >= 1 and results["machine"]["tensorflow"]
    figures = results["figures"]
    assert {f["command"].split("--only ")[1].split()[0] for f in figures.values()} == MODULES
    for key, fig in figures.items():
        assert key == fig["id"]
        assert isinstance(fig["value"], (int, float)) and math.isfinite(fig["value"]), fig
        assert fig["unit"] and fig["what"] and "--quick" in fig["command"]
        assert fig["meets"] in (True, False, None)
        assert fig["load"] is None or fig["load"] >= 0
        assert fig["size"] == "quick" and fig["module"] in fig["command"]
    table = markdown.read_text()
    assert "<!-- results:start -->" in table and "| Figure |" in table
    assert results["machine"]["tensorflow"] in table


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
