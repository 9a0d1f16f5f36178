"""Something-Something v2: `<id>.webm` (VP9, 12 fps).

Files: something-something-v2-{train,validation}.json (lists of {id,
label, template, placeholders}) and something-something-v2-labels.json
({template without brackets: "index"}). Horizontal flip is not label
preserving here ("left" / "right" classes): FLIP_SAFE is False.
"""

import json

from art_jax.data import fs
from art_jax.data.datasets import common

VARIANTS = {"v2": ("train", "val")}
DEFAULT_VARIANT = "v2"
FLIP_SAFE = False
SPLIT_FILES = {
  "train": "something-something-v2-train.json",
  "val": "something-something-v2-validation.json",
}
LABELS_FILE = "something-something-v2-labels.json"


def strip_template(template: str) -> str:
  return template.replace("[", "").replace("]", "")


def read(
  annotations: str, videos: str, split: str, variant: str = DEFAULT_VARIANT
) -> common.Annotations:
  common.check_split(split, VARIANTS[variant], "ssv2")
  with fs.open(common.require_file(annotations, LABELS_FILE)) as f:
    labels = {k: int(v) for k, v in json.load(f).items()}
  if sorted(labels.values()) != list(range(len(labels))):
    raise ValueError(f"{LABELS_FILE}: label values are not 0..N-1")
  names = [""] * len(labels)
  for name, i in labels.items():
    names[i] = name
  path = common.require_file(annotations, SPLIT_FILES[split])
  with fs.open(path) as f:
    items = json.load(f)
  found = common.find_videos(videos, (".webm", ".mp4"))
  clips, failures = [], []
  for k, item in enumerate(items):
    try:
      vid = str(item["id"])
      template = item["template"]
      label = labels[strip_template(template)]
    except (KeyError, TypeError, AttributeError) as e:
      vid = item.get("id") if isinstance(item, dict) else None
      failures.append(
        {
          "id": str(vid or f"{path}[{k}]"),
          "reason": f"bad annotation {path}[{k}]: {e!r}",
        }
      )
      continue
    clips.append(
      common.ClipTask(
        vid,
        label,
        found.get(vid),
        meta={
          "template": template,
          "placeholders": list(item.get("placeholders", [])),
        },
      )
    )
  return common.Annotations(clips, names, failures)
