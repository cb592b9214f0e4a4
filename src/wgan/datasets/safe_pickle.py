"""Load pickles that may come from strangers: no code run, bounded memory and time.

``pickle.load`` imports and calls whatever a file names. Restricting the names
(``find_class``) is not enough: its C implementation also allocates whatever the file
asks for before anything is checked. A 9-byte pickle with memo index 2**26 takes 1.6 GB,
``bytearray(2**30)`` 1 GiB from 33 bytes, and 261 bytes of shared references to nested
lists stand for 10**10 elements, which ``np.asarray`` then expands for minutes.

So :func:`load_pickle` does not call it. It interprets the file itself, in Python, for
the opcodes that numpy arrays, dtypes, scalars and plain containers use (protocols 0-5;
never ``INST``, ``OBJ``, ``NEWOBJ``, extension codes, persistent ids or out-of-band
buffers), and:

- **names** resolve only from a fixed table: numpy's array, dtype and scalar
  reconstructors and a few builtins. Anything else raises :class:`UnsafePickleError`
  before it is imported, let alone called; the table's entries are called only with
  checked arguments (plain dtypes, no structured ones; array data exactly as long as
  its shape and dtype say).
- **memory** is estimated as the objects are built, before each is built (a pointer
  per reference, the size of each new object, each array's bytes), and the file is
  refused once the estimate exceeds ``MEMORY_PER_BYTE`` × its size +
  ``MEMORY_FLOOR``. Eight bytes, one pointer, per byte of the file is what a list of
  Python bools needs, the densest honest encoding (1 byte each in the file); a numpy
  array needs ~2. The memo is a dict, so a memo index costs nothing by its size.
- **shape**: counting a shared reference as often as it is reached (as ``np.asarray``
  does), the result may hold at most the file's size + ``ELEMENT_FLOOR`` elements
  (every container and every scalar or array element): without shared references,
  each takes at least one byte of the file. Nesting is at most ``MAX_DEPTH`` deep
  (the formats read here need 2-3) and may not loop.
- **dicts and sets** hold at most ``MAX_ENTRIES`` entries (the formats need 4),
  keyed by flat values (str, bytes, numbers, None, or tuples of these): integers chosen
  to share a hash make each insertion compare with all the others, and hashing deeply
  nested tuples recurses in C.
- **the file** is at most ``MAX_FILE_BYTES``, checked before it is read.

Every refusal is a ``ValueError`` (:class:`UnsafePickleError` for names) of one line
that names the file.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import itertools
import os
import stat
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy._core import multiarray, numeric

from wgan.datasets.untrusted import RefusedFile, read_regular

__all__ = [
    "ELEMENT_FLOOR", "MAX_DEPTH", "MAX_ENTRIES", "MAX_FILE_BYTES", "MEMORY_FLOOR",
    "MEMORY_PER_BYTE", "UnsafePickleError", "load_pickle",
]

MAX_FILE_BYTES = 2**30  # 2**28 float32 mask values, e.g. 32768 masks of 8192; CIFAR's: 31 MB
MEMORY_PER_BYTE = 8
MEMORY_FLOOR = 16 * 2**20
ELEMENT_FLOOR = 2**16
MAX_DEPTH = 32
MAX_ENTRIES = 4096
_MAX_DIGITS = 4300  # Python's own limit for int(str), which an environment variable lifts
_MAX_DTYPE_CODE = 64
_MAX_FLOAT_TEXT = 256  # repr(float) takes at most 24
_I4, _U4, _U8 = (struct.Struct(f) for f in ("<i", "<I", "<Q"))


class UnsafePickleError(ValueError):
    """A pickle names a global outside the numpy/builtin allowlist."""


class _Refused(Exception):
    """The file breaks a limit or uses what is not allowed; the message says how,
    without the file's name."""


class _Corrupt(Exception):
    """The file is not a well-formed pickle; the message says where."""


