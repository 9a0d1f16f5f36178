"""NTU RGB+D 60 / 120: `nturgb+d_rgb/SsssCcccPpppRrrrAaaa_rgb.avi`.

No annotation files: the label is the action number A minus 1, and the
protocols split by performer (xsub), camera (xview, NTU60) or setup (xset,
NTU120) with the official lists below. Class names ship in the package
(`art_jax/data/classnames/ntu{60,120}.txt`).
"""

import os
import re

from art_jax.data.datasets import common

VARIANTS = {
  "xsub": ("train", "val"),
  "xview": ("train", "val"),
  "xset": ("train", "val"),
}
DEFAULT_VARIANT = "xsub"
FLIP_SAFE = True
NUM_ACTIONS = {"ntu60": 60, "ntu120": 120}
NUM_SETUPS = {"ntu60": 17, "ntu120": 32}
PROTOCOLS = {"ntu60": ("xsub", "xview"), "ntu120": ("xsub", "xset")}
# Official training performers (NTU RGB+D 60 paper; 120 extends the list).
XSUB_TRAIN_60 = (
  1,
  2,
  4,
  5,
  8,
  9,
  13,
  14,
  15,
  16,
  17,
  18,
  19,
  25,
  27,
  28,
  31,
  34,
  35,
  38,
)
XSUB_TRAIN_120 = XSUB_TRAIN_60 + (
  45,
  46,
  47,
  49,
  50,
  52,
  53,
  54,
  55,
  56,
  57,
  58,
  59,
  70,
  74,
  78,
  80,
  81,
  82,
  83,
  84,
  85,
  86,
  89,
  91,
  92,
  93,
  94,
  95,
  97,
  98,
  100,
  103,
)
XVIEW_TRAIN_CAMERAS = (2, 3)

_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})(?:_rgb)?")


def class_names(dataset: str) -> list[str]:
  path = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "classnames", f"{dataset}.txt"
  )
  with open(path) as f:
    return [line.rstrip("\n") for line in f if line.strip()]


def is_train(
  dataset: str, protocol: str, setup: int, camera: int, performer: int
) -> bool:
  if protocol == "xsub":
    table = XSUB_TRAIN_60 if dataset == "ntu60" else XSUB_TRAIN_120
    return performer in table
  if protocol == "xview":
    return camera in XVIEW_TRAIN_CAMERAS
  return setup % 2 == 0  # xset: even setup ids train.


def read(
  annotations: str,
  videos: str,
  split: str,
  variant: str,
  dataset: str = "ntu60",
) -> common.Annotations:
  """Lists the split's videos. `annotations` is unused (may be None)."""
  del annotations
  if variant not in PROTOCOLS[dataset]:
    raise ValueError(
      f"{dataset}: unknown protocol {variant!r}; expected "
      f"one of {PROTOCOLS[dataset]}"
    )
  common.check_split(split, VARIANTS[variant], dataset)
  names = class_names(dataset)
  found = common.find_videos(videos, (".avi", ".mp4"))
  clips, ignored = [], 0
  for stem in sorted(found):
    m = _NAME.fullmatch(stem)
    if not m:
      ignored += 1
      continue
    s, c, p, r, a = (int(g) for g in m.groups())
    if a > NUM_ACTIONS[dataset] or s > NUM_SETUPS[dataset]:
      ignored += 1  # NTU120-only video in an NTU60 job.
      continue
    if is_train(dataset, variant, s, c, p) != (split == "train"):
      continue
    clips.append(
      common.ClipTask(
        stem.removesuffix("_rgb"),
        a - 1,
        found[stem],
        meta={
          "setup": s,
          "camera": c,
          "performer": p,
          "replication": r,
          "action": a,
        },
      )
    )
  return common.Annotations(clips, names, extra={"ignored_files": ignored})
