"""DVC stage `train`: train ``train.variant`` on the prepared data."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from wgan.cli import run_stage  # noqa: E402
from wgan.config import load_params  # noqa: E402
from wgan.train import TrainOutputs, train  # noqa: E402

USAGE = ("python stages/train.py PREPARED_DIR CLASSIFIER_DIR REFERENCE_DIR MODELS_DIR "
         "CHECKPOINTS_DIR METRICS_JSON CURVES_TSV LOGS_DIR PROGRESS_DIR EVAL_CURVES_TSV LIVE_DIR")


def main(argv: list[str]) -> None:
    prepared, classifier, reference, *outs = argv
    summary = train(load_params("params.yaml"), prepared, TrainOutputs(*map(Path, outs)),
                    classifier, reference)
    print({k: summary[k] for k in ("variant", "steps", "wasserstein", "images_per_s")})


if __name__ == "__main__":
    run_stage(main, USAGE, 11)