def _latin1_encode(text: str, encoding: str) -> bytes:
    """Protocol 0-2 pickles written by Python 3 spell ``bytes`` as ``_codecs.encode(s, 'latin1')``.

    Only that use is admitted, so the codec registry stays out of reach.
    """
    if encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode with encoding {encoding!r} is not allowed")
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
_FLAT = (str, bytes, int, float, bool, type(None), complex)  # allowed dict keys, set items
_LATIN1 = ("latin1", "latin-1")
# Estimated bytes of a new object (CPython 3.11, 64-bit): what memory is charged.
_POINTER, _LIST, _TUPLE, _DICT, _DICT_ENTRY, _SET, _SET_ENTRY = 8, 56, 40, 64, 48, 216, 32
_FLOAT, _INT, _BYTES, _BYTEARRAY, _ARRAY, _DTYPE, _MEMO_ENTRY = 24, 32, 33, 57, 112, 96, 64


def _shape_count(shape: object) -> int:
    """The element count of an array shape (a tuple of at most 32 ints >= 0)."""
    if type(shape) is not tuple or len(shape) > MAX_DEPTH or \
            any(type(d) is not int or d < 0 for d in shape):
        raise _Refused(f"an array shape must be a tuple of at most {MAX_DEPTH} sizes, got "
                       f"{type(shape).__name__}")
    count = 1
    for d in shape:
        count *= d
    return count


def _plain_dtype(dt: object) -> np.dtype:
    """``dt`` if it is a dtype without fields, subarrays or metadata."""
    if not isinstance(dt, np.dtype):
        raise _Refused(f"expected a numpy dtype, got {type(dt).__name__}")
    if dt.names is not None or dt.subdtype is not None or dt.metadata:
        raise _Refused(f"dtype {dt} is structured; only plain dtypes are allowed")
    return dt


def _dtype_code(code: object) -> np.dtype:
    if type(code) not in (str, bytes) or len(code) > _MAX_DTYPE_CODE:
        raise _Refused(f"a dtype must be given by a short code, got {type(code).__name__}")
    return _plain_dtype(np.dtype(code))


def _flat_key(key: object) -> None:
    if isinstance(key, _FLAT) or (type(key) is tuple and all(isinstance(k, _FLAT) for k in key)):
        return
    raise _Refused(f"a dict key or set item may not be a {type(key).__name__}")


