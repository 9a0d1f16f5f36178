r"""Baselines without temporal order on the synthetic dataset: what a
frame-average or single-frame linear classifier reads off a prepared split.

Reversed "A then B" pairs have the same frame-average distribution, so no
frame-average classifier can exceed (8 + 4 / 2) / 12 = 83.3%
(docs/data.md).

  python -m art_jax.tools.frame_baselines --data=/tmp/synth
"""

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app, flags
from array_record.python import array_record_module

from art_jax.data import record, video


def _box_blur(x: np.ndarray, k: int) -> np.ndarray:
  """k x k mean filter (edge padded) over the last two axes of (..., H, W)."""
  p = k // 2
  pad = [(0, 0)] * (x.ndim - 2) + [(p + 1, p), (p + 1, p)]
  c = np.pad(x, pad, mode="edge").cumsum(-2).cumsum(-1)
  return (
    c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]
  ) / (k * k)


def clip_features(
  frames: np.ndarray, num_frames: int = 8, cells: int = 12
) -> dict[str, np.ndarray]:
  """Order-blind and order-aware features of one clip.

  `pixels_frame_average`: RGB averaged over all frames, 2 x 2 pooled.
  The others use figure-centred stroke maps, invariant to colours and
  position: |grey - its 11 x 11 blur| of `num_frames` evenly spaced
  frames, cropped (3/4 of the side) around the clip's stroke centroid and
  pooled to cells x cells: `frame_average` averages them over time,
  `single_frame` is the middle one, `stacked_frames` keeps all in order
  (a linear model that can see order, for reference).

  Args:
    frames: uint8 (T, H, W, 3).

  Returns:
    {name: float32 (D,)}.
  """
  x = frames.astype(np.float32) / 255
  t, h, w, _ = x.shape
  avg = x[:, : h // 2 * 2, : w // 2 * 2].mean(0)
  avg = avg.reshape(h // 2, 2, w // 2, 2, 3).mean((1, 3))
  idx = ((np.arange(num_frames) + 0.5) * t / num_frames).astype(int)
  g = x[idx].mean(-1)  # (T', H, W)
  strokes = np.abs(g - _box_blur(g, 11))
  weight = strokes.mean(0) ** 2
  total = weight.sum() + 1e-6
  cy = int((weight.sum(1) @ np.arange(h)) / total)
  cx = int((weight.sum(0) @ np.arange(w)) / total)
  pool = max(1, min(h, w) * 3 // 4 // cells)
  crop = pool * cells
  padded = np.pad(strokes, ((0, 0), (crop, crop), (crop, crop)))
  y0, x0 = cy + crop - crop // 2, cx + crop - crop // 2
  c = padded[:, y0 : y0 + crop, x0 : x0 + crop]
  c = c.reshape(num_frames, cells, pool, cells, pool).mean((2, 4))
  return {
    "pixels_frame_average": avg.ravel(),
    "frame_average": c.mean(0).ravel(),
    "single_frame": c[num_frames // 2].ravel(),
    "stacked_frames": c.ravel(),
  }


def load_features(
  data_dir: str, split: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """`clip_features` of a prepared split: ({name: (N, D)}, labels (N,))."""
  meta = record.read_metadata(data_dir, split)
  feats, labels = {}, []
  for path in meta["shard_paths"]:
    reader = array_record_module.ArrayRecordReader(path)
    for data in reader.read_all():
      clip = record.decode(data)
      frames = np.stack([video.decode_jpeg(f) for f in clip.frames])
      for k, v in clip_features(frames).items():
        feats.setdefault(k, []).append(v)
      labels.append(clip.label)
    reader.close()
  return {k: np.stack(v) for k, v in feats.items()}, np.array(labels)


def _softmax_regression(
  x: np.ndarray, y: np.ndarray, k: int, l2: float, steps: int = 300
) -> np.ndarray:
  """Multinomial logistic regression, full batch Adam: weights (D + 1, K)."""
  x = np.concatenate([x, np.ones((len(x), 1), x.dtype)], 1)
  w = np.zeros((x.shape[1], k), np.float32)
  m, v = np.zeros_like(w), np.zeros_like(w)
  onehot = np.eye(k, dtype=np.float32)[y]
  for i in range(1, steps + 1):
    z = x @ w
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = x.T @ (p - onehot) / len(x) + l2 * w
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    w -= 0.01 * (m / (1 - 0.9**i)) / (np.sqrt(v / (1 - 0.999**i)) + 1e-8)
  return w


def _predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
  return (x @ w[:-1] + w[-1]).argmax(1)


def fit_and_score(
  xtr: np.ndarray,
  ytr: np.ndarray,
  xva: np.ndarray,
  yva: np.ndarray,
  num_classes: int,
  l2s: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1),
) -> dict[str, float]:
  """Val accuracy of logistic regression and nearest centroid.

  Features are standardised with train statistics; the L2 weight is the
  best on a fifth of the train split held out, then refit on all of it.
  """
  mu, sd = xtr.mean(0), xtr.std(0) + 1e-3
  xtr, xva = (xtr - mu) / sd, (xva - mu) / sd
  cut = len(xtr) * 4 // 5
  best = max(
    l2s,
    key=lambda l2: np.mean(
      _predict(
        _softmax_regression(xtr[:cut], ytr[:cut], num_classes, l2),
        xtr[cut:],
      )
      == ytr[cut:]
    ),
  )
  w = _softmax_regression(xtr, ytr, num_classes, best)
  centroids = np.stack([xtr[ytr == c].mean(0) for c in range(num_classes)])
  d = ((xva[:, None] - centroids[None]) ** 2).sum(-1)
  return {
    "logreg": float(np.mean(_predict(w, xva) == yva)),
    "logreg_l2": best,
    "centroid": float(np.mean(d.argmin(1) == yva)),
  }


def frame_average_baseline(
  data_dir: str, train: str = "train", val: str = "val"
) -> dict[str, Any]:
  """Frame-average and single-frame baselines: val accuracy vs chance.

  Softmax regression and nearest centroid on each `clip_features` set.
  Reversed "A then B" pairs have the same frame-average distribution, so
  no frame-average classifier can exceed (8 + 4 / 2) / 12 = 83.3%.

  Returns:
    {"num_train", "num_val", "chance", "seconds", and per feature set
    {"logreg", "logreg_l2", "centroid"}}.
  """
  t0 = time.time()
  ftr, ytr = load_features(data_dir, train)
  fva, yva = load_features(data_dir, val)
  k = len(record.read_metadata(data_dir, train)["class_names"])
  out = {"num_train": len(ytr), "num_val": len(yva), "chance": 1 / k}
  for name in ftr:
    out[name] = fit_and_score(ftr[name], ytr, fva[name], yva, k)
  out["seconds"] = time.time() - t0
  return out


def define_flags() -> None:
  """Command-line flags (defined only when run as a program)."""
  flags.DEFINE_string("data", None, "prepared synthetic dataset")
  flags.mark_flags_as_required(["data"])


def main(argv: Sequence[str]) -> None:
  del argv
  res = frame_average_baseline(flags.FLAGS.data)
  print(
    f"{res['num_train']} train / {res['num_val']} val clips, "
    f"chance {100 * res['chance']:.1f}% ({res['seconds']:.0f}s)"
  )
  for name in (
    "pixels_frame_average",
    "frame_average",
    "single_frame",
    "stacked_frames",
  ):
    r = res[name]
    print(
      f"{name}: logistic regression {100 * r['logreg']:.1f}% "
      f"(l2={r['logreg_l2']:g}), nearest centroid "
      f"{100 * r['centroid']:.1f}%"
    )


if __name__ == "__main__":
  define_flags()
  app.run(main)
