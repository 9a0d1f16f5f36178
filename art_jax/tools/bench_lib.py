"""Shared pieces of the train and inference benchmarks.

Benchmarks build the real model, state and step of a config (train.py) on
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

from art_jax import config_lib, optim, text_bank, train
from art_jax import sharding as sh

# Text width D of the CLIP that matches each backbone preset (r50 with
# model.heads.use_text: a B/16 CLIP's text, as any CLIP would do).
TEXT_DIM = {"b16": 512, "l14": 768, "l14_336": 768, "r50": 512}
NUM_TEMPLATES = 8


def random_bank(config: ml_collections.ConfigDict, seed: int = 0) -> np.ndarray:
  """A unit-norm (K, M, D) bank shaped like the real one (the blank bank
  of a model that reads no text)."""
  k = config.data.num_classes
  if not config.model.heads.use_text:
    return text_bank.blank_bank(k)
  d = TEXT_DIM[config.model.preset]
  bank = np.random.default_rng(seed).normal(size=(k, NUM_TEMPLATES, d))
  return (bank / np.linalg.norm(bank, axis=-1, keepdims=True)).astype(
    np.float32
  )


def model_train_flops(
  config: ml_collections.ConfigDict, batch_size: int
) -> float:
  """Model FLOPs of one train step: 3 x the unrolled forward pass.

  XLA's cost analysis counts a scanned layer body once, so the scanned
  train step under-reports; MFU uses the unrolled forward (lowered, never
  compiled) times 3 (forward + backward), without remat recomputation, as
  MFU is usually defined. A multiply-add counts as 2 FLOPs here.
  """
  from art_jax import train  # noqa: PLC0415 - avoid an import cycle

  unrolled = ml_collections.ConfigDict(config.to_dict())
  unrolled.model.scan = False
  # Same FLOPs either way; the XLA path also lowers for the CPU (below).
  unrolled.model.attention_impl = "xla"
  model = train.build_model(unrolled)
  crop = config.data.crop_size
  video = jax.ShapeDtypeStruct(
    (batch_size, config.data.num_frames, crop, crop, 3),
    train.DTYPES[config.model.dtype],
  )
  bank = jax.ShapeDtypeStruct(random_bank(config).shape, jnp.float32)
  variables = jax.eval_shape(
    lambda v, b: model.init(jax.random.key(0), v, b, train=False), video, bank
  )
  return 3.0 * forward_flops(
    lambda var, v, b: model.apply(var, v, b, train=False),
    variables,
    video,
    bank,
  )


def forward_flops(fn: Callable[..., Any], *args: Any) -> float:
  """XLA's FLOP count of jit(fn) at `args` (arrays or shape structs), from
  the lowered HLO, never compiled. Some backends (GPU) give no cost analysis
  of lowered HLO; then it is lowered for the host CPU, same program."""
  cost = jax.jit(fn).lower(*args).cost_analysis()
  if not cost or "flops" not in cost:
    with jax.default_device(jax.devices("cpu")[0]):
      cost = jax.jit(fn).lower(*args).cost_analysis()
  if not cost or "flops" not in cost:
    raise RuntimeError("XLA gives no cost analysis on this platform")
  return float(cost["flops"])


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
  model = train.build_model(config)
  schedule = optax.constant_schedule(config.optim.lr)
  tx = optim.make_optimizer(config.optim, schedule)
  bank = random_bank(config)
  crop = config.data.crop_size
  video_shape = (batch, config.data.num_frames, crop, crop, 3)
  setup = train.setup_state(
    model, tx, mesh, sh.LOGICAL_RULES, video_shape, bank.shape
  )
  step = train.make_train_step(
    model,
    tx,
    train.loss_options(config),
    schedule,
    ema_momentum=config.text_bank.momentum,
    accum_steps=config.optim.accum_steps,
    dtype=train.DTYPES[config.model.dtype],
    pixel_stats=config_lib.pixel_stats(config),
  )
  return step, setup, video_shape, bank
