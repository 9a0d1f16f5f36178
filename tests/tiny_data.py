"""Tiny learnable video shards and text banks for trainer tests.

Each class is a colour (plus a moving bar whose speed depends on the class),
so a few steps of training move the loss; frames are real JPEGs in the
project's record format, read by the real grain pipeline.
"""

import io
import os

import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter
from PIL import Image

from art_jax import text_bank
from art_jax.data import record


def _frame(label: int, t: int, size: int, rng: np.random.Generator):
  hue = np.array(
    [(37 * label) % 255, (91 * label) % 255, (53 * label + 80) % 255],
    np.float32,
  )
  img = np.broadcast_to(hue, (size, size + 8, 3)).copy()
  x = (t * (1 + label % 3) * 3) % (size + 8)
  img[:, x : x + 4] = 255 - hue
  img += rng.normal(0, 8, img.shape)
  img = np.clip(img, 0, 255).astype(np.uint8)
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format="JPEG", quality=90)
  return buf.getvalue()


def write_split(
  data_dir: str,
  split: str,
  num_clips: int,
  num_classes: int,
  num_frames: int = 12,
  size: int = 40,
  num_shards: int = 2,
  seed: int = 0,
) -> None:
  """`{split}.array_record-*` shards and `{split}.json` metadata."""
  os.makedirs(data_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  shards = []
  bounds = np.linspace(0, num_clips, num_shards + 1).astype(int)
  for s in range(num_shards):
    name = record.shard_name(split, s, num_shards)
    writer = ArrayRecordWriter(os.path.join(data_dir, name), "group_size:1")
    for i in range(bounds[s], bounds[s + 1]):
      label = i % num_classes
      clip = record.Clip(
        id=f"{split}_{i:04d}",
        label=label,
        frames=[_frame(label, t, size, rng) for t in range(num_frames)],
        frame_index=list(range(num_frames)),
        num_source_frames=num_frames,
        fps=25.0,
        height=size,
        width=size + 8,
      )
      writer.write(record.encode(clip))
    writer.close()
    shards.append(name)
  record.write_metadata(
    data_dir,
    split,
    {
      "dataset": "tiny",
      "split": split,
      "num_clips": num_clips,
      "num_classes": num_classes,
      "class_names": [f"class {k}" for k in range(num_classes)],
      "shards": shards,
    },
  )


def write_bank(
  bank_dir: str,
  num_classes: int,
  num_templates: int = 3,
  dim: int = 16,
  seed: int = 0,
) -> np.ndarray:
  """A random unit-norm (K, M, D) text bank with its sidecar."""
  bank = np.random.default_rng(seed).normal(
    size=(num_classes, num_templates, dim)
  )
  bank /= np.linalg.norm(bank, axis=-1, keepdims=True)
  text_bank.save_text_bank(
    bank_dir,
    bank.astype(np.float32),
    {
      "class_names": [f"class {k}" for k in range(num_classes)],
      "templates": [f"t{m} {{}}" for m in range(num_templates)],
      "checkpoint": "random",
    },
  )
  return bank


def make(
  root: str, num_classes: int = 4, num_train: int = 32, num_val: int = 8
) -> dict[str, str]:
  """Train/val shards and a bank under `root`; returns their folders."""
  data_dir, bank_dir = os.path.join(root, "data"), os.path.join(root, "bank")
  write_split(data_dir, "train", num_train, num_classes, seed=1)
  write_split(data_dir, "val", num_val, num_classes, seed=2)
  write_bank(bank_dir, num_classes)
  return {"data": data_dir, "bank": bank_dir}
