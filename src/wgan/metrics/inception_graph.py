"""The 2015-12-05 TensorFlow Inception graph behind published FID and IS: files and download.

Two files carry it, both frozen GraphDefs of one network (pool_3: 2048-d, 1008 logits):

* TF-GAN's ``frozen_inception_v1_2015_12_05.tar.gz`` holding
  ``inceptionv1_for_inception_score.pb`` (read by TF-GAN's ``run_inception``: input
  ``Mul:0``, outputs ``pool_3:0`` and ``logits:0``);
* TTUR's ``inception-2015-12-05.tgz`` holding ``classify_image_graph_def.pb`` (read by
  TTUR's ``fid.py`` and improved-gan's ``model.py``: ``pool_3:0``, and logits as
  ``squeeze(pool_3) @ W`` with W the weights of ``softmax/logits/MatMul``).

A graph is given as the ``.pb`` or as either tarball. Every file is untrusted: its size
is checked before anything is read, a tarball is never extracted (the member is read
into memory, and a member path that would escape the archive is refused), and a GraphDef
without the expected tensors is refused. Each refusal is one ``ValueError`` line naming
the file. A download streams into a hidden temporary file that is renamed into the cache
only when its sha256 matches the pinned one.
"""

from __future__ import annotations

import hashlib
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from wgan.files import atomic_path, sha256_file

__all__ = ["DOWNLOAD_URL", "GRAPH_MEMBERS", "InceptionGraph", "download_graph",
           "read_inception_graph"]

DOWNLOAD_URL = "http://download.tensorflow.org/models/frozen_inception_v1_2015_12_05.tar.gz"
# Member name in its tarball -> how logits are read from it.
GRAPH_MEMBERS = {"inceptionv1_for_inception_score.pb": "tfgan",
                 "classify_image_graph_def.pb": "ttur"}
# The real .pb files are about 95 MB, their tarballs about 90 MB.
MAX_GRAPH_BYTES = 256 << 20
MAX_TARBALL_BYTES = 512 << 20
_MAX_MEMBERS = 64  # the tarballs hold at most 6 files
_REQUIRED = {"tfgan": ("Mul", "pool_3", "logits"),
             "ttur": ("Mul", "pool_3", "softmax/logits/MatMul")}


@dataclass(frozen=True)
class InceptionGraph:
    """A parsed graph: its GraphDef, layout (``tfgan`` or ``ttur``) and where it came from."""

    graph_def: object  # tf.compat.v1.GraphDef (TF is imported only when a graph is read)
    layout: str
    sha256: str  # of the file given: the .pb or the tarball
    member: str | None  # the .pb inside a tarball, else None


def _is_tarball(path: Path) -> bool:
    return path.name.endswith((".tgz", ".tar.gz", ".tar"))


def _read_member(path: Path) -> tuple[bytes, str]:
    """The graph member of a tarball, read without extracting anything."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for count, member in enumerate(tar):
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise ValueError(f"{path}: member {member.name[:80]!r} escapes the "
                                     "archive; not an Inception tarball")
                if count >= _MAX_MEMBERS:
                    break
                if name.name in GRAPH_MEMBERS and member.isreg():
                    if member.size > MAX_GRAPH_BYTES:
                        raise ValueError(f"{path}: {member.name} is {member.size} bytes, over "
                                         f"the {MAX_GRAPH_BYTES} of an Inception graph")
                    return tar.extractfile(member).read(), name.name
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable tarball ({type(err).__name__}: {err})") from err
    raise ValueError(f"{path}: holds none of {', '.join(GRAPH_MEMBERS)}; give TF-GAN's or "
                     "TTUR's Inception tarball, or the .pb")


def _read_pb(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_GRAPH_BYTES:
        raise ValueError(f"{path}: {size} bytes, over the {MAX_GRAPH_BYTES} of an Inception "
                         "graph; not the Inception .pb")
    return path.read_bytes()


def _layout(names: set[str], path: Path) -> str:
    for layout, required in _REQUIRED.items():
        if all(n in names for n in required):
            return layout
    raise ValueError(f"{path}: a GraphDef without the Inception tensors (Mul, pool_3 and "
                     "logits or softmax/logits/MatMul); give the 2015-12-05 Inception graph")


def read_inception_graph(path: str | Path, sha256: str | None = None) -> InceptionGraph:
    """Parse the Inception graph from a ``.pb`` or either tarball; check ``sha256`` if given.

    Raises:
      ValueError: one line naming ``path``: missing, too large, checksum mismatch,
        unsafe or foreign tarball, or not the Inception GraphDef.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.framework import graph_pb2

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: Inception graph not found; set evaluate.inception.graph "
                         "to the .pb or its tarball (docs/evaluation.md)")
    limit = MAX_TARBALL_BYTES if _is_tarball(path) else MAX_GRAPH_BYTES
    if path.stat().st_size > limit:
        raise ValueError(f"{path}: {path.stat().st_size} bytes, over the {limit} of an "
                         "Inception graph file")
    digest = sha256_file(path)
    if sha256 is not None and digest != sha256.lower():
        raise ValueError(f"{path}: sha256 {digest} is not the pinned {sha256} "
                         "(evaluate.inception.sha256); wrong or corrupted file")
    data, member = _read_member(path) if _is_tarball(path) else (_read_pb(path), None)
    graph_def = graph_pb2.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except (DecodeError, RuntimeError) as err:
        raise ValueError(f"{path}: not a GraphDef ({err}); give the Inception .pb") from err
    layout = _layout({node.name for node in graph_def.node}, path)
    return InceptionGraph(graph_def, layout, digest, member)


def download_graph(sha256: str, cache_dir: str | Path, url: str = DOWNLOAD_URL,
                   timeout: float = 10.0) -> Path:
    """The tarball at ``url`` in ``cache_dir``, downloaded unless a copy with ``sha256`` is there.

    The body is streamed (at most MAX_TARBALL_BYTES) into a temporary sibling while being
    hashed, and renamed into place only if its sha256 is ``sha256``: a wrong or truncated
    file leaves nothing behind.

    Raises:
      ValueError: one line on a network error or a checksum mismatch.
    """
    target = Path(cache_dir) / url.rsplit("/", 1)[-1]
    if target.is_file() and sha256_file(target) == sha256.lower():
        return target
    digest = hashlib.sha256()
    try:
        with atomic_path(target) as tmp, open(tmp, "wb") as out, \
                urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                if out.tell() + len(chunk) > MAX_TARBALL_BYTES:
                    raise ValueError(f"download of {url}: over {MAX_TARBALL_BYTES} bytes; "
                                     "not the Inception tarball")
                out.write(chunk)
            if digest.hexdigest() != sha256.lower():
                raise ValueError(f"download of {url}: sha256 {digest.hexdigest()} is not the "
                                 f"pinned {sha256} (evaluate.inception.sha256); nothing kept")
    except OSError as err:
        raise ValueError(f"download of {url} failed: {err!r}") from err
    return target
