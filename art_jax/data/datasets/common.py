"""Types and helpers shared by the annotation readers."""

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

from art_jax.data import fs

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


@dataclasses.dataclass
class ClipTask:
  """One clip to cut out of a video file; the unit of preprocessing work.

  Exactly one of (start_sec, end_sec), (start_frame, end_frame) or neither
  (whole video) is set. `path` None means the video was not found.
  """

  id: str
  label: int
  path: str | None
  start_sec: float | None = None
  end_sec: float | None = None
  start_frame: int | None = None
  end_frame: int | None = None
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Annotations:
  """A split's clips, class names (label order) and annotation failures."""

  clips: list[ClipTask]
  class_names: list[str]
  failures: list[dict[str, str]] = dataclasses.field(default_factory=list)
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def find_videos(root: str, exts: Iterable[str] = VIDEO_EXTS) -> dict[str, str]:
  """Maps file stem -> path for every video under `root`, recursively.

  Accepts flat folders and per-class or per-split subfolders alike, local
  or remote (gs://...). If a stem occurs twice the first path in sorted
  order wins.
  """
  exts = tuple(e.lower() for e in exts)
  found = {}
  for dirpath, dirnames, filenames in fs.walk(root):
    dirnames.sort()
    for f in sorted(filenames):
      stem, ext = os.path.splitext(f)
      if ext.lower() in exts:
        found.setdefault(stem, fs.join(dirpath, f))
  return found


def require_file(folder: str, name: str) -> str:
  """Path of an annotation file; FileNotFoundError naming it if absent."""
  path = fs.join(folder, name)
  if not fs.exists(path):
    raise FileNotFoundError(
      f"annotation file {path} not found (see docs/data.md for what "
      "to download)"
    )
  return path


def check_split(split: str, splits: Iterable[str], dataset: str):
  if split not in tuple(splits):
    raise ValueError(
      f"{dataset}: unknown split {split!r}; expected one of {sorted(splits)}"
    )


def missing(clip_id: str, where: str) -> dict[str, str]:
  return {"id": clip_id, "reason": f"missing video: {where}"}
