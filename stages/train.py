"""DVC stage `train`: train ``train.variant`` on the prepared data.

Usage: python stages/train.py PREPARED_DIR MODELS_DIR CHECKPOINTS_DIR METRICS_JSON CURVES_TSV
       LOGS_DIR PROGRESS_DIR
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from wgan.config import load_params  # noqa: E402
from wgan.train import TrainOutputs, train  # noqa: E402


def main(argv: list[str]) -> None:
    if len(argv) != 7:
        sys.exit(__doc__)
    prepared, *outs = argv
    params = load_params("params.yaml")
    summary = train(params, prepared, TrainOutputs(*map(Path, outs)))
    print({k: summary[k] for k in ("variant", "steps", "wasserstein", "images_per_s")})


if __name__ == "__main__":
    main(sys.argv[1:])
