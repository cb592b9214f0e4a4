"""DVC stage `evaluate`: score the samples against real data (metrics JSON + plot CSVs)."""

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from wgan.cli import run_stage  # noqa: E402
from wgan.config import load_params  # noqa: E402
from wgan.evaluate import evaluate  # noqa: E402

USAGE = ("python stages/evaluate.py PREPARED_DIR SAMPLES_DIR CLASSIFIER_DIR EVAL_JSON "
         "PLOTS_DIR")


def main(argv: list[str]) -> None:
    prepared, samples_dir, classifier_dir, eval_json, plots_dir = argv
    params = load_params("params.yaml")
    metrics = evaluate(prepared, samples_dir, classifier_dir, plots_dir, params.evaluate,
                       params.seed)
    Path(eval_json).parent.mkdir(parents=True, exist_ok=True)
    Path(eval_json).write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps({k: v for k, v in metrics.items() if k != "protocol"}))


if __name__ == "__main__":
    run_stage(main, USAGE, 5)
