"""Shared pieces of the train and inference benchmarks.

Benchmarks build the real model, state and step of a config (the trainer's
own `models.build`, `state` and `train` pieces) on
whatever devices exist, feed random uint8 clips already on the device (so
they measure the accelerator, not the input pipeline) and print a table.
"""

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from art_jax import config_lib, optim, reporting, text_bank, train
from art_jax import sharding as sh
from art_jax import state as state_lib
from art_jax.models import build


def random_bank(config: ml_collections.ConfigDict, seed: int = 0) -> np.ndarray:
  """A unit-norm (K, M, D) bank shaped like the real one
  (`reporting.bank_shape`; the blank bank of a model that reads no text)."""
  if not config.model.heads.use_text:
    return text_bank.blank_bank(config.data.num_classes)
  bank = np.random.default_rng(seed).normal(size=reporting.bank_shape(config))
  return (bank / np.linalg.norm(bank, axis=-1, keepdims=True)).astype(
    np.float32
  )


def random_video(shape: Sequence[int], sharding, seed: int = 0) -> jax.Array:
  """uint8 clips generated on the device, already sharded."""

  def make():
    return jax.random.randint(
      jax.random.key(seed), shape, 0, 256, jnp.int32
    ).astype(jnp.uint8)

  return jax.jit(make, out_shardings=sharding)()


def time_calls(
  fn: Callable[[], Any], steps: int, warmup: int = 2
) -> list[float]:
  """Wall seconds of each of `steps` calls after `warmup` calls."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return times


def peak_memory_bytes() -> int | None:
  """Peak bytes in use on device 0 (None where the backend does not say)."""
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
  """Rows of equal keys -> a Markdown table."""
  if not rows:
    return ""
  keys = list(rows[0])
  fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
  lines = [
    "| " + " | ".join(keys) + " |",
    "|" + "|".join("---" for _ in keys) + "|",
  ]
  lines += [
    "| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows
  ]
  return "\n".join(lines)


def build_train_step(
  config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, batch: int
) -> tuple[Callable, Any, tuple[int, ...], np.ndarray]:
  """The trainer's own pieces for `config` at global `batch` on `mesh`:
  (train_step, StateSetup, video shape (B, T, H, W, 3), random bank). The
  schedule is constant at optim.lr: its shape changes no buffer or op."""
  model = build.build_model(config)
  schedule = optax.constant_schedule(config.optim.lr)
  tx = optim.make_optimizer(config.optim, schedule)
  bank = random_bank(config)
  crop = config.data.crop_size
  video_shape = (batch, config.data.num_frames, crop, crop, 3)
  setup = state_lib.setup_state(
    model, tx, mesh, sh.LOGICAL_RULES, video_shape, bank.shape
  )
  step = train.make_train_step(
    model,
    tx,
    train.loss_options(config),
    schedule,
    ema_momentum=config.text_bank.momentum,
    accum_steps=config.optim.accum_steps,
    dtype=build.DTYPES[config.model.dtype],
    pixel_stats=config_lib.pixel_stats(config),
  )
  return step, setup, video_shape, bank
