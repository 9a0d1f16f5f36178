"""From a config to the model and what it is fed: `build_model`, the dtype
names, and the on-device input normalisation."""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from art_jax import config_lib
from art_jax.models import art as art_model
from art_jax.models import uniformerv2

DTYPES = {
  "float32": jnp.float32,
  "bfloat16": jnp.bfloat16,
  "float16": jnp.float16,
}

PixelStats = tuple[Sequence[float], Sequence[float]]
CLIP_STATS: PixelStats = (config_lib.CLIP_MEAN, config_lib.CLIP_STD)


def backbone_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The UniFormerV2 fields of `config`: the preset, overridden by
  `config.model.backbone`, with the run's dtypes, remat and scan."""
  m = config.model
  backbone = uniformerv2.preset_kwargs(
    m.preset,
    num_classes=config.data.num_classes,
    t_size=config.data.num_frames,
    input_resolution=config.data.crop_size,
    **m.backbone.to_dict(),
  )
  backbone.update(
    dtype=DTYPES[m.dtype],
    param_dtype=DTYPES[m.param_dtype],
    remat_policy=m.remat_policy,
    scan=m.scan,
    attention_impl=m.attention_impl,
  )
  return backbone


def build_model(config: ml_collections.ConfigDict) -> art_model.ART:
  """ART with the preset backbone, overridden by `config.model.backbone`."""
  m = config.model
  heads = dict(
    m.heads.to_dict(),
    num_classes=config.data.num_classes,
    scan=m.scan,
    remat_policy=m.remat_policy,
    attention_impl=m.attention_impl,
  )
  return art_model.ART(
    backbone=backbone_kwargs(config),
    heads=heads,
    dtype=DTYPES[m.dtype],
    param_dtype=DTYPES[m.param_dtype],
  )


def normalize_video(
  video: jax.Array, dtype: Any, pixel_stats: PixelStats = CLIP_STATS
) -> jax.Array:
  """uint8 (B, T, H, W, 3) -> (x - mean) / std as `dtype` (on device);
  `pixel_stats` = (mean, std) per RGB channel in 0..255 units."""
  mean = jnp.asarray(pixel_stats[0], jnp.float32)
  std = jnp.asarray(pixel_stats[1], jnp.float32)
  return ((video.astype(jnp.float32) - mean) / std).astype(dtype)
