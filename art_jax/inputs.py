"""Builds missing inputs before training: synthetic shards, the text bank
and (the demo's) pose-pretrained backbone.

Real datasets are prepared by `python -m art_jax.data.prepare` beforehand;
the synthetic demo data is cheap enough to render on first use. The text
bank is built on first use from `config.text_bank.clip` (a Hugging Face id
or a local CLIP checkpoint, or "tiny" for a small random CLIP text tower
written locally, which the demo uses because nothing can be downloaded, or
"tiny_pretrained" for a tiny CLIP contrastively pretrained here on
captioned random motions of the synthetic figure, `art_jax.clip_pretrain`)
with the class names of the training split, through the same code path as
`python -m art_jax.text_bank`. A config with init_from.pose_pretrain.steps
> 0 builds its init_from.path with `art_jax.pose_pretrain` if absent.

Only process 0 builds; the others wait at a barrier.
"""

import os

import jax
import ml_collections
from absl import logging
from jax.experimental import multihost_utils

from art_jax import clip_pretrain, pose_pretrain, text_bank, tiny_clip
from art_jax.data import record, synthetic


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
  synthetic.build_synthetic(
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


def ensure_inputs(config: ml_collections.ConfigDict) -> None:
  """Builds what is missing on process 0; every process then continues."""
  if jax.process_index() == 0:
    ensure_synthetic_data(config)
    ensure_text_bank(config)
    pose_pretrain.ensure_pose_backbone(config)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("art_jax.inputs")
