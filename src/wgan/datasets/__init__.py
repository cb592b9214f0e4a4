"""Dataset readers: raw files -> :class:`wgan.prepared.write.Source` for the ``prepare`` stage.

Every reader module has ``load(cfg, raw_dir) -> Source`` and is picked by ``data.name``
from :data:`READERS`. Readers check their files when called and decode only while the
splits are iterated, one sample at a time. Relative paths in the config
(``data.raw_dir``, ``data.*.path``) are relative to the working directory, i.e. the
project root where ``dvc repro`` runs. :func:`prepare` is the whole ``prepare`` stage:
read the dataset and write it in the prepared format.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from wgan.config import DataConfig, to_dict
from wgan.datasets import cifar10, images, lsun, masks, mnist
from wgan.prepared.format import PreparedMeta
from wgan.prepared.write import Source, write_prepared

__all__ = ["READERS", "load_source", "prepare", "prepared_params"]

READERS: dict[str, ModuleType] = {
    "mnist": mnist,
    "cifar10": cifar10,
    "celeba": images,
    "folder": images,
    "lsun": lsun,
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


def prepared_params(data: DataConfig) -> dict[str, Any]:
    """The ``data`` params that decide what ``prepare`` writes, as recorded in meta.json.

    Not ``workers`` (the output does not depend on it) nor the sections of the other
    datasets, so changing those neither changes the prepared data nor resets training
    checkpoints (whose fingerprint includes this).
    """
    out = {"name": data.name, "raw_dir": data.raw_dir, "shards": data.shards}
    section = getattr(data, data.name, None)  # cifar10 has none
    if section is not None:
        out[data.name] = to_dict(section)
    return out


def prepare(data: DataConfig, out_dir: str | Path) -> PreparedMeta:
    """Read dataset ``data.name`` and write it, prepared, to ``out_dir`` (atomically);
    the reader's temporary files are removed whether or not that succeeds."""
    with load_source(data) as source:
        return write_prepared(source, out_dir, data.shards, prepared_params(data))
