"""DVC stage `sample`: draw ``sample.n`` samples from the trained generator."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from wgan.cli import run_stage  # noqa: E402
from wgan.config import load_params  # noqa: E402
from wgan.sample import write_samples  # noqa: E402

USAGE = ("python stages/sample.py FINAL_GENERATOR_KERAS BEST_GENERATOR_KERAS PREPARED_DIR "
         "SAMPLES_DIR REPORT_DIR")


def main(argv: list[str]) -> None:
    final, best, prepared, samples_dir, report_dir = argv
    params = load_params("params.yaml")
    generator = best if params.sample.generator == "best" else final
    samples = write_samples(generator, prepared, samples_dir, report_dir, params.sample,
                            params.seed)
    print(f"sampled {samples.shape[0]} × {list(samples.shape[1:])} -> {samples_dir}")


if __name__ == "__main__":
    run_stage(main, USAGE, 5)
