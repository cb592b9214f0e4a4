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
MODULES = {"prepare", "evaluation", "dvc_pipeline", "train_steps", "input_pipeline"}


def test_every_benchmark_runs_quick_and_reports(tmp_path):
    out, markdown = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    env = {**os.environ, "WGAN_BENCH_WORK": str(tmp_path / "work"), "TF_CPP_MIN_LOG_LEVEL": "2",
           "DVC_NO_ANALYTICS": "1", "PATH": str(Path(sys.executable).parent) + os.pathsep
           + os.environ["PATH"]}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/run.py"), "--quick",
                           "--out", str(out), "--markdown", str(markdown)],
                          env=env, capture_output=True, text=True, timeout=600)
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
    table = markdown.read_text()
    assert "<!-- results:start -->" in table and "| Figure |" in table
    assert results["machine"]["tensorflow"] in table
