"""Draw samples from a trained generator in the prepared layout, plus pictures of them.

The noise is z ~ N(0, 1) from a fresh ``numpy`` generator seeded by the top-level
``seed``: no global RNG state is read or changed, so re-running gives identical
samples, and because the stream is drawn in order the samples do not depend on
``sample.batch`` either. The generator runs in inference mode (BatchNorm uses its
moving statistics), so a sample does not depend on the other samples of its batch.

Outputs: ``samples.npz`` (key ``x``: uint8 HWC images or 0/1 masks [N, L]) and
``grid.png``; for masks also ``masks.pkl`` (float32 0/1 [N, L], the WGAN_GP_MASK
input format). Of the prepared data only ``meta.json`` is read (shape, images or
masks), so the stage depends on no real sample; ``evaluate`` compares real and
generated mask lengths (``lengths.csv``). Each output is written atomically
(:func:`wgan.files.atomic_path`): a killed run leaves none half-written.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import keras
import numpy as np

from wgan.config import SampleConfig
from wgan.files import atomic_path
from wgan.generation import generate
from wgan.model_files import generator_classes, load_model
from wgan.prepared.format import read_meta
from wgan.visualize import sample_grid, save_png

__all__ = ["load_generator", "write_samples"]


def load_generator(path: str | Path) -> keras.Model:
    """The saved generator, without optimizer state (inference only).

    Raises:
      FileNotFoundError, ValueError: naming ``path``, if it is missing, not a Keras model
        file or not a model of one noise vector, or of a noise vector and a class label
        (then: re-run the train stage).
    """
    generator = load_model(path, "train")
    shapes = [tuple(t.shape) for t in generator.inputs]
    classes = generator_classes(generator)
    noise = len(shapes[0]) == 2 and isinstance(shapes[0][1], int)
    inputs_match = len(shapes) == 1 if classes is None else (
        len(shapes) == 2 and shapes[1] == (None,) and "int" in str(generator.inputs[1].dtype))
    if not (noise and inputs_match):
        raise ValueError(f"{path} takes inputs of shape {shapes}, not a batch of noise vectors "
                         "[None, z] (and of class labels [None]); re-run `dvc repro train`")
    return generator


def write_samples(generator_path: str | Path, prepared_dir: str | Path, samples_dir: str | Path,
                  report_dir: str | Path, config: SampleConfig, seed: int) -> np.ndarray:
    """Generate ``config.n`` samples and write the sample stage's outputs; return them."""
    meta = read_meta(prepared_dir)
    generator = load_generator(generator_path)
    classes = generator_classes(generator)
    if classes is not None and classes != meta.num_classes:
        raise ValueError(f"{generator_path} draws {classes} classes, but {prepared_dir} has "
                         f"{meta.num_classes}; retrain on this dataset")
    samples = generate(generator, config.n, config.batch, seed, meta.is_image)
    if samples.shape[1:] != meta.shape:
        raise ValueError(f"generator makes samples of shape {list(samples.shape[1:])}, but "
                         f"{prepared_dir} holds {list(meta.shape)}; retrain on this dataset")
    samples_dir, report_dir = Path(samples_dir), Path(report_dir)
    with atomic_path(samples_dir / "samples.npz") as tmp:
        np.savez_compressed(tmp, x=samples)
    grid = sample_grid(samples[:config.grid ** 2], columns=config.grid)
    save_png(grid, report_dir / "grid.png", scale=2 if meta.is_image else 1)
    if not meta.is_image:
        with atomic_path(samples_dir / "masks.pkl") as tmp, open(tmp, "wb") as f:
            pickle.dump(samples.astype(np.float32), f, protocol=pickle.HIGHEST_PROTOCOL)
    return samples
