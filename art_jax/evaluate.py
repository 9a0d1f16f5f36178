"""Evaluation: multi-view Top-1, Top-5, mean per-class accuracy, reports.

Every view (clip x crop) of a video arrives as one example carrying
`video_index`; softmax probabilities are averaged per video, padded rows
(mask == 0) are dropped, so each video counts exactly once whatever the
number of hosts and the padding of the last batch. `Evaluator` runs it on
a train state: the eval split through the jitted model, the metrics, the
report and confusion matrix, and tracklet pictures of the first batch.
"""

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from art_jax import config_lib, reporting, viz
from art_jax import sharding as sh
from art_jax import state as state_lib
from art_jax.data import pipeline
from art_jax.models import art as art_model
from art_jax.models import backbones, build

Batch = Mapping[str, np.ndarray]


class VideoScores:
  """Sums softmax scores per video over its views."""

  def __init__(self, num_classes: int):
    self.num_classes = num_classes
    self._scores: dict[int, np.ndarray] = {}
    self._views: dict[int, int] = {}
    self._labels: dict[int, int] = {}

  def add(
    self,
    probs: np.ndarray,
    labels: np.ndarray,
    video_index: np.ndarray,
    mask: np.ndarray,
  ) -> None:
    """probs (b, K); labels, video_index, mask (b,)."""
    for p, y, v, m in zip(probs, labels, video_index, mask, strict=True):
      if not m:
        continue
      v = int(v)
      if v in self._labels and self._labels[v] != int(y):
        raise ValueError(
          f"video {v} has views with labels {self._labels[v]} and {int(y)}"
        )
      self._scores[v] = self._scores.get(v, 0.0) + p.astype(np.float64)
      self._views[v] = self._views.get(v, 0) + 1
      self._labels[v] = int(y)

  def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(video ids, mean probs (V, K), labels (V,)) sorted by video id."""
    ids = np.array(sorted(self._scores), np.int64)
    if not len(ids):
      return ids, np.zeros((0, self.num_classes)), np.zeros((0,), np.int64)
    probs = np.stack([self._scores[i] / self._views[i] for i in ids])
    labels = np.array([self._labels[i] for i in ids], np.int64)
    return ids, probs, labels

  def views_per_video(self) -> np.ndarray:
    return np.array([self._views[i] for i in sorted(self._views)])


def classification_metrics(
  probs: np.ndarray, labels: np.ndarray, num_classes: int
) -> dict[str, object]:
  """Top-1, Top-5, mean per-class accuracy, per-class accuracy, confusion.

  Classes with no example are left out of the mean (and get NaN per class).
  """
  preds = probs.argmax(-1)
  top5 = np.argsort(-probs, axis=-1)[:, :5]
  confusion = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion, (labels, preds), 1)
  support = confusion.sum(1)
  with np.errstate(invalid="ignore", divide="ignore"):
    per_class = np.where(support > 0, np.diag(confusion) / support, np.nan)
  n = max(1, len(labels))
  return {
    "top1": float((preds == labels).sum() / n),
    "top5": float((top5 == labels[:, None]).any(-1).sum() / n),
    "mean_class_accuracy": float(np.nanmean(per_class))
    if np.any(support > 0)
    else 0.0,
    "num_videos": int(len(labels)),
    "per_class_accuracy": per_class,
    "confusion": confusion,
  }


def write_report(
  metrics: Mapping[str, object],
  class_names: Sequence[str] | None,
  out_dir: str,
  step: int,
) -> dict[str, str]:
  """Writes per-class accuracy + confusion as JSON and a confusion PNG."""
  os.makedirs(out_dir, exist_ok=True)
  confusion = np.asarray(metrics["confusion"])
  per_class = np.asarray(metrics["per_class_accuracy"], np.float64)
  k = confusion.shape[0]
  names = list(class_names) if class_names else [str(i) for i in range(k)]
  report = {
    "step": step,
    **{
      key: metrics[key]
      for key in ("top1", "top5", "mean_class_accuracy", "num_videos")
    },
    "per_class_accuracy": {
      n: (None if np.isnan(a) else float(a))
      for n, a in zip(names, per_class, strict=True)
    },
    "class_names": names,
    "confusion": confusion.tolist(),
  }
  json_path = os.path.join(out_dir, f"eval_step{step}.json")
  with open(json_path, "w") as f:
    json.dump(report, f, indent=1)
  png_path = os.path.join(out_dir, f"confusion_step{step}.png")
  viz.plot_confusion(
    confusion,
    names,
    png_path,
    title=f"step {step}: top-1 {metrics['top1']:.3f}",
  )
  return {"json": json_path, "png": png_path}


# --- the model on a train state ----------------------------------------------


def _forward(
  model: nn.Module, dtype: Any, pixel_stats: build.PixelStats
) -> Callable[[state_lib.TrainState, jax.Array], dict[str, jax.Array]]:
  """The one eval-mode model call: (state, uint8 video) -> model outputs."""

  def forward(state, video):
    return model.apply(
      {"params": state.params, "batch_stats": state.batch_stats},
      build.normalize_video(video, dtype, pixel_stats),
      state.text_bank,
      train=False,
    )

  return forward


def _probs(out: Mapping[str, jax.Array]) -> jax.Array:
  return jax.nn.softmax(out["logits"].astype(jnp.float32), axis=-1)


def make_predict_fn(
  model: nn.Module,
  dtype: Any,
  pixel_stats: build.PixelStats = build.CLIP_STATS,
) -> Callable[[state_lib.TrainState, jax.Array], jax.Array]:
  """`predict(state, video) -> softmax probs (B, K)` in float32."""
  forward = _forward(model, dtype, pixel_stats)
  return lambda state, video: _probs(forward(state, video))


def make_explain_fn(
  model: nn.Module,
  dtype: Any,
  pixel_stats: build.PixelStats = build.CLIP_STATS,
) -> Callable[[state_lib.TrainState, jax.Array], dict[str, jax.Array]]:
  """`explain(state, video)` -> probs, response maps, backbone tokens."""
  forward = _forward(model, dtype, pixel_stats)

  def explain(state, video):
    out = forward(state, video)
    keep = {
      k: out[k].astype(jnp.float32)
      for k in ("response_maps", "tokens")
      if k in out
    }
    keep["probs"] = _probs(out)
    return keep

  return explain


def make_eval_iterator(config: ml_collections.ConfigDict, batch_size: int):
  """Every view of this host's slice of the eval split, padded batches."""
  d = config.data
  return pipeline.make_eval_iterator(
    d.dir,
    d.eval_split,
    batch_size=batch_size // jax.process_count(),
    num_frames=d.num_frames,
    sampling=d.sampling,
    frame_stride=d.frame_stride,
    crop_size=d.crop_size,
    num_test_clips=d.num_test_clips,
    num_spatial_crops=d.num_spatial_crops,
    num_workers=d.num_workers,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    num_classes=d.num_classes,
  )


