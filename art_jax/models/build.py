"""From a config to the model and what it is fed: `build_model`, the dtype
names, and the on-device input normalisation."""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from art_jax import config_lib
from art_jax.models import art as art_model
from art_jax.models import backbones

DTYPES = {
  "float32": jnp.float32,
  "bfloat16": jnp.bfloat16,
  "float16": jnp.float16,
}

PixelStats = tuple[Sequence[float], Sequence[float]]
CLIP_STATS: PixelStats = (config_lib.CLIP_MEAN, config_lib.CLIP_STD)


def backbone_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The backbone's module fields from `config`: the preset of
  `config.model.backbone_kind`, overridden by `config.model.backbone`,
  with the run's dtypes and the model fields it shares (remat, and for
  UniFormerV2 scan and attention; `backbones.kwargs_from_config`)."""
  m = config.model
  return dict(
    backbones.kwargs_from_config(config),
    dtype=DTYPES[m.dtype],
    param_dtype=DTYPES[m.param_dtype],
  )


def build_model(config: ml_collections.ConfigDict) -> art_model.ART:
  """ART with the preset backbone of `config.model.backbone_kind`,
  overridden by `config.model.backbone`."""
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
    backbone_kind=m.get("backbone_kind", "uniformerv2"),
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
