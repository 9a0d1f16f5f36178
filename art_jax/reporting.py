"""Metrics to the console and TensorBoard, model FLOPs, throughput and MFU.

Only process 0 writes event files; every process logs to the console.
Model FLOPs utilisation = model FLOPs of one step per device (3 x the
unrolled forward, `model_train_flops`) / step time / the device's peak
dense bf16 FLOP/s (table below).
"""

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from art_jax.models import build

# Peak dense bf16 FLOP/s per chip (vendor datasheets; no sparsity).
PEAK_BF16_FLOPS = {
  "TPU v4": 275e12,
  "TPU v5 lite": 197e12,  # v5e
  "TPU v5e": 197e12,
  "TPU v5p": 459e12,
  "TPU v5": 459e12,
  "TPU v6 lite": 918e12,  # v6e (Trillium)
  "TPU v6e": 918e12,
  "NVIDIA A100": 312e12,
  "NVIDIA A40": 149.7e12,
  "NVIDIA H100": 989e12,  # SXM
  "NVIDIA H200": 989e12,
}


def device_peak_flops(device: jax.Device | None = None) -> float | None:
  """Peak bf16 FLOP/s of `device` (default: the first), None if unknown."""
  kind = (device or jax.devices()[0]).device_kind
  for name in sorted(PEAK_BF16_FLOPS, key=len, reverse=True):
    if kind.startswith(name) or name in kind:
      return PEAK_BF16_FLOPS[name]
  return None


# Text width D of the CLIP that matches each backbone preset, and the
# templates M of the bank FLOPs are counted with (`bank_shape`).
# (r50 with model.heads.use_text: a B/16 CLIP's text, as any CLIP would do.)
TEXT_DIM = {"b16": 512, "l14": 768, "l14_336": 768, "r50": 512}
NUM_TEMPLATES = 8


def bank_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """(K, M, D) of a text bank shaped like the real one of `config`: the
  blank bank's (K, 1, 1) for a model that reads no text
  (`text_bank.blank_bank`)."""
  if not config.model.heads.get("use_text", True):
    return (config.data.num_classes, 1, 1)
  return (
    config.data.num_classes,
    NUM_TEMPLATES,
    TEXT_DIM[config.model.preset],
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
  unrolled = ml_collections.ConfigDict(config.to_dict())
  unrolled.model.scan = False
  # Same FLOPs either way; the XLA path also lowers for the CPU (below).
  unrolled.model.attention_impl = "xla"
  model = build.build_model(unrolled)
  crop = config.data.crop_size
  video = jax.ShapeDtypeStruct(
    (batch_size, config.data.num_frames, crop, crop, 3),
    build.DTYPES[config.model.dtype],
  )
  bank = jax.ShapeDtypeStruct(bank_shape(config), jnp.float32)
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


class MetricWriter:
  """Writes scalars to TensorBoard and a JSON-lines file (process 0 only)
  and to the log (every process).

  `<workdir>/metrics.jsonl` holds one {"step": s, name: value, ...} object
  per call: easy to read back for plots and tests.
  """

  def __init__(self, workdir: str | None):
    self._tb = None
    self._jsonl = None
    if workdir and jax.process_index() == 0:
      from tensorboardX import SummaryWriter  # noqa: PLC0415

      os.makedirs(workdir, exist_ok=True)
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      # Kept open for the run (flushed per row), closed by close().
      self._jsonl = open(  # noqa: SIM115
        os.path.join(workdir, "metrics.jsonl"), "a"
      )

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    parts = []
    row = {"step": int(step)}
    for name, value in sorted(values.items()):
      value = float(value)
      row[name] = value
      parts.append(f"{name}={value:.5g}")
      if self._tb is not None:
        self._tb.add_scalar(name, value, step)
    if self._jsonl is not None:
      self._jsonl.write(json.dumps(row) + "\n")
      self._jsonl.flush()
    logging.info("[step %d] %s", step, ", ".join(parts))

  def image(self, step: int, name: str, image: np.ndarray) -> None:
    """image: (H, W, 3) uint8."""
    if self._tb is not None:
      self._tb.add_image(name, image, step, dataformats="HWC")

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
    if self._jsonl is not None:
      self._jsonl.close()


class Throughput:
  """Steps/s, clips/s, ETA and MFU between two log points."""

  def __init__(
    self,
    total_steps: int,
    global_batch: int,
    flops_per_step: float | None,
    peak: float | None,
  ):
    self.total_steps = total_steps
    self.global_batch = global_batch
    self.flops_per_step = flops_per_step
    self.peak = peak
    self._t = time.perf_counter()
    self._step: int | None = None

  def reset(self, step: int) -> None:
    self._t, self._step = time.perf_counter(), step

  def measure(self, step: int) -> dict[str, float]:
    now = time.perf_counter()
    if self._step is None or step <= self._step:
      self.reset(step)
      return {}
    dt = (now - self._t) / (step - self._step)
    self.reset(step)
    out = {
      "perf/steps_per_sec": 1.0 / dt,
      "perf/clips_per_sec": self.global_batch / dt,
      "perf/eta_minutes": (self.total_steps - step) * dt / 60.0,
    }
    if self.flops_per_step and self.peak:
      out["perf/mfu"] = self.flops_per_step / dt / self.peak
    return out


def run_summary(
  result: dict, workdir: str, config_arg: str, seconds: float
) -> str:
  """What a person reads at the end of a run: the metrics, the wall time,
  where the outputs are and the command to try next."""
  lines = [f"done in {seconds / 60:.1f} min ({result.get('steps', 0)} steps)"]
  if "top1" in result:
    lines.append(
      f"  Top-1 {100 * result['top1']:.1f}%  Top-5 "
      f"{100 * result['top5']:.1f}%  Mean class accuracy "
      f"{100 * result['mean_class_accuracy']:.1f}%"
    )
  if result.get("preempted"):
    lines.append("  preempted: run the same command again to resume")
  if result.get("skipped_steps"):
    lines.append(f"  {result['skipped_steps']} non-finite steps skipped")
  for label, sub in (
    ("checkpoints", "checkpoints"),
    ("eval reports", "eval"),
    ("tracklet pictures", "tracklets"),
    ("TensorBoard", "tensorboard"),
  ):
    path = os.path.join(workdir, sub)
    if os.path.exists(path):
      lines.append(f"  {label + ':':<19}{path}")
  lines.append(
    "  next: python -m art_jax.predict "
    f"--config={config_arg} --checkpoint={workdir} --video=VIDEO"
  )
  return "\n".join(lines)
