"""The synthetic dataset (`art_jax.data.synthetic`'s figure) as a dataset
the prepare job writes like any other: balanced labels, one render seed per
clip, clips rendered instead of decoded (`process_clip`).

  python -m art_jax.data.prepare --dataset=synthetic --out=/tmp/synth \
      --num_train=3000 --num_val=600 [--seed=0 --frames=16 --size=64]
"""

from typing import Any

from art_jax.data import record, synthetic, video
from art_jax.data.datasets import common

VARIANTS = {"default": ("train", "val")}
DEFAULT_VARIANT = "default"
FLIP_SAFE = False  # "left"/"right" classes.
SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}


def clip_seed(seed: int, split: str, index: int) -> list[int]:
  """The render seed of clip `index` of `split`."""
  return [seed, SPLIT_INDEX[split], index]


def read(
  annotations: str | None,
  videos: str | None,
  split: str,
  variant: str = DEFAULT_VARIANT,
  *,
  num_clips: dict[str, int],
  seed: int = 0,
  difficulty: float = 1.0,
) -> common.Annotations:
  """The prepare job's clip list: balanced labels, one seed per clip.

  The seed (and a difficulty other than 1) is in the clip id, so a re-run
  with another --seed or --difficulty redoes the shards; frames and size
  come in through `prepare.Params`.
  """
  del annotations, videos
  common.check_split(split, VARIANTS[variant], "synthetic")
  n = num_clips[split]
  difficulty = float(difficulty)
  tag = "" if difficulty == 1.0 else f"_d{difficulty:g}"
  meta = {} if difficulty == 1.0 else {"difficulty": difficulty}
  clips = [
    common.ClipTask(
      f"s{seed}{tag}_{split}_{i:06d}",
      i % synthetic.NUM_CLASSES,
      None,
      meta={"seed": clip_seed(seed, split, i), **meta},
    )
    for i in range(n)
  ]
  extra = {"synthetic_seed": seed, "synthetic_difficulty": difficulty}
  return common.Annotations(clips, list(synthetic.CLASS_NAMES), extra=extra)


def process_clip(task: common.ClipTask, params: Any) -> tuple[bytes, None]:
  """Renders and JPEG-encodes one clip (prepare's per-clip function).

  `params` is a `prepare.Params`: short_side is the frame size and
  max_frames the number of frames.
  """
  t, size = params.max_frames, params.short_side
  frames = synthetic.render(
    task.label, task.meta["seed"], t, size, task.meta.get("difficulty", 1.0)
  )
  data = record.encode(
    record.Clip(
      id=task.id,
      label=task.label,
      frames=[video.encode_jpeg(f, params.jpeg_quality) for f in frames],
      frame_index=list(range(t)),
      num_source_frames=t,
      fps=float(t),  # one base-movement cycle lasts about a second
      height=size,
      width=size,
      meta=task.meta,
    )
  )
  return data, None
