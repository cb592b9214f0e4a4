"""Pictures of samples: image grids, mask rows, and animated progress GIFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from wgan.files import atomic_path

__all__ = ["sample_grid", "save_png", "save_gif"]


def _image_grid(images: np.ndarray, columns: int) -> np.ndarray:
    """Tile uint8 [N, H, W, C] images into one [rows·H, columns·W, C] picture (1 px gaps)."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    grid = np.full((rows * (h + 1) + 1, columns * (w + 1) + 1, c), 255, np.uint8)
    for i, image in enumerate(images):
        r, k = divmod(i, columns)
        grid[1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + k * (w + 1): 1 + k * (w + 1) + w] = image
    return grid[..., 0] if c == 1 else grid


def _mask_rows(masks: np.ndarray, width: int = 512, row_height: int = 6) -> np.ndarray:
    """Draw 0/1 masks [N, L] as horizontal bars (white = 1), resampled to ``width`` px."""
    index = np.linspace(0, masks.shape[1] - 1, width).astype(int)
    rows = (masks[:, index] > 0).astype(np.uint8) * 255
    bars = np.repeat(rows, row_height, axis=0)
    bars[::row_height] = 96  # a grey separator line above every mask
    return bars


def sample_grid(samples: np.ndarray, columns: int = 10) -> np.ndarray:
    """One picture of uint8 samples: a tiled grid for images, stacked bars for masks."""
    if samples.ndim == 4:
        return _image_grid(samples, columns)
    if samples.ndim == 2:
        return _mask_rows(samples)
    raise ValueError(f"cannot draw samples of shape {samples.shape}")


def save_png(picture: np.ndarray, path: str | Path, scale: int = 1) -> None:
    """Save ``picture`` (scaled up ``scale``× without smoothing), atomically."""
    image = Image.fromarray(picture)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    with atomic_path(path) as tmp:
        image.save(tmp)


def save_gif(png_paths: list[Path], path: str | Path, ms_per_frame: int = 300) -> None:
    """Animate the progress grids, in the order given."""
    frames = [Image.open(p).convert("P") for p in png_paths]
    if frames:
        with atomic_path(path) as tmp:
            frames[0].save(tmp, save_all=True, append_images=frames[1:],
                           duration=ms_per_frame, loop=0)
