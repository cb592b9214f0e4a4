"""DVC stage `reference`: the real data's feature statistics, once per feature extractor."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from wgan.cli import run_stage  # noqa: E402
from wgan.config import load_params  # noqa: E402
from wgan.reference import write_reference  # noqa: E402

USAGE = "python stages/reference.py PREPARED_DIR CLASSIFIER_DIR REFERENCE_DIR"


def main(argv: list[str]) -> None:
    prepared, classifier_dir, reference_dir = argv
    info = write_reference(prepared, classifier_dir, reference_dir, load_params("params.yaml"))
    print(json.dumps(info))


if __name__ == "__main__":
    run_stage(main, USAGE, 3)
