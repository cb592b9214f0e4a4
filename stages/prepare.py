"""DVC stage `prepare`: raw dataset (``data.name``) -> prepared TFRecord shards + meta.json."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from wgan.cli import run_stage  # noqa: E402
from wgan.config import load_params  # noqa: E402
from wgan.datasets import prepare  # noqa: E402


def main(argv: list[str]) -> None:
    (out_dir,) = argv
    meta = prepare(load_params("params.yaml").data, out_dir)
    print(f"prepared {meta.dataset} {list(meta.shape)}: {meta.counts} -> {out_dir}")


if __name__ == "__main__":
    run_stage(main, "python stages/prepare.py OUT_DIR", 1)
