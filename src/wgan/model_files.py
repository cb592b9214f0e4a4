"""Keras model files whose bytes depend only on the model.

``model.save`` writes the time of the save into ``metadata.json``, ``id()``-based
``shared_object_id`` values into ``config.json`` and the current time into a zip entry's
header. DVC hashes outputs by content, so every save of an unchanged model would look like
a new output and re-run each stage downstream of it (sample, evaluate).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import keras

__all__ = ["save_model"]

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip header can hold


def save_model(model: keras.Model, path: str | Path) -> None:
    """``model.save(path)``, then rewritten so that the same model gives the same bytes:
    no save time, shared-object ids numbered in order of appearance, fixed entry times.
    ``keras.models.load_model`` reads the result as it reads Keras' own file."""
    path = Path(path)
    model.save(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as out:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=_EPOCH)
            entry.compress_type = info.compress_type
            if info.filename in _REWRITES:
                out.writestr(entry, _REWRITES[info.filename](json.loads(src.read(info))))
            else:  # the weights: streamed, as they can be large
                big = info.file_size > zipfile.ZIP64_LIMIT
                with src.open(info) as data, out.open(entry, "w", force_zip64=big) as copy:
                    shutil.copyfileobj(data, copy, 1 << 20)
    tmp.replace(path)


def _without_save_time(metadata: dict) -> bytes:
    return json.dumps({k: v for k, v in metadata.items() if k != "date_saved"}).encode()


def _numbered_shared_objects(config: Any, ids: dict[int, int] | None = None) -> Any:
    """``config`` with each distinct ``shared_object_id`` replaced by 1, 2, ... in order of
    appearance; equal ids stay equal, which is all that loading relies on."""
    ids = {} if ids is None else ids
    if isinstance(config, dict):
        return {k: ids.setdefault(v, len(ids) + 1) if k == "shared_object_id"
                else _numbered_shared_objects(v, ids) for k, v in config.items()}
    if isinstance(config, list):
        return [_numbered_shared_objects(v, ids) for v in config]
    return config


_REWRITES = {"metadata.json": _without_save_time,
             "config.json": lambda config: json.dumps(_numbered_shared_objects(config)).encode()}
