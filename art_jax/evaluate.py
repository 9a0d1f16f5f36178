"""Multi-view evaluation: Top-1, Top-5, mean per-class accuracy.

Every view (clip x crop) of a video arrives as one example carrying
`video_index`; softmax probabilities are averaged per video, padded rows
(mask == 0) are dropped, so each video counts exactly once whatever the
number of hosts and the padding of the last batch.
"""

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

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


def evaluate(
  predict: Callable[[Batch], np.ndarray],
  batches: Iterable[Batch],
  num_classes: int,
) -> tuple[dict[str, object], VideoScores]:
  """Runs `predict` (batch -> probs (b, K), all hosts' rows) over `batches`.

  `predict` must return the probabilities of the *global* batch rows that
  `gather` returns for labels/video_index/mask; see train.py.
  """
  scores = VideoScores(num_classes)
  for batch in batches:
    probs = predict(batch)
    scores.add(probs, batch["label"], batch["video_index"], batch["mask"])
  _, probs, labels = scores.arrays()
  return classification_metrics(probs, labels, num_classes), scores


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
  plot_confusion(
    confusion,
    names,
    png_path,
    title=f"step {step}: top-1 {metrics['top1']:.3f}",
  )
  return {"json": json_path, "png": png_path}


def plot_confusion(
  confusion: np.ndarray, names: Sequence[str], path: str, title: str = ""
) -> None:
  """Row-normalised confusion matrix as a PNG (labels shown up to 40)."""
  import matplotlib  # noqa: PLC0415 - plotting only where reports are written

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  k = confusion.shape[0]
  rows = confusion.sum(1, keepdims=True)
  norm = np.divide(confusion, np.maximum(rows, 1))
  size = min(20.0, 3.0 + 0.25 * k)
  fig, ax = plt.subplots(figsize=(size, size))
  ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(title)
  if k <= 40:
    ax.set_xticks(range(k), [n[:30] for n in names], rotation=90, fontsize=7)
    ax.set_yticks(range(k), [n[:30] for n in names], fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)
