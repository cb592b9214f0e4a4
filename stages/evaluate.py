"""DVC stage `evaluate`: score the samples against real data (metrics JSON + plot CSVs)."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from wgan.cli import run_stage  # noqa: E402
from wgan.config import load_params  # noqa: E402
from wgan.evaluate import evaluate  # noqa: E402
from wgan.files import write_json  # noqa: E402

USAGE = ("python stages/evaluate.py PREPARED_DIR SAMPLES_DIR CLASSIFIER_DIR REFERENCE_DIR "
         "EVAL_JSON PLOTS_DIR")


def main(argv: list[str]) -> None:
    prepared, samples_dir, classifier_dir, reference_dir, eval_json, plots_dir = argv
    params = load_params("params.yaml")
    metrics = evaluate(prepared, samples_dir, classifier_dir, reference_dir, plots_dir,
                       params.evaluate, params.seed)
    write_json(eval_json, metrics)
    print(json.dumps({k: v for k, v in metrics.items() if k != "protocol"}))


if __name__ == "__main__":
    run_stage(main, USAGE, 6)