class Evaluator:
  """Multi-view evaluation of a train state on the config's eval split.

  `run(state, step)` predicts every view of every video (all processes
  take part; padded rows are dropped), writes the report and confusion
  matrix (`<workdir>/eval`, process 0), tracklet pictures of the first
  batch (`<workdir>/tracklets`) and the eval/ scalars, and returns the
  metrics of `classification_metrics`.
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    model: art_model.ART,
    shardings: state_lib.TrainState,
    mesh: jax.sharding.Mesh,
    rules: sh.LogicalRules,
    *,
    workdir: str,
    writer: reporting.MetricWriter,
    class_names: Sequence[str] | None,
  ):
    self.config = config
    self.mesh, self.rules = mesh, rules
    self.workdir, self.writer, self.class_names = workdir, writer, class_names
    dtype = build.DTYPES[config.model.dtype]
    stats = config_lib.pixel_stats(config)
    video = state_lib.batch_shardings(mesh, rules)["video"]
    replicated = NamedSharding(mesh, P())
    self._predict = jax.jit(
      make_predict_fn(model, dtype, stats),
      in_shardings=(shardings, video),
      out_shardings=replicated,
    )
    self._replicate = jax.jit(lambda x: x, out_shardings=replicated)
    self._explain = jax.jit(
      make_explain_fn(model, dtype, stats),
      in_shardings=(shardings, video),
      out_shardings=replicated,
    )
    grid = backbones.token_grid(
      model.backbone_kind, model.backbone, config.data.crop_size
    )
    self.grid = (grid, grid)  # tokens per side
    self.kind = model.backbone_kind
    self.batch_size = config.data.eval_batch_size or config.batch_size

  def _global(self, batch: Batch) -> state_lib.Batch:
    return state_lib.to_global(batch, self.mesh, self.rules)

  def _host(self, x: jax.Array) -> np.ndarray:
    """A global array gathered to every host (a collective)."""
    return np.asarray(jax.device_get(self._replicate(x)))

  def run(self, state: state_lib.TrainState, step: int) -> dict[str, Any]:
    num_classes = self.config.data.num_classes
    scores = VideoScores(num_classes)
    t0 = time.perf_counter()
    first = None
    for batch in make_eval_iterator(self.config, self.batch_size):
      first = batch if first is None else first
      g = self._global(batch)
      with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
        probs = self._predict(state, g["video"])
      rows = {k: self._host(g[k]) for k in ("label", "video_index", "mask")}
      scores.add(
        np.asarray(jax.device_get(probs)),
        rows["label"],
        rows["video_index"],
        rows["mask"],
      )
    _, probs, labels = scores.arrays()
    metrics = classification_metrics(probs, labels, num_classes)
    if jax.process_index() == 0:
      write_report(
        metrics, self.class_names, os.path.join(self.workdir, "eval"), step
      )
    if first is not None:
      self._pictures(state, first, step)
    scalars = {
      f"eval/{k}": metrics[k]
      for k in ("top1", "top5", "mean_class_accuracy", "num_videos")
    }
    scalars["eval/seconds"] = time.perf_counter() - t0
    self.writer.scalars(step, scalars)
    return metrics

  def _pictures(
    self, state: state_lib.TrainState, batch: Batch, step: int
  ) -> None:
    """Tracklet pictures of `batch` (process 0 draws)."""
    g = self._global(batch)
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      explained = jax.device_get(self._explain(state, g["video"]))
    # Gathers are collectives: every process runs them, process 0 draws.
    frames, labels, weights = jax.device_get(
      (
        self._replicate(g["video"]),
        self._replicate(g["label"]),
        self._replicate(art_model.class_weights(state.params, self.kind)),
      )
    )
    if jax.process_index() == 0:
      viz.write_tracklet_pictures(
        explained,
        np.asarray(frames),
        np.asarray(weights, np.float32),
        self.class_names,
        self.grid,
        os.path.join(self.workdir, "tracklets"),
        step,
        self.writer,
        labels=np.asarray(labels),
      )
