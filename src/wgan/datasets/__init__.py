"""Dataset readers: raw files -> :class:`wgan.prepared.Source` for the ``prepare`` stage.

Every reader module has ``load(cfg, raw_dir) -> Source`` and is picked by ``data.name``
from :data:`READERS`. Readers check their files when called and decode only while the
splits are iterated, one sample at a time. Relative paths in the config
(``data.raw_dir``, ``data.*.path``) are relative to the working directory, i.e. the
project root where ``dvc repro`` runs.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from wgan.config import DataConfig
from wgan.datasets import cifar10, images, masks, mnist
from wgan.prepared import Source

__all__ = ["READERS", "load_source"]

READERS: dict[str, ModuleType] = {
    "mnist": mnist,
    "cifar10": cifar10,
    "celeba": images,
    "folder": images,
    "mask": masks,
}


def _reader(cfg: DataConfig) -> ModuleType:
    try:
        return READERS[cfg.name]
    except KeyError:
        raise ValueError(
            f"data.name: unknown dataset {cfg.name!r}; choose one of {', '.join(READERS)}"
        ) from None


def load_source(cfg: DataConfig, raw_dir: Path | None = None) -> Source:
    """The lazy :class:`Source` of dataset ``cfg.name`` (raw files under ``cfg.raw_dir``)."""
    return _reader(cfg).load(cfg, Path(cfg.raw_dir) if raw_dir is None else Path(raw_dir))
