"""Keras model files whose bytes depend only on the model.

``model.save`` writes the time of the save into ``metadata.json``, ``id()``-based
``shared_object_id`` values into ``config.json`` and the current time into a zip entry's
header. DVC hashes outputs by content, so every save of an unchanged model would look like
a new output and re-run each stage downstream of it (sample, evaluate).

:func:`save_model` writes atomically (the final path only ever appears complete), and
:func:`load_model` turns every way a model file can be bad (missing, truncated, not a
zip, a crafted config) into one error naming the file and the stage that writes it.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import keras

from wgan.files import atomic_path

__all__ = ["LABEL_EMBEDDING", "generator_classes", "load_model", "save_model"]

LABEL_EMBEDDING = "label_embedding"  # the layer of a conditional generator that takes the class

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip header can hold
# Deflate data never inflates to more than 1032 times its size (stored data: once), so a
# zip entry that claims more is crafted.
_MAX_DEFLATE_RATIO = 1032
_MAX_CONFIG_BYTES = 16 << 20  # config.json / metadata.json: ours are a few kB


def save_model(model: keras.Model, path: str | Path) -> None:
    """``model.save(path)``, then rewritten so that the same model gives the same bytes:
    no save time, shared-object ids numbered in order of appearance, fixed entry times.
    ``keras.models.load_model`` reads the result as it reads Keras' own file. Atomic:
    ``path`` appears only once complete, and a failed save leaves it as it was."""
    with atomic_path(path) as tmp:
        raw = tmp.with_name(f"{tmp.stem}-keras.keras")  # Keras' own file, rewritten into tmp
        try:
            model.save(raw)
            _rewrite(raw, tmp)
        finally:
            raw.unlink(missing_ok=True)


def _rewrite(keras_file: Path, path: Path) -> None:
    with zipfile.ZipFile(keras_file) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=_EPOCH)
            entry.compress_type = info.compress_type
            if info.filename in _REWRITES:
                out.writestr(entry, _REWRITES[info.filename](json.loads(src.read(info))))
            else:  # the weights: streamed, as they can be large
                big = info.file_size > zipfile.ZIP64_LIMIT
                with src.open(info) as data, out.open(entry, "w", force_zip64=big) as copy:
                    shutil.copyfileobj(data, copy, 1 << 20)


def generator_classes(generator: keras.Model) -> int | None:
    """The number of classes a conditional generator (``model.conditional``) draws, read
    from its label embedding; None for a generator without one."""
    for layer in generator.layers:
        if layer.name == LABEL_EMBEDDING and isinstance(layer, keras.layers.Embedding):
            return int(layer.input_dim)
    return None


def load_model(path: str | Path, stage: str) -> keras.Model:
    """``keras.models.load_model(path)`` in safe mode, without optimizer state.

    ``stage`` is the DVC stage that writes ``path``; every error names the file and says
    to re-run that stage. Entry sizes are checked first, so a crafted archive cannot make
    the load inflate more than its own size allows.

    Raises:
      FileNotFoundError: if ``path`` does not exist.
      ValueError: if it is not a complete ``.keras`` archive or Keras cannot load it.
    """
    path = Path(path)
    fix = f"re-run `dvc repro {stage}`"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `dvc repro {stage}`")
    if not zipfile.is_zipfile(path):  # Keras would say "File not found"
        raise ValueError(f"{path} is not a .keras file (not a zip archive: truncated or "
                         f"overwritten?); {fix}")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_sizes(archive)
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # whatever a crafted file makes Keras raise
        raise ValueError(f"{path} cannot be loaded as a Keras model "
                         f"({type(err).__name__}: {_short(err)}); {fix}") from err


def _check_sizes(archive: zipfile.ZipFile) -> None:
    for info in archive.infolist():
        if info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 1024:
            raise ValueError(f"entry {info.filename!r} claims {info.file_size} bytes from "
                             f"{info.compress_size} compressed ones")
        if info.filename in _REWRITES and info.file_size > _MAX_CONFIG_BYTES:
            raise ValueError(f"entry {info.filename!r} is {info.file_size} bytes, over "
                             f"{_MAX_CONFIG_BYTES}")


def _short(err: BaseException, limit: int = 300) -> str:
    """The first ``limit`` characters of an error message, on one line."""
    text = " ".join(str(err).split()) or "no message"
    return text if len(text) <= limit else text[:limit] + "…"


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
