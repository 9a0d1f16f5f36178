r"""Builds missing inputs before training: synthetic shards, the text bank
and (the demo's) pose-pretrained backbone; a no-op for a real dataset whose
shards and bank are there.

Real datasets are prepared by `python -m art_jax.data.prepare` beforehand;
the synthetic demo data is cheap enough to render on first use. The text
bank is built on first use from `config.text_bank.clip` (a Hugging Face id
or a local CLIP checkpoint, or "tiny" for a small random CLIP text tower
written locally, which nothing needs to download, or "tiny_pretrained" for
a tiny CLIP contrastively pretrained here on captioned random motions of
the synthetic figure, `art_jax.demo.clip_pretrain`) with the class names of
the training split, through the same code path as
`python -m art_jax.text_bank`. A config with init_from.pose_pretrain.steps
> 0 builds its init_from.path with `art_jax.demo.pose_pretrain` if absent.

`art_jax.main` calls `ensure_inputs` before the trainer; only process 0
builds, the others wait at a barrier. As a command, it builds without
training (and prints the tiny CLIP's summary):

  python -m art_jax.demo.inputs --config=configs/demo.py \
      [--config.text_bank.pretrain.steps=...]
"""

import os

import jax
import ml_collections
from absl import app, flags, logging
from jax.experimental import multihost_utils
from ml_collections import config_flags

from art_jax import config_lib, text_bank
from art_jax.data import prepare, record
from art_jax.demo import clip_pretrain, pose_pretrain, tiny_clip
from art_jax.demo import config as demo_config


def build_synthetic(
  out_dir: str,
  num_train: int,
  num_val: int,
  seed: int = 0,
  *,
  num_frames: int = 16,
  size: int = 64,
  jpeg_quality: int = 90,
  clips_per_shard: int = 512,
  workers: int = 1,
  difficulty: float = 1.0,
) -> dict[str, int]:
  """Writes the synthetic train and val splits to `out_dir` unless there.

  Goes through `prepare.prepare_split`, so shards, metadata and resume
  markers are those of the real datasets; finished shards with the same
  clips and parameters are skipped.

  Returns:
    {split: number of clips}.
  """
  params = prepare.Params(
    short_side=size,
    jpeg_quality=jpeg_quality,
    max_frames=num_frames,
    min_frames=num_frames,
  )
  counts = {}
  for split, n in (("train", num_train), ("val", num_val)):
    s = prepare.prepare_split(
      "synthetic",
      prepare.DATASETS["synthetic"].default_variant,
      split,
      videos=None,
      annotations=None,
      out=out_dir,
      params=params,
      clips_per_shard=clips_per_shard,
      workers=workers,
      read_options={
        "num_clips": {"train": num_train, "val": num_val},
        "seed": seed,
        "difficulty": difficulty,
      },
    )
    if s.num_clips != n:
      raise RuntimeError(f"{out_dir}/{split}: {s.num_clips} of {n} clips")
    counts[split] = s.num_clips
  return counts


def ensure_synthetic_data(config: ml_collections.ConfigDict) -> None:
  """Renders the synthetic train/val shards into data.dir if absent."""
  d = config.data
  if d.dataset != "synthetic":
    return
  s = d.synthetic
  logging.info(
    "synthetic data in %s (%d train, %d val clips)",
    d.dir,
    s.num_train,
    s.num_val,
  )
  build_synthetic(
    d.dir,
    s.num_train,
    s.num_val,
    s.seed,
    num_frames=s.frames,
    size=s.size,
    workers=s.workers,
    difficulty=s.difficulty,
  )


def ensure_text_bank(config: ml_collections.ConfigDict) -> None:
  """Builds bank.npy + bank.json in text_bank.dir from text_bank.clip."""
  tb = config.text_bank
  if not config.model.heads.use_text:
    return  # the model reads no text (text_bank.blank_bank)
  pretrained = tb.clip == clip_pretrain.CLIP_NAME
  if os.path.exists(os.path.join(tb.dir, text_bank.BANK_FILE)) and (
    not pretrained or clip_pretrain.is_built(config)
  ):
    return
  if not tb.clip:
    return  # load_text_bank will say how to build one
  meta = record.read_metadata(
    config.data.dir, config.data.train_split, config.data.num_classes
  )
  names = meta["class_names"]
  templates = list(text_bank.DEFAULT_TEMPLATES[: tb.num_templates])
  checkpoint = tb.clip
  if tb.clip == "tiny":
    checkpoint = os.path.join(tb.dir, "tiny_clip")
    tiny_clip.write_tiny_clip_checkpoint(
      checkpoint,
      words=list(names) + templates,
      width=64,
      layers=2,
      heads=4,
      projection_dim=64,
      seed=config.seed,
    )
  elif pretrained:
    checkpoint = clip_pretrain.ensure_tiny_clip(config, names, templates)
  else:
    checkpoint = text_bank.resolve_checkpoint(tb.clip)
  logging.info(
    "building the text bank: %d classes x %d templates with %s",
    len(names),
    len(templates),
    tb.clip,
  )
  bank = text_bank.build_text_bank(checkpoint, names, templates)
  text_bank.save_text_bank(
    tb.dir,
    bank,
    {"class_names": names, "templates": templates, "checkpoint": tb.clip},
  )


def check_config(config: ml_collections.ConfigDict) -> None:
  """The demo's pose pretraining knobs, checked on every process before
  anything is built (the tiny CLIP's are checked where it is built);
  raises config_lib.ConfigError. Configs without them (every dataset's)
  pass."""
  if not demo_config.has_knobs(config):
    return
  problems = pose_pretrain.config_problems(config)
  if problems:
    raise config_lib.ConfigError(
      "invalid config:\n  - " + "\n  - ".join(problems)
    )


def ensure_inputs(config: ml_collections.ConfigDict) -> None:
  """Builds what is missing on process 0; every process then continues."""
  check_config(config)
  if jax.process_index() == 0:
    ensure_synthetic_data(config)
    ensure_text_bank(config)
    if demo_config.has_knobs(config):
      pose_pretrain.ensure_pose_backbone(config)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("art_jax.inputs")


def define_flags() -> None:
  """Command-line flags (defined only when run as a program)."""
  config_flags.DEFINE_config_file("config", None, "Config file.")
  flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
  del argv
  config = flags.FLAGS.config
  ensure_inputs(config)
  summary = os.path.join(config.text_bank.dir, clip_pretrain.SUMMARY_FILE)
  if config.text_bank.clip == clip_pretrain.CLIP_NAME:
    with open(summary) as f:
      print(f.read())
  else:
    print(f"inputs of {config.name} in {config.data.dir}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
