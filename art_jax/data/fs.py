"""File access for local and remote paths (gs://, s3://, memory://, ...).

Paths with a protocol go through fsspec (gs:// needs gcsfs, in the `beam`
extra); local paths go straight to `os` and `open`, so local behaviour and
outputs are exactly those of the standard library. Libraries that need a
real file (PyAV, array_record's writer) get one from `local_copy` and
`local_output`.
"""

import builtins
import contextlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import fsspec

_LOCAL_PROTOCOLS = ("file", "local")


def is_remote(path: str) -> bool:
  """True for paths that fsspec serves from elsewhere than the local disk."""
  return fsspec.utils.get_protocol(path) not in _LOCAL_PROTOCOLS


def _local(path: str) -> str:
  """A local path without a `file://` prefix, otherwise unchanged."""
  for prefix in ("file://", "local://"):
    if path.startswith(prefix):
      return path[len(prefix) :]
  return path


def _remote(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
  """(file system, path without protocol) of a remote path."""
  return fsspec.core.url_to_fs(path)


def join(path: str, *parts: str) -> str:
  """`os.path.join` for local paths, '/'-joined for remote ones."""
  if not is_remote(path):
    return os.path.join(path, *parts)
  out = path.rstrip("/")
  for p in parts:
    out = f"{out}/{p.strip('/')}" if p else out
  return out


def basename(path: str) -> str:
  """Last component of a local or remote path."""
  if not is_remote(path):
    return os.path.basename(path)
  return posixpath.basename(path.rstrip("/"))


def exists(path: str) -> bool:
  if not is_remote(path):
    return os.path.exists(_local(path))
  fs, p = _remote(path)
  return fs.exists(p)


def isdir(path: str) -> bool:
  """A folder (remote: any object under the prefix makes one)."""
  if not is_remote(path):
    return os.path.isdir(_local(path))
  fs, p = _remote(path)
  return fs.isdir(p)


def makedirs(path: str):
  """Creates a local folder and its parents; remote stores need none."""
  if not is_remote(path):
    os.makedirs(_local(path), exist_ok=True)


def listdir(path: str) -> list[str]:
  """Names (not paths) of the entries of a folder, like `os.listdir`."""
  if not is_remote(path):
    return os.listdir(_local(path))
  fs, p = _remote(path)
  return [posixpath.basename(e.rstrip("/")) for e in fs.ls(p, detail=False)]


def walk(root: str) -> Iterator[tuple[str, list[str], list[str]]]:
  """`os.walk(root, followlinks=True)` for local and remote folders.

  Top-down; sorting or pruning the yielded folder names in place steers
  the walk as in `os.walk`. Yielded folder paths start with `root` as
  given (protocol included), so `join(dirpath, name)` is a usable path.
  """
  if not is_remote(root):
    yield from os.walk(_local(root), followlinks=True)
    return
  fs, top = _remote(root)
  top = top.rstrip("/")
  for dirpath, dirnames, filenames in fs.walk(top):
    rel = dirpath.rstrip("/")[len(top) :].strip("/")
    yield (join(root, rel) if rel else root), dirnames, filenames


def open(path: str, mode: str = "r", **kwargs: Any) -> IO:
  """Opens a local or remote file; text modes take `newline`, `encoding`."""
  if not is_remote(path):
    return builtins.open(_local(path), mode, **kwargs)
  fs, p = _remote(path)
  return fs.open(p, mode, **kwargs)


def read_text(path: str) -> str:
  with open(path) as f:
    return f.read()


def write_text(path: str, text: str):
  """Writes a whole file so that readers never see half of it
  (`local_output`: a temporary file renamed or uploaded when complete)."""
  with local_output(path) as local, builtins.open(local, "w") as f:
    f.write(text)


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
  """Yields a local file with the contents of `path`.

  The path itself when local; otherwise a download into a temporary
  folder (same file name), deleted on exit. A missing remote file raises
  FileNotFoundError, like a missing local one when it is opened.
  """
  if not is_remote(path):
    yield _local(path)
    return
  fs, p = _remote(path)
  with _temp_path_like(p, "art_jax_copy_") as local:
    fs.get_file(p, local)
    yield local


@contextlib.contextmanager
def local_output(path: str) -> Iterator[str]:
  """Yields a local path to write; it becomes `path` when the body returns.

  Local: `path.tmp`, renamed to `path`. Remote: a temporary file,
  uploaded to `path`. If the body raises, the file is deleted and nothing
  appears at `path`, so a crash never leaves half a file there.
  """
  if not is_remote(path):
    path = _local(path)
    tmp = path + ".tmp"
    try:
      yield tmp
    except BaseException:
      with contextlib.suppress(OSError):
        os.remove(tmp)
      raise
    os.replace(tmp, path)
    return
  fs, p = _remote(path)
  with _temp_path_like(p, "art_jax_out_") as local:
    yield local
    fs.put_file(local, p)


@contextlib.contextmanager
def _temp_path_like(path: str, prefix: str) -> Iterator[str]:
  """A path with the file name of `path` in a new temporary folder, which
  is removed (with whatever was written there) on exit."""
  tmp = tempfile.mkdtemp(prefix=prefix)
  try:
    yield os.path.join(tmp, posixpath.basename(path.rstrip("/")) or "file")
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
