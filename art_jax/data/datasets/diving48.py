"""Diving48 (V2 labels): trimmed dive videos `rgb/<vid_name>.mp4`.

Files: Diving48_V2_train.json, Diving48_V2_test.json (lists of
{vid_name, label, start_frame, end_frame}) and Diving48_vocab.json (48
lists of [take-off, somersault, twist, flight position]).
"""

import json
import re

from art_jax.data import fs
from art_jax.data.datasets import common

VARIANTS = {"v2": ("train", "test")}
DEFAULT_VARIANT = "v2"
FLIP_SAFE = True
SPLIT_FILES = {
  "train": "Diving48_V2_train.json",
  "test": "Diving48_V2_test.json",
}
VOCAB_FILE = "Diving48_vocab.json"


def _count(token: str, noun: str) -> str:
  """'15som' -> '1.5 somersaults', '05Twis' -> '0.5 twists', 'NoTwis'."""
  m = re.fullmatch(r"(\d)(\d?)[A-Za-z]*", token)
  if m:
    whole, half = int(m.group(1)), int(m.group(2) or 0)
    n = f"{whole}.{half}" if half else f"{whole}"
    return f"{n} {noun}" + ("" if n == "1" else "s")
  if token.lower().startswith("no"):
    return f"no {noun}"
  return token


def class_name(words: list[str]) -> str:
  """['Back', '15som', '05Twis', 'FREE'] ->
  'back take-off, 1.5 somersaults, 0.5 twists, free position'."""
  if len(words) != 4:
    return " ".join(words)
  take_off, som, twist, pos = words
  return (
    f"{take_off.lower()} take-off, {_count(som, 'somersault')}, "
    f"{_count(twist, 'twist')}, {pos.lower()} position"
  )


def read(
  annotations: str, videos: str, split: str, variant: str = DEFAULT_VARIANT
) -> common.Annotations:
  """Reads the train or test split."""
  common.check_split(split, VARIANTS[variant], "diving48")
  with fs.open(common.require_file(annotations, VOCAB_FILE)) as f:
    names = [class_name(list(map(str, w))) for w in json.load(f)]
  path = common.require_file(annotations, SPLIT_FILES[split])
  with fs.open(path) as f:
    items = json.load(f)
  found = common.find_videos(videos)
  clips, failures = [], []
  for k, item in enumerate(items):
    try:
      vid, label = str(item["vid_name"]), int(item["label"])
      start, end = int(item["start_frame"]), int(item["end_frame"])
      if not 0 <= label < len(names):
        raise ValueError(f"label {label} outside 0..{len(names) - 1}")
    except (KeyError, TypeError, ValueError) as e:
      failures.append(
        {
          "id": str(item.get("vid_name", f"{path}[{k}]"))
          if isinstance(item, dict)
          else f"{path}[{k}]",
          "reason": f"bad annotation {path}[{k}]: {e!r}",
        }
      )
      continue
    clips.append(
      common.ClipTask(
        vid, label, found.get(vid), start_frame=start, end_frame=end
      )
    )
  return common.Annotations(clips, names, failures)
