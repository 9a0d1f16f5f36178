"""FineGym (Gym99 / Gym288): elements cut out of full competition videos.

Files (annotations folder): finegym_annotation_info_v1.1.json, the element
lists `{variant}_train_element_v1.1.txt` / `{variant}_val_element.txt` and
`{variant}_categories.txt`. Videos: full `<youtube_id>.mp4` (.mkv/.webm)
or already-cut clips `<element_id>.mp4`; the latter win when both exist.
"""

import json
import re

from art_jax.data import fs
from art_jax.data.datasets import common

VARIANTS = {"gym99": ("train", "val"), "gym288": ("train", "val")}
DEFAULT_VARIANT = "gym99"
FLIP_SAFE = True
ANNOTATION_FILE = "finegym_annotation_info_v1.1.json"

_CATEGORY = re.compile(
  r"Clabel:\s*(\d+);\s*set:\s*(\d+);\s*Glabel:\s*(\d+);\s*"
  r"\((\w+)\)\s*(.*)$"
)


def element_list_name(variant: str, split: str) -> str:
  if split == "train":
    return f"{variant}_train_element_v1.1.txt"
  return f"{variant}_val_element.txt"


def parse_element_id(element_id: str) -> tuple[str, str, str]:
  """'<yid>_E_<s>_<e>_A_<a>_<b>' -> (yid, 'E_<s>_<e>', 'A_<a>_<b>')."""
  left, sep_a, a = element_id.rpartition("_A_")
  yid, sep_e, e = left.rpartition("_E_")
  if not (sep_a and sep_e and yid and e and a):
    raise ValueError(f"not an element id: {element_id!r}")
  return yid, "E_" + e, "A_" + a


def read_categories(path: str) -> tuple[list[str], list[str]]:
  """Category file -> (class names, event codes) in Clabel order."""
  rows = {}
  with fs.open(path) as f:
    for lineno, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      m = _CATEGORY.match(line)
      if not m:
        raise ValueError(f"{path}:{lineno}: cannot parse {line!r}")
      rows[int(m.group(1))] = (m.group(5).strip(), m.group(4))
  if sorted(rows) != list(range(len(rows))):
    raise ValueError(f"{path}: Clabel values are not 0..{len(rows) - 1}")
  return [rows[i][0] for i in range(len(rows))], [
    rows[i][1] for i in range(len(rows))
  ]


def read(
  annotations: str, videos: str, split: str, variant: str = DEFAULT_VARIANT
) -> common.Annotations:
  """Reads one split of Gym99 or Gym288."""
  if variant not in VARIANTS:
    raise ValueError(
      f"finegym: unknown variant {variant!r}; expected one "
      f"of {sorted(VARIANTS)}"
    )
  common.check_split(split, VARIANTS[variant], "finegym")
  with fs.open(common.require_file(annotations, ANNOTATION_FILE)) as f:
    info = json.load(f)
  names, events = read_categories(
    common.require_file(annotations, f"{variant}_categories.txt")
  )
  list_path = common.require_file(
    annotations, element_list_name(variant, split)
  )
  found = common.find_videos(videos)
  clips, failures = [], []
  with fs.open(list_path) as f:
    for lineno, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      parts = line.split()
      where = f"{list_path}:{lineno}"
      try:
        element_id, label = parts[0], int(parts[1])
        if len(parts) != 2 or not 0 <= label < len(names):
          raise ValueError("expected '<element_id> <label>'")
        yid, ekey, akey = parse_element_id(element_id)
      except (ValueError, IndexError) as e:
        failures.append(
          {
            "id": parts[0] if parts else where,
            "reason": f"bad annotation line {where}: {e}",
          }
        )
        continue
      meta = {
        "youtube_id": yid,
        "event_id": f"{yid}_{ekey}",
        "element_id": element_id,
      }
      try:
        event = info[yid][ekey]
        segment = event["segments"][akey]
        ev_start = float(event["timestamps"][0][0])
        stamps = segment["timestamps"]
        start = ev_start + float(stamps[0][0])
        end = ev_start + float(stamps[-1][1])
        meta["event"] = int(event["event"])
        meta["stages"] = int(segment.get("stages", len(stamps)))
      except (KeyError, IndexError, TypeError, ValueError) as e:
        failures.append(
          {
            "id": element_id,
            "reason": f"element not in {ANNOTATION_FILE}: {e!r}",
          }
        )
        continue
      if element_id in found:  # an already-cut clip
        clips.append(
          common.ClipTask(element_id, label, found[element_id], meta=meta)
        )
      elif yid in found:
        clips.append(
          common.ClipTask(
            element_id,
            label,
            found[yid],
            start_sec=start,
            end_sec=end,
            meta=meta,
          )
        )
      else:
        clips.append(common.ClipTask(element_id, label, None, meta=meta))
  return common.Annotations(
    clips, names, failures, extra={"class_events": events}
  )
