"""The demo's own config knobs, added to the shared base by
configs/demo.py (dataset configs never carry them).

* `data.synthetic`: the synthetic dataset rendered into data.dir on first
  use (`inputs.ensure_synthetic_data`);
* `text_bank.pretrain`: the tiny CLIP made on first use when
  `text_bank.clip == "tiny_pretrained"` (`clip_pretrain`);
* `init_from.pose_pretrain`: the pose-pretrained backbone built into
  init_from.path on first use (`pose_pretrain`).
"""

import ml_collections
from ml_collections import config_dict


def add_knobs(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Adds the demo's knobs (defaults below) to `c`, a base config; -> c."""
  # Rendered into data.dir on first use (dataset "synthetic").
  c.data.synthetic = ml_collections.ConfigDict(
    {
      "num_train": 2400,
      "num_val": 480,
      "seed": 0,
      "frames": 16,
      "size": 64,
      "workers": 1,
      # Nuisance scale (synthetic.sample_nuisance): 1 the full dataset.
      "difficulty": 1.0,
    }
  )
  # text_bank.clip == "tiny_pretrained" only: a tiny CLIP made on first use
  # by contrastive pretraining on captioned random motions of the synthetic
  # figure (art_jax.demo.clip_pretrain; never the demo's labels). Its text
  # tower builds the bank; its video tower's backbone is written to
  # video_backbone (default <text_bank.dir>/video_backbone.msgpack) for
  # init_from.path.
  c.text_bank.pretrain = ml_collections.ConfigDict(
    {
      "steps": 300,
      "batch_size": 64,
      "num_clips": 4096,  # rendered once; captions re-drawn every use
      "lr": 1e-3,
      "weight_decay": 0.05,
      "temperature": 0.07,  # initial; learned (CLIP's logit scale)
      "pair_fraction": 0.5,  # clips with two motions in time order
      "min_difficulty": 0.0,  # nuisance difficulty, uniform in the range
      "max_difficulty": 1.0,
      "seed": 0,
      # Text tower (CLIPTextTransformer) sizes; the video tower is the
      # config's backbone.
      "width": 64,
      "layers": 2,
      "heads": 4,
      "projection_dim": 64,
      # A params file the video tower starts from (e.g. the pose backbone;
      # built by pose pretraining if absent and init_from.pose_pretrain.steps
      # > 0), or None: from scratch.
      "init_backbone": config_dict.placeholder(str),
      # Locked-image tuning (LiT): keep init_backbone as it is, train only
      # a small head on its patch tokens (computed once) and the text tower.
      "lock_video": False,
      "video_backbone": config_dict.placeholder(str),
    }
  )
  # Build init_from.path on first use by pose pretraining on synthetic
  # stills (art_jax.demo.pose_pretrain; the demo's stand-in for CLIP).
  # Off: 0.
  c.init_from.pose_pretrain = ml_collections.ConfigDict(
    {
      "steps": 0,
      "batch_size": 128,
      "lr": 1e-3,
      "weight_decay": 0.05,
      "num_images": 16384,
      "num_val_images": 512,
      "difficulty": 1.0,
      "seed": 0,
      # False: random-pose stills; True: clips of data.num_frames frames of
      # random motion (every joint of every frame regressed; num_images and
      # num_val_images count clips).
      "clips": False,
    }
  )
  return c


def has_knobs(config: ml_collections.ConfigDict) -> bool:
  """Whether `config` carries the demo's knobs (configs/demo.py)."""
  return "pose_pretrain" in config.init_from
