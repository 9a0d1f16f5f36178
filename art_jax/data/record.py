"""The on-disk record format: one msgpack map per clip in ArrayRecord shards.

A split `S` of a prepared dataset is the files

  S.array_record-00000-of-00008 ... S.array_record-00007-of-00008
  S.json             metadata (clip count, class names, parameters, version)
  S.failures.jsonl   one line per skipped clip: {"id", "reason"}

Each record is a msgpack map (see `docs/data.md` for the full table):

  version      int, FORMAT_VERSION
  id           str, the dataset's clip id
  label        int, class index into `class_names` of S.json
  frames       list of JPEG bytes, short side resized, in time order
  frame_index  list of int, the source-frame index of each stored frame
  num_source_frames  int, frames of the clip before subsampling
  fps          float, source frame rate
  height, width  int, size of the stored frames
  meta         map of dataset-specific fields (event/element ids, ...)
"""

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import msgpack
from array_record.python import array_record_module

from art_jax.data import fs

FORMAT_VERSION = 1
# JPEG frames do not compress further; ArrayRecord's default zstd only
# costs CPU when reading (4.5x slower reads of a 64-frame clip, measured).
WRITER_OPTIONS = "group_size:1,uncompressed"
SHARD_INFIX = ".array_record-"


class MetadataError(ValueError):
  """A split's metadata is missing, of another version, or does not fit."""


def shard_name(split: str, index: int, num_shards: int) -> str:
  """`{split}.array_record-{i:05d}-of-{n:05d}`."""
  return f"{split}{SHARD_INFIX}{index:05d}-of-{num_shards:05d}"


def metadata_path(data_dir: str, split: str) -> str:
  return fs.join(data_dir, f"{split}.json")


def failures_path(data_dir: str, split: str) -> str:
  return fs.join(data_dir, f"{split}.failures.jsonl")


@dataclasses.dataclass
class Clip:
  """A decoded record (frames still JPEG-encoded)."""

  id: str
  label: int
  frames: list[bytes]
  frame_index: list[int]
  num_source_frames: int
  fps: float
  height: int
  width: int
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)


def encode(clip: Clip) -> bytes:
  """Serialises a clip to the record bytes stored in a shard."""
  d = dataclasses.asdict(clip)
  d["version"] = FORMAT_VERSION
  return msgpack.packb(d, use_bin_type=True)


def decode(data: bytes) -> Clip:
  """Parses record bytes; raises ValueError on another format version."""
  d = msgpack.unpackb(data, raw=False)
  version = d.pop("version", None)
  if version != FORMAT_VERSION:
    raise ValueError(
      f"record {d.get('id')!r} has format version {version}, this code "
      f"reads version {FORMAT_VERSION}; re-run art_jax.data.prepare"
    )
  return Clip(**d)


def write_metadata(data_dir: str, split: str, metadata: dict[str, Any]):
  """Writes `{split}.json` atomically, adding the format version."""
  metadata = {"format_version": FORMAT_VERSION, **metadata}
  fs.write_text(metadata_path(data_dir, split), json.dumps(metadata, indent=1))


def read_metadata(
  data_dir: str, split: str, num_classes: int | None = None
) -> dict[str, Any]:
  """Reads and validates `{split}.json`.

  Args:
    data_dir: folder written by `art_jax.data.prepare`, local or remote
      (gs://...; see `art_jax/data/fs.py`).
    split: split name, e.g. 'train'.
    num_classes: if given, the number of classes the config expects.

  Returns:
    The metadata dict, with 'shard_paths' (`data_dir` joined with each
    shard name) added.

  Raises:
    MetadataError: naming the file, when it is missing, unreadable, of
      another format version, has the wrong number of classes or when a
      shard listed in it is missing.
  """
  path = metadata_path(data_dir, split)
  if not fs.exists(path):
    raise MetadataError(
      f"{path}: no such file; prepare the split with "
      "`python -m art_jax.data.prepare` (see docs/data.md)"
    )
  try:
    meta = json.loads(fs.read_text(path))
  except (OSError, json.JSONDecodeError) as e:
    raise MetadataError(f"{path}: cannot read metadata: {e}") from e
  version = meta.get("format_version")
  if version != FORMAT_VERSION:
    raise MetadataError(
      f"{path}: format_version {version}, but this code reads version "
      f"{FORMAT_VERSION}; re-run art_jax.data.prepare"
    )
  for key in ("num_clips", "class_names", "shards"):
    if key not in meta:
      raise MetadataError(f"{path}: missing field {key!r}")
  n = len(meta["class_names"])
  if num_classes is not None and n != num_classes:
    raise MetadataError(
      f"{path}: {n} classes, but the config expects {num_classes}"
    )
  paths = [fs.join(data_dir, s) for s in meta["shards"]]
  present = set(fs.listdir(data_dir))  # one listing, also for gs://
  missing = [p for p, s in zip(paths, meta["shards"]) if s not in present]
  if missing:
    raise MetadataError(f"{path}: shard {missing[0]} is missing")
  if meta["num_clips"] <= 0:
    raise MetadataError(f"{path}: the split has no clips")
  meta["shard_paths"] = paths
  return meta


def split_shards(data_dir: str, split: str) -> list[str]:
  """Shard file names of a split present in `data_dir`, sorted."""
  prefix = split + SHARD_INFIX
  return sorted(
    f
    for f in fs.listdir(data_dir)
    if f.startswith(prefix) and "-of-" in f and not f.endswith(".tmp")
  )


def num_records(paths: Sequence[str]) -> list[int]:
  """Number of records in each ArrayRecord file (local paths)."""
  counts = []
  for p in paths:
    r = array_record_module.ArrayRecordReader(p)
    counts.append(r.num_records())
    r.close()
  return counts