class _Machine:
    """The pickle virtual machine, for the opcodes :data:`_OPS` lists."""

    def __init__(self, data: bytes, encoding: str) -> None:
        self.data = data
        self.pos = 0
        self.encoding = encoding
        self.stack: list = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.limit = MEMORY_PER_BYTE * len(data) + MEMORY_FLOOR
        self.left = self.limit

    # --- accounting and the stack ---

    def charge(self, nbytes: int) -> None:
        self.left -= nbytes
        if self.left < 0:
            raise _Refused(
                f"it would take more than {self.limit} bytes of memory ({MEMORY_PER_BYTE} x "
                f"its {len(self.data)} bytes + {MEMORY_FLOOR}), far more than any mask or "
                "CIFAR data of its size")

    def push(self, obj: object, size: int = 0) -> None:
        self.charge(_POINTER + size)
        self.stack.append(obj)

    def floor(self) -> int:
        return self.marks[-1] if self.marks else 0

    def pop(self) -> Any:
        if len(self.stack) <= self.floor():
            raise _Corrupt(f"stack underflow at byte {self.pos - 1}")
        return self.stack.pop()

    def top(self) -> Any:
        if len(self.stack) <= self.floor():
            raise _Corrupt(f"stack underflow at byte {self.pos - 1}")
        return self.stack[-1]

    def pop_mark(self) -> list:
        if not self.marks:
            raise _Corrupt(f"no MARK before byte {self.pos - 1}")
        mark = self.marks.pop()
        items = self.stack[mark:]
        del self.stack[mark:]
        return items

    # --- reading the file ---

    def truncated(self, n: int) -> _Corrupt:
        return _Corrupt(f"truncated: {n} bytes wanted at byte {self.pos} of {len(self.data)}")

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise self.truncated(n)
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise self.truncated(1)
        self.pos += 1
        return self.data[self.pos - 1]

    def unpack(self, fmt: struct.Struct) -> Any:
        end = self.pos + fmt.size
        if end > len(self.data):
            raise self.truncated(fmt.size)
        value = fmt.unpack_from(self.data, self.pos)[0]
        self.pos = end
        return value

    def line(self) -> bytes:
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise _Corrupt(f"truncated: no end of line after byte {self.pos}")
        out = self.data[self.pos:end]
        self.pos = end + 1
        return out

    def sized(self, fmt: struct.Struct | None, size: int) -> bytes:
        """A length-prefixed payload, charged ``size`` + its length before it is read."""
        n = self.byte() if fmt is None else self.unpack(fmt)
        if n < 0 or n > len(self.data) - self.pos:
            raise self.truncated(n)
        self.charge(size + n)
        return self.take(n)

    def decimal(self, text: bytes) -> int:
        if len(text) > _MAX_DIGITS:
            raise _Refused(f"a decimal integer of {len(text)} digits")
        return int(text)

    def float_text(self, text: bytes) -> float:
        if len(text) > _MAX_FLOAT_TEXT:
            raise _Refused(f"a decimal float of {len(text)} characters")
        return float(text)

    def string(self, raw: bytes) -> bytes | str:
        """A Python 2 ``str``: bytes with ``encoding="bytes"``, else decoded."""
        return raw if self.encoding == "bytes" else raw.decode(self.encoding)

    def push_text(self, text: str) -> None:
        self.push(text, sys.getsizeof(text))  # at most 4 x its bytes in the file

    def push_int(self, value: int) -> None:
        self.push(value, 0 if -5 <= value <= 256 else _INT + value.bit_length() // 8)

    def memo_put(self, index: int) -> None:
        if index not in self.memo:
            self.charge(_MEMO_ENTRY)
        self.memo[index] = self.top()

    def memo_get(self, index: int) -> None:
        try:
            self.push(self.memo[index])
        except KeyError:
            raise _Corrupt(f"memo index {index} was never stored") from None

    def container(self, kind: type) -> Any:
        target = self.top()
        if type(target) is not kind:
            raise _Refused(f"cannot add items to a {type(target).__name__}")
        return target

    def add_entries(self, target: dict | set, count: int) -> None:
        if len(target) + count > MAX_ENTRIES:
            raise _Refused(f"a dict or set of more than {MAX_ENTRIES} entries")
        self.charge(count * (_DICT_ENTRY if type(target) is dict else _SET_ENTRY))

    def set_items(self, items: list) -> None:
        target = self.container(dict)
        if len(items) % 2:
            raise _Corrupt("SETITEMS with an odd number of items")
        self.add_entries(target, len(items) // 2)
        for key, value in zip(items[::2], items[1::2], strict=True):
            _flat_key(key)
            target[key] = value

    def new_set(self, kind: type, items: object) -> set | frozenset:
        if type(items) not in (list, tuple):
            raise _Refused(f"{kind.__name__} of a {type(items).__name__}")
        if len(items) > MAX_ENTRIES:
            raise _Refused(f"a dict or set of more than {MAX_ENTRIES} entries")
        for item in items:
            _flat_key(item)
        self.charge(_SET + _SET_ENTRY * len(items))
        return kind(items)

    def run(self) -> Any:
        data, ops = self.data, _OPS
        while self.pos < len(data):
            code = data[self.pos]
            self.pos += 1
            op = ops.get(code)
            if op is None:
                raise _Refused(f"opcode {bytes([code])!r} at byte {self.pos - 1} is not "
                               "supported (numpy arrays and plain containers never need it)")
            if op(self):
                return self.pop()
        raise _Corrupt("truncated: no STOP opcode")


# --- calls: the allowlisted callables, each with its checks and memory charge ---

def _reconstruct(m: _Machine, cls: object, shape: object, dtype: object) -> np.ndarray:
    if cls is not np.ndarray:
        raise _Refused("numpy _reconstruct of anything but numpy.ndarray")
    dt = _plain_dtype(dtype) if isinstance(dtype, np.dtype) else _dtype_code(dtype)
    m.charge(_ARRAY + _shape_count(shape) * dt.itemsize)
    return multiarray._reconstruct(np.ndarray, shape, dt)


def _scalar(m: _Machine, dtype: object, data: object = None) -> Any:
    dt = _plain_dtype(dtype)
    if dt.hasobject:
        return data  # numpy's object scalar is the object itself
    if type(data) not in (bytes, str) or len(data) != dt.itemsize:
        raise _Refused(f"a {dt} scalar needs {dt.itemsize} bytes of data")
    m.charge(_BYTES + dt.itemsize)
    return multiarray.scalar(dt, data)


def _frombuffer(m: _Machine, buf: object, dtype: object, shape: object, order: object) -> Any:
    dt = _plain_dtype(dtype)
    if type(buf) not in (bytes, bytearray) or dt.hasobject or order not in ("C", "F") or \
            len(buf) != _shape_count(shape) * dt.itemsize:
        raise _Refused("numpy _frombuffer with data that does not match its shape and dtype")
    m.charge(_ARRAY)  # a view of the buffer, already charged
    return numeric._frombuffer(buf, dt, shape, order)


def _dtype(m: _Machine, code: object, align: object = False, copy: object = True) -> np.dtype:
    if type(align) not in (bool, int) or type(copy) not in (bool, int):  # numpy 1.x: 0, 1
        raise _Refused("numpy dtype with arguments other than (code, align, copy)")
    m.charge(_DTYPE)
    _dtype_code(code)
    # Always a copy: BUILD then sets the state of this dtype, never of numpy's shared one.
    return np.dtype(code, align=bool(align), copy=True)


def _binary(m: _Machine, kind: type, *args: object) -> bytes | bytearray:
    """``bytes(...)`` or ``bytearray(...)`` of a size, a latin-1 str, bytes or a list."""
    source = args[0] if args else b""
    if type(source) is int and len(args) == 1 and source >= 0:
        size = source
    elif type(source) is str and len(args) == 2 and args[1] in _LATIN1:
        size = len(source)
    elif type(source) in (bytes, bytearray, list) and len(args) <= 1:
        size = len(source)
    else:
        raise _Refused(f"{kind.__name__} of {', '.join(type(a).__name__ for a in args)}")
    m.charge(_BYTEARRAY + size)
    return kind(*args)


def _complex(m: _Machine, *args: object) -> complex:
    if len(args) > 2 or any(type(a) not in (int, float) for a in args):
        raise _Refused("complex of anything but numbers")
    m.charge(_INT)
    return complex(*args)  # type: ignore[arg-type]


def _encode(m: _Machine, text: object, encoding: object) -> bytes:
    if type(text) is not str or type(encoding) is not str:
        raise _Refused("_codecs.encode of anything but a str")
    m.charge(_BYTES + len(text))
    return _latin1_encode(text, encoding)


_CALLS: dict[int, tuple[object, Callable[..., Any]]] = {id(f): (f, call) for f, call in [
    (multiarray._reconstruct, _reconstruct),
    (multiarray.scalar, _scalar),
    (numeric._frombuffer, _frombuffer),
    (np.dtype, _dtype),
    (_latin1_encode, _encode),
    (bytes, lambda m, *a: _binary(m, bytes, *a)),
    (bytearray, lambda m, *a: _binary(m, bytearray, *a)),
    (set, lambda m, items=(): m.new_set(set, items)),
    (frozenset, lambda m, items=(): m.new_set(frozenset, items)),
    (complex, _complex),
]}


def _call(m: _Machine, func: object, args: object) -> Any:
    entry = _CALLS.get(id(func))
    if entry is None or entry[0] is not func:
        raise _Refused(f"calling {getattr(func, '__name__', type(func).__name__)} is not "
                       "allowed")
    if type(args) is not tuple:
        raise _Refused("REDUCE arguments are not a tuple")
    return entry[1](m, *args)


def _set_array_state(m: _Machine, array: np.ndarray, state: object) -> None:
    if type(state) is not tuple or len(state) not in (4, 5) or \
            (len(state) == 5 and state[0] != 1):
        raise _Refused("an array state must be (version, shape, dtype, is_fortran, data)")
    shape, dtype, fortran, raw = state[-4:]
    dt = _plain_dtype(dtype)
    count = _shape_count(shape)
    if type(fortran) not in (bool, int):
        raise _Refused("an array state's is_fortran must be a bool")
    if dt.hasobject:
        if type(raw) is not list or len(raw) != count:
            raise _Refused(f"object array data must be a list of {count} items")
        m.charge(_ARRAY + _POINTER * count)
    else:
        if type(raw) not in (bytes, bytearray, str) or len(raw) != count * dt.itemsize:
            got = f"{len(raw)} bytes" if type(raw) in (bytes, bytearray, str) else \
                type(raw).__name__
            raise _Refused(f"array data of {got} where shape {shape} of {dt} needs "
                           f"{count * dt.itemsize} bytes")
        m.charge(_ARRAY + count * dt.itemsize)
    array.__setstate__(state)


def _set_dtype_state(dt: np.dtype, state: object) -> None:
    if type(state) is not tuple or len(state) not in (8, 9) or state[0] not in (3, 4):
        raise _Refused("a dtype state must be numpy's 8 or 9 items, version 3 or 4")
    _, order, subarray, names, fields, elsize, alignment, flags = state[:8]
    if any(v is not None for v in (subarray, names, fields, *state[8:])):
        raise _Refused("structured, subarray and datetime dtypes are not allowed")
    if order not in ("<", ">", "|", "=", b"<", b">", b"|", b"=") or \
            elsize not in (-1, dt.itemsize) or alignment not in (-1, dt.alignment) or \
            flags != dt.flags:
        raise _Refused(f"a state that does not fit dtype {dt}")
    dt.__setstate__(state)


# --- the opcodes: each reads its argument, changes the machine; True only for STOP ---

def _op_mark(m: _Machine) -> None:
    m.charge(_POINTER)
    m.marks.append(len(m.stack))


def _op_pop(m: _Machine) -> None:
    if len(m.stack) > m.floor():
        m.stack.pop()
    else:
        m.pop_mark()


def _op_build(m: _Machine) -> None:
    state = m.pop()
    target = m.top()
    if type(target) is np.ndarray:
        _set_array_state(m, target, state)
    elif isinstance(target, np.dtype):
        _set_dtype_state(target, state)
    else:
        raise _Refused(f"setting the state of a {type(target).__name__} is not allowed")


def _op_reduce(m: _Machine) -> None:
    args = m.pop()
    func = m.pop()
    m.push(_call(m, func, args))


def _op_global(m: _Machine, module: object, name: object) -> None:
    try:
        m.push(_ALLOWED[(module, name)])
    except (KeyError, TypeError):
        raise UnsafePickleError(f"refusing to unpickle {module}.{name}") from None


def _op_appends(m: _Machine) -> None:
    if not m.marks:
        raise _Corrupt(f"no MARK before byte {m.pos - 1}")
    mark = m.marks.pop()
    if mark <= m.floor():
        raise _Corrupt(f"stack underflow at byte {m.pos - 1}")
    target = m.stack[mark - 1]
    if type(target) is not list:
        raise _Refused(f"cannot add items to a {type(target).__name__}")
    target.extend(itertools.islice(m.stack, mark, None))  # no temporary copy
    del m.stack[mark:]


def _op_append(m: _Machine) -> None:
    value = m.pop()
    m.container(list).append(value)


def _op_setitem(m: _Machine) -> None:
    value = m.pop()
    key = m.pop()
    m.set_items([key, value])


def _op_additems(m: _Machine) -> None:
    items = m.pop_mark()
    target = m.container(set)
    m.add_entries(target, len(items))
    for item in items:
        _flat_key(item)
    target.update(items)


def _op_dict(m: _Machine) -> None:
    items = m.pop_mark()
    m.push({}, _DICT)
    m.set_items(items)


def _op_tuple(m: _Machine, count: int | None) -> None:
    if count is None:
        m.push(tuple(m.pop_mark()), _TUPLE)
    else:
        items = [m.pop() for _ in range(count)][::-1]
        m.push(tuple(items), _TUPLE)


def _op_string(m: _Machine) -> None:
    raw = m.line().rstrip()
    if len(raw) < 2 or raw[0] != raw[-1] or raw[:1] not in (b"'", b'"'):
        raise _Corrupt("a STRING opcode's argument is not quoted")
    m.charge(_BYTES + len(raw))
    m.push(m.string(codecs.escape_decode(raw[1:-1])[0]))


def _op_int(m: _Machine) -> None:
    text = m.line()
    if text in (b"00", b"01"):
        m.push(text == b"01")
    else:
        m.push_int(m.decimal(text))


def _op_long(m: _Machine) -> None:
    text = m.line()
    m.push_int(m.decimal(text[:-1] if text.endswith(b"L") else text))


def _op_long_bytes(m: _Machine, fmt: struct.Struct | None) -> None:
    data = m.sized(fmt, _INT)
    m.push(int.from_bytes(data, "little", signed=True))


def _op_proto(m: _Machine) -> None:
    version = m.byte()
    if version > 5:
        raise _Corrupt(f"pickle protocol {version} is newer than 5")


def _op_frame(m: _Machine) -> None:
    if m.unpack(_U8) > len(m.data) - m.pos:
        raise _Corrupt(f"truncated: a frame longer than the rest of the file at byte {m.pos}")


def _scalars(code: int, fmt: str, dtype: str, size: int) -> Callable[[_Machine], None]:
    """The opcode ``code`` with an argument of struct format ``fmt`` (numpy ``dtype``). A run
    of them (the items of a list of numbers, 1000 per APPENDS) is decoded at once with
    numpy, ~50x faster than one at a time; each value is charged ``size`` bytes."""
    single = struct.Struct(fmt)
    stride = 1 + single.size
    records = np.dtype([("op", "u1"), ("value", dtype)])

    def op(m: _Machine) -> None:
        start, data = m.pos - 1, m.data
        if start + 2 * stride > len(data) or data[start + stride] != code:
            m.push(m.unpack(single), size)
            return
        count = 0
        while chunk := min(4096, (len(data) - start) // stride - count):
            ops = np.frombuffer(data, np.uint8, chunk * stride, start + count * stride)
            other = np.flatnonzero(ops[::stride] != code)
            count += int(other[0]) if other.size else chunk
            if other.size:
                break
        m.charge(count * (_POINTER + size))
        m.stack.extend(np.frombuffer(data, records, count, start)["value"].tolist())
        m.pos = start + count * stride
    return op


def _op_bools(m: _Machine) -> None:
    """NEWTRUE or NEWFALSE, and the run of either that follows (a list of bools)."""
    start, data = m.pos - 1, m.data
    end = start + 1
    while end < len(data):
        chunk = np.frombuffer(data, np.uint8, min(4096, len(data) - end), end)
        other = np.flatnonzero((chunk | 1) != 0x89)
        end += int(other[0]) if other.size else chunk.size
        if other.size:
            break
    m.charge((end - start) * _POINTER)
    m.stack.extend((np.frombuffer(data, np.uint8, end - start, start) == 0x88).tolist())
    m.pos = end


def _refuse(what: str) -> Callable[[_Machine], None]:
    def op(m: _Machine) -> None:
        raise _Refused(f"{what} is not allowed")
    return op


def _op_stack_global(m: _Machine) -> None:
    name = m.pop()
    module = m.pop()
    if type(module) is not str or type(name) is not str:
        raise _Refused("STACK_GLOBAL of non-strings")
    _op_global(m, module, name)


def _op_new_set(m: _Machine, kind: type) -> None:
    if kind is set:
        m.push(set(), _SET)
    else:
        m.push(m.new_set(frozenset, m.pop_mark()))


_OPS: dict[int, Callable[[_Machine], bool | None]] = {ord(code): op for code, op in {
    b"(": _op_mark,
    b".": lambda m: True,
    b"0": _op_pop,
    b"1": lambda m: m.marks and m.pop_mark() and None,
    b"2": lambda m: m.push(m.top()),
    b"F": lambda m: m.push(m.float_text(m.line()), _FLOAT),
    b"I": _op_int,
    b"J": _scalars(ord("J"), "<i", "<i4", _INT),
    b"K": _scalars(ord("K"), "<B", "<u1", 0),  # 0-255: Python's cached small ints
    b"L": _op_long,
    b"M": _scalars(ord("M"), "<H", "<u2", _INT),
    b"N": lambda m: m.push(None),
    b"P": _refuse("a persistent id (PERSID)"),
    b"Q": _refuse("a persistent id (BINPERSID)"),
    b"R": _op_reduce,
    b"S": _op_string,
    b"T": lambda m: m.push(m.string(m.sized(_I4, _BYTES))),
    b"U": lambda m: m.push(m.string(m.sized(None, _BYTES))),
    b"V": lambda m: m.push_text(m.line().decode("raw-unicode-escape")),
    b"X": lambda m: m.push_text(m.sized(_U4, 0).decode("utf-8", "surrogatepass")),
    b"a": _op_append,
    b"b": _op_build,
    b"c": lambda m: _op_global(m, m.line().decode(), m.line().decode()),
    b"d": _op_dict,
    b"}": lambda m: m.push({}, _DICT),
    b"e": _op_appends,
    b"g": lambda m: m.memo_get(m.decimal(m.line())),
    b"h": lambda m: m.memo_get(m.byte()),
    b"j": lambda m: m.memo_get(m.unpack(_U4)),
    b"i": _refuse("building an instance (INST)"),
    b"o": _refuse("building an object (OBJ)"),
    b"l": lambda m: m.push(m.pop_mark(), _LIST),
    b"]": lambda m: m.push([], _LIST),
    b"p": lambda m: m.memo_put(m.decimal(m.line())),
    b"q": lambda m: m.memo_put(m.byte()),
    b"r": lambda m: m.memo_put(m.unpack(_U4)),
    b"s": _op_setitem,
    b"t": lambda m: _op_tuple(m, None),
    b")": lambda m: m.push((), 0),
    b"u": lambda m: m.set_items(m.pop_mark()),
    b"G": _scalars(ord("G"), ">d", ">f8", _FLOAT),
    b"\x80": _op_proto,
    b"\x81": _refuse("building an object (NEWOBJ)"),
    b"\x82": _refuse("an extension code (EXT1)"),
    b"\x83": _refuse("an extension code (EXT2)"),
    b"\x84": _refuse("an extension code (EXT4)"),
    b"\x85": lambda m: _op_tuple(m, 1),
    b"\x86": lambda m: _op_tuple(m, 2),
    b"\x87": lambda m: _op_tuple(m, 3),
    b"\x88": _op_bools,
    b"\x89": _op_bools,
    b"\x8a": lambda m: _op_long_bytes(m, None),
    b"\x8b": lambda m: _op_long_bytes(m, _I4),
    b"B": lambda m: m.push(m.sized(_U4, _BYTES)),
    b"C": lambda m: m.push(m.sized(None, _BYTES)),
    b"\x8c": lambda m: m.push_text(m.sized(None, 0).decode("utf-8", "surrogatepass")),
    b"\x8d": lambda m: m.push_text(m.sized(_U8, 0).decode("utf-8", "surrogatepass")),
    b"\x8e": lambda m: m.push(m.sized(_U8, _BYTES)),
    b"\x8f": lambda m: _op_new_set(m, set),
    b"\x90": _op_additems,
    b"\x91": lambda m: _op_new_set(m, frozenset),
    b"\x92": _refuse("building an object (NEWOBJ_EX)"),
    b"\x93": _op_stack_global,
    b"\x94": lambda m: m.memo_put(len(m.memo)),
    b"\x95": _op_frame,
    b"\x96": lambda m: m.push(bytearray(m.sized(_U8, _BYTEARRAY))),
    b"\x97": _refuse("an out-of-band buffer (NEXT_BUFFER)"),
    b"\x98": _refuse("an out-of-band buffer (READONLY_BUFFER)"),
}.items()}


# --- the result's shape ---

_SCALARS = frozenset({float, int, bool, type(None), str, bytes, complex})


def _expand(obj: object) -> tuple[int, Any]:
    """(the elements ``obj`` counts for itself, an iterator over its children or None).
    A list or tuple of scalars only (a mask as a list) is counted at C speed."""
    kind = type(obj)
    if kind in (list, tuple):
        if _SCALARS.issuperset(map(type, obj)):  # type: ignore[call-overload]
            return 1 + len(obj), None  # type: ignore[arg-type]
        return 1, iter(obj)  # type: ignore[call-overload]
    if kind in (set, frozenset):
        return 1, iter(obj)  # type: ignore[call-overload]
    if kind is dict:
        return 1, itertools.chain.from_iterable(obj.items())  # type: ignore[attr-defined]
    if kind is np.ndarray:
        if obj.dtype.hasobject:  # type: ignore[attr-defined]
            return 1, iter(obj.flat)  # type: ignore[attr-defined]
        return max(1, obj.size), None  # type: ignore[attr-defined]
    return 1, None


def _check_shape(m: _Machine, root: object, max_elements: int) -> None:
    """Refuse ``root`` if, expanded as a tree (a shared object counted each time it is
    reached, as ``np.asarray`` would), it has more than ``max_elements`` elements, nests
    deeper than :data:`MAX_DEPTH` or contains itself. Iterative, and linear in the
    objects: a finished container's count is remembered (and charged to ``m``)."""
    total, children = _expand(root)
    path = [(root, children, [total])] if children is not None else []
    on_path = {id(root)}
    done: dict[int, int] = {}
    while path:
        node, children, count = path[-1]
        for child in children:
            known = done.get(id(child))
            if known is not None:
                count[0] += known
                continue
            own, grandchildren = _expand(child)
            if len(path) >= MAX_DEPTH and type(child) in (list, tuple):  # even if flat
                raise _Refused(f"it nests deeper than {MAX_DEPTH} levels")
            if grandchildren is None:
                count[0] += own
            elif id(child) in on_path:
                raise _Refused("it contains itself (a reference cycle)")
            elif len(path) >= MAX_DEPTH:
                raise _Refused(f"it nests deeper than {MAX_DEPTH} levels")
            else:
                path.append((child, grandchildren, [own]))
                on_path.add(id(child))
                break
            if count[0] > max_elements:
                break
        else:
            path.pop()
            on_path.discard(id(node))
            m.charge(_MEMO_ENTRY)
            done[id(node)] = count[0]
            if path:
                path[-1][2][0] += count[0]
            total = count[0]
        if count[0] > max_elements or (path and path[-1][2][0] > max_elements):
            break
    if total > max_elements or path:
        raise _Refused(
            f"counting shared references as often as they appear, it holds more than "
            f"{max_elements} elements (its size in bytes + {ELEMENT_FLOOR})")


def _read_all(source: BinaryIO) -> bytes:
    """All of ``source``, refused past the cap: by the size of a regular file before
    reading, else as the chunks come (``read(cap + 1)`` would allocate the cap at once)."""
    with contextlib.suppress(AttributeError, OSError, io.UnsupportedOperation):
        info = os.fstat(source.fileno())
        if stat.S_ISREG(info.st_mode) and info.st_size - source.tell() > MAX_FILE_BYTES:
            raise _Refused(f"{info.st_size} bytes, more than the {MAX_FILE_BYTES}-byte cap "
                           "for a pickle")
    chunks, total = [], 0
    while chunk := source.read(min(16 * 2**20, MAX_FILE_BYTES + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > MAX_FILE_BYTES:
            raise _Refused(f"more than the {MAX_FILE_BYTES}-byte cap for a pickle")
    return b"".join(chunks)


def load_pickle(
    source: str | Path | bytes | BinaryIO, *, encoding: str = "ASCII", name: str | None = None
) -> Any:
    """Unpickle ``source`` (a path, the bytes of a pickle, or a binary file) within the
    limits above.

    ``encoding="bytes"`` reads Python 2 pickles such as the CIFAR-10 batches (their
    ``str`` become ``bytes``). ``name`` labels errors (defaults to the path or the file
    object's name).
    """
    if isinstance(source, str | Path):
        label = name or str(source)
    else:
        label = name or str(getattr(source, "name", "<pickle>"))
    try:
        if isinstance(source, str | Path):
            data = read_regular(source, MAX_FILE_BYTES, "a pickle")
        elif isinstance(source, bytes):
            data = source
            if len(data) > MAX_FILE_BYTES:
                raise _Refused(f"more than the {MAX_FILE_BYTES}-byte cap for a pickle")
        else:
            data = _read_all(source)
        machine = _Machine(data, encoding)
        obj = machine.run()
        machine.memo.clear()
        machine.stack.clear()
        _check_shape(machine, obj, len(data) + ELEMENT_FLOOR)
        return obj
    except UnsafePickleError as err:
        raise UnsafePickleError(
            f"{label}: {err}; only numpy arrays, dtypes, scalars and builtin containers are "
            "allowed. If you trust this file, re-save its data as plain numpy arrays or "
            "lists of them") from None
    except _Refused as err:
        raise ValueError(f"{label}: refusing this pickle: {err}. If you trust this file, "
                         "re-save its data as plain numpy arrays") from None
    except _Corrupt as err:
        raise ValueError(f"{label}: not a readable pickle ({err}); re-create it") from None
    except RefusedFile as err:
        raise ValueError(f"{label}: not usable as a pickle: {err}; give a regular file of "
                         f"at most {MAX_FILE_BYTES} bytes") from None
    except OSError as err:
        raise ValueError(f"{label}: cannot read it ({err})") from None
    except Exception as err:  # corrupt data surfaces as many types (EOFError, TypeError, ...)
        raise ValueError(f"{label}: not a readable pickle ({type(err).__name__}: {err})") from None
