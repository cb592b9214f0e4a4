"""DVC stage `classifier`: train the domain classifier used by `evaluate` (labelled data)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from wgan.classifier import train_classifier  # noqa: E402
from wgan.cli import run_stage  # noqa: E402
from wgan.config import load_params  # noqa: E402
from wgan.files import write_json  # noqa: E402

USAGE = "python stages/classifier.py PREPARED_DIR CLASSIFIER_DIR METRICS_JSON"


def main(argv: list[str]) -> None:
    prepared, classifier_dir, metrics_json = argv
    params = load_params("params.yaml")
    metrics = train_classifier(prepared, classifier_dir, params.classifier,
                               params.classifier.seed)
    write_json(metrics_json, metrics)
    print(metrics)


if __name__ == "__main__":
    run_stage(main, USAGE, 3)
