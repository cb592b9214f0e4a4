"""What a run shows while it trains: per-step curves, TensorBoard and progress grids.

:class:`TrainingLog` writes a TSV for DVC plots and TensorBoard scalars and images.
Rows are appended as device tensors and converted only in :meth:`TrainingLog.flush`,
so logging never forces a host sync inside the loop. ``flush`` also reports the first
non-finite value, which is how the NaN guard names the step and the loss.

:class:`ProgressGrids` keeps the fixed-noise sample grids of a run and animates them.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from wgan.visualize import sample_grid, save_gif, save_png

__all__ = ["TrainingLog", "ProgressGrids", "CurveFile", "CURVE_COLUMNS"]

CURVE_COLUMNS = ("step", "critic_loss", "generator_loss", "wasserstein", "penalty",
                 "grad_norm", "lr")


def _scalar_writer(writer):
    """One compiled call writes every (step, metric) scalar of a flush to TensorBoard.

    Writing them one eager ``tf.summary.scalar`` at a time cost ~6% of a default
    training run (py-spy); in a ``tf.function`` the loop runs in the graph.
    """
    names = CURVE_COLUMNS[1:]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64),
                                  tf.TensorSpec([None, len(names)], tf.float32)])
    def write(steps, rows):
        with writer.as_default():
            for i in tf.range(tf.shape(steps)[0]):
                with tf.compat.v1.name_scope(None):  # tags without the loop's "while/"
                    for j, name in enumerate(names):
                        tf.summary.scalar(name, rows[i, j], step=steps[i])

    return write


def _parsed(line: str, columns: tuple[str, ...]) -> dict[str, float] | None:
    """A row of a curve file, or None for one that is not a row of these columns."""
    values = line.split("\t")
    try:
        return dict(zip(columns, map(float, values), strict=True))
    except ValueError:
        return None


class CurveFile:
    """A TSV of rows keyed by step (DVC plots read it), kept across a resumed run.

    Opening it at ``resume_at`` keeps the rows up to that step, the run's last checkpoint:
    rows a killed run wrote after it are redrawn by the resumed run.
    """

    def __init__(self, path: Path, columns: tuple[str, ...], resume_at: int,
                 write: bool = True) -> None:
        self.path, self.columns, self.write = Path(path), columns, write
        self.rows: list[dict[str, float]] = []
        if resume_at > 0 and self.path.is_file():
            # Every row ends in a newline: text after the last one is a row a killed run
            # left half-written (it may even parse, as a shorter number).
            lines = self.path.read_text().split("\n")[:-1]
            header = lines[0].split("\t") if lines else []
            if tuple(header) == columns:  # other columns: another configuration's file
                rows = (_parsed(line, columns) for line in lines[1:])
                self.rows = [r for r in rows if r is not None and r["step"] <= resume_at]
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("\t".join(columns) + "\n")
            self._write(self.rows)

    def append(self, rows: list[dict[str, float]]) -> None:
        self.rows += rows
        if self.write:
            self._write(rows)

    def _write(self, rows: list[dict[str, float]]) -> None:
        with self.path.open("a") as f:
            f.writelines("\t".join([str(int(row["step"]))] + [f"{row[c]:.6g}" for c in
                                                             self.columns[1:]]) + "\n"
                         for row in rows)


class TrainingLog:
    def __init__(self, curves: Path, logdir: Path, resume_at: int = 0, chief: bool = True):
        self.curves = CurveFile(curves, CURVE_COLUMNS, resume_at, write=chief)
        self.pending: list[tuple[int, dict]] = []
        # a run resumed at its last step appends nothing but still reports these
        self.last: dict[str, float] = dict(self.curves.rows[-1]) if self.curves.rows else {}
        self.chief = chief
        if chief and resume_at == 0:  # a fresh start replaces the run's old events
            shutil.rmtree(logdir, ignore_errors=True)
        self.writer = tf.summary.create_file_writer(str(logdir)) if chief else None
        self._scalars = _scalar_writer(self.writer) if chief else None

    def append(self, step: int, metrics: dict) -> None:
        self.pending.append((step, metrics))

    def flush(self) -> tuple[int, str, float] | None:
        """Write pending rows up to the first non-finite value; return (step, name, value)
        of that value, or None."""
        rows, bad = [], None
        for step, metrics in self.pending:
            values = {k: float(np.asarray(v)) for k, v in metrics.items()}
            bad = next(((step, k, v) for k, v in values.items() if not math.isfinite(v)), None)
            if bad:
                break
            self.last = {"step": step, **values}
            rows.append(self.last)
        self.pending = []
        self.curves.append(rows)
        if self.chief and rows:
            self._scalars(tf.constant([r["step"] for r in rows], tf.int64),
                          tf.constant([[r[c] for c in CURVE_COLUMNS[1:]] for r in rows],
                                      tf.float32))
        return bad

    def scalars(self, step: int, values: dict[str, float], prefix: str) -> None:
        """Occasional scalars (the evaluations during training) as ``<prefix>/<name>``."""
        if self.writer is not None:
            with self.writer.as_default(step=step):
                for name, value in values.items():
                    tf.summary.scalar(f"{prefix}/{name}", value)

    def image(self, step: int, grid: np.ndarray) -> None:
        if self.writer is not None:
            picture = grid[..., None] if grid.ndim == 2 else grid
            with self.writer.as_default(step=step):
                tf.summary.image("fixed_noise_samples", picture[None], max_outputs=1)

    def last_summary(self) -> dict[str, str]:
        keys = ("critic_loss", "generator_loss", "wasserstein")
        return {k: f"{self.last[k]:.3g}" for k in keys if k in self.last}

    def last_values(self) -> dict[str, float]:
        return dict(self.last)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class ProgressGrids:
    """The fixed-noise grids of one run, ``grid-<step>.png``, kept in ``directory``.

    They live beside the checkpoints (kept across runs) and not in the stage's cached
    output, which DVC empties before each run and would cut a resumed run's GIF short;
    :meth:`publish` copies them there.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, step: int) -> Path:
        return self.directory / f"grid-{step:06d}.png"

    def start(self, step: int) -> None:
        """Keep the grids up to ``step``, the step a run resumes at (0: none); the loop
        redraws later ones."""
        if step == 0:
            shutil.rmtree(self.directory, ignore_errors=True)
        for grid in self.directory.glob("grid-*.png"):
            if int(grid.stem.removeprefix("grid-")) > step:
                grid.unlink()

    def draw(self, step: int, samples: np.ndarray) -> np.ndarray:
        """Save the grid of uint8 ``samples`` at ``step``; return it (for TensorBoard)."""
        grid = sample_grid(samples)
        save_png(grid, self._path(step), scale=2)
        return grid

    def has(self, step: int) -> bool:
        return self._path(step).exists()

    def publish(self, progress: Path) -> None:
        """Copy every grid of the run, resumed parts included, to ``progress`` and animate
        them as ``progress.gif``."""
        progress.mkdir(parents=True, exist_ok=True)
        for stale in progress.glob("grid-*.png"):
            stale.unlink()
        frames = [Path(shutil.copyfile(grid, progress / grid.name))
                  for grid in sorted(self.directory.glob("grid-*.png"))]
        save_gif(frames, progress / "progress.gif")
