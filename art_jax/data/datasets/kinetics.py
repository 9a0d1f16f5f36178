"""Kinetics-400 / 600: clips `<youtube_id>_<start:06d>_<end:06d>.mp4`.

Files: the official `train.csv`, `validate.csv` (and `test.csv` where it
has labels), header `label,youtube_id,time_start,time_end,split`. Videos
flat or in `<split>/<label>/` folders. Class names are the sorted labels of
train.csv (the usual label order).
"""

import csv

from art_jax.data import fs
from art_jax.data.datasets import common

# Default splits; `--splits=test` also reads test.csv where it has labels.
VARIANTS = {"k400": ("train", "val"), "k600": ("train", "val")}
DEFAULT_VARIANT = "k400"
FLIP_SAFE = True
CSV_FILES = {"train": "train.csv", "val": "validate.csv", "test": "test.csv"}
NUM_CLASSES = {"k400": 400, "k600": 600}


def clip_id(youtube_id: str, start: int, end: int) -> str:
  return f"{youtube_id}_{start:06d}_{end:06d}"


def _rows(path: str):
  with fs.open(path, newline="") as f:
    reader = csv.DictReader(f)
    need = {"youtube_id", "time_start", "time_end"}
    if not need <= set(reader.fieldnames or ()):
      raise ValueError(f"{path}: header {reader.fieldnames} lacks {need}")
    yield from enumerate(reader, 2)


def read(
  annotations: str, videos: str, split: str, variant: str = DEFAULT_VARIANT
) -> common.Annotations:
  """Reads one split; labels index the sorted train.csv labels."""
  common.check_split(split, CSV_FILES, "kinetics")
  train_csv = common.require_file(annotations, CSV_FILES["train"])
  names = sorted(
    {row["label"] for _, row in _rows(train_csv) if row.get("label")}
  )
  index = {n: i for i, n in enumerate(names)}
  path = common.require_file(annotations, CSV_FILES[split])
  found = common.find_videos(videos)
  clips, failures = [], []
  for lineno, row in _rows(path):
    where = f"{path}:{lineno}"
    try:
      cid = clip_id(
        row["youtube_id"],
        int(float(row["time_start"])),
        int(float(row["time_end"])),
      )
      label = index[row["label"]]
    except (KeyError, TypeError, ValueError) as e:
      failures.append(
        {
          "id": row.get("youtube_id") or where,
          "reason": f"bad annotation line {where}: {e!r}",
        }
      )
      continue
    clips.append(
      common.ClipTask(
        cid, label, found.get(cid), meta={"youtube_id": row["youtube_id"]}
      )
    )
  # A subset has fewer classes than NUM_CLASSES[variant]; the trainer's
  # metadata check against the config reports that.
  return common.Annotations(clips, names, failures)
