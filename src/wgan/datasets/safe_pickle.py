"""Load pickles that may come from strangers, without running their code.

``pickle.load`` imports and calls whatever a file names, so a crafted mask or
CIFAR file could run ``os.system``. :func:`load_pickle` resolves names from a
fixed table instead: only what numpy arrays, dtypes and scalars need, plus the
few builtins that pickle protocols 0-2 reach by name. Anything else raises
:class:`UnsafePickleError` before it is imported, let alone called.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy._core import multiarray, numeric

__all__ = ["UnsafePickleError", "load_pickle"]


class UnsafePickleError(ValueError):
    """A pickle names a global outside the numpy/builtin allowlist."""


def _latin1_encode(text: str, encoding: str) -> bytes:
    """Protocol 0-2 pickles written by Python 3 spell ``bytes`` as ``_codecs.encode(s, 'latin1')``.

    Only that use is admitted, so the codec registry stays out of reach.
    """
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


# (module, name) -> object. Old ``numpy.core`` names appear in pickles written by
# numpy 1.x (CIFAR-10's were), ``__builtin__`` in Python 2 ones.
_NUMPY = {
    ("multiarray", "_reconstruct"): multiarray._reconstruct,
    ("multiarray", "scalar"): multiarray.scalar,
    ("numeric", "_frombuffer"): numeric._frombuffer,
}
_BUILTINS = (set, frozenset, bytearray, bytes, complex)
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    **{(f"numpy.{core}.{mod}", name): obj
       for core in ("core", "_core") for (mod, name), obj in _NUMPY.items()},
    **{(mod, t.__name__): t for mod in ("builtins", "__builtin__") for t in _BUILTINS},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, name: str, encoding: str) -> None:
        super().__init__(file, encoding=encoding)
        self._name = name

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._name}: refusing to unpickle {module}.{name}; only numpy arrays, "
                "dtypes, scalars and builtin containers are allowed. If you trust this file, "
                "re-save its data as plain numpy arrays or lists of them"
            ) from None


def load_pickle(
    source: str | Path | BinaryIO, *, encoding: str = "ASCII", name: str | None = None
) -> Any:
    """Unpickle ``source`` (a path or binary file) through the allowlist.

    ``encoding="bytes"`` reads Python 2 pickles such as the CIFAR-10 batches.
    ``name`` labels errors for file objects (defaults to the path).
    """
    if isinstance(source, str | Path):
        with open(source, "rb") as f:
            return load_pickle(f, encoding=encoding, name=name or str(source))
    label = name or str(getattr(source, "name", "<pickle>"))
    try:
        return _RestrictedUnpickler(source, label, encoding).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # corrupt data surfaces as many types (EOFError, TypeError, ...)
        raise ValueError(f"{label}: not a readable pickle ({type(err).__name__}: {err})") from err

