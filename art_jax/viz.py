"""Tracklet pictures (paper Fig. 8) and backbone class-activation maps (Fig. 7).

A tracklet grid has one row per tracklet (region query) and one column per
backbone time step t'; each cell is the input frame 2t' (the centre of the
temporal patch with temporal downsampling) overlaid with that query's
response map A_t (N x L cross-attention, spec section 5), upsampled to the
frame, coloured and alpha-blended. The CAM grid shows, for comparison, the
backbone's patch tokens projected on the predicted class's classifier
weights (ReLU, normalised per clip).
"""

import os
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
  from art_jax import reporting

LABEL_HEIGHT = 12


def _colormap(x: np.ndarray) -> np.ndarray:
  """(...) in [0, 1] -> (..., 3) uint8 with matplotlib's 'jet'."""
  import matplotlib  # noqa: PLC0415 - only where pictures are drawn

  return (matplotlib.colormaps["jet"](np.clip(x, 0, 1))[..., :3] * 255).astype(
    np.uint8
  )


def overlay(
  frame: np.ndarray, heat: np.ndarray, alpha: float = 0.5
) -> np.ndarray:
  """frame (H, W, 3) uint8, heat (gh, gw) in [0, 1] -> blended (H, W, 3)."""
  h, w = frame.shape[:2]
  up = (
    np.asarray(
      Image.fromarray((heat * 255).astype(np.uint8)).resize(
        (w, h), Image.Resampling.BILINEAR
      ),
      np.float32,
    )
    / 255.0
  )
  colour = _colormap(up).astype(np.float32)
  out = (1 - alpha) * frame.astype(np.float32) + alpha * colour
  return np.clip(out, 0, 255).astype(np.uint8)


def frames_for_steps(frames: np.ndarray, num_steps: int) -> np.ndarray:
  """The input frame shown for each backbone time step: (T', H, W, 3)."""
  stride = frames.shape[0] // num_steps
  return frames[np.arange(num_steps) * stride]


def _grid(
  rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str], scale: int
) -> np.ndarray:
  """Tiles cells (H, W, 3) into a picture with a label strip per row."""
  h, w = rows[0][0].shape[:2]
  h, w = h * scale, w * scale
  cols = max(len(r) for r in rows)
  canvas = Image.new(
    "RGB", (cols * (w + 2), len(rows) * (h + LABEL_HEIGHT + 2)), "white"
  )
  draw = ImageDraw.Draw(canvas)
  for r, (cells, label) in enumerate(zip(rows, labels, strict=True)):
    y = r * (h + LABEL_HEIGHT + 2)
    draw.text((2, y), label, fill="black")
    for c, cell in enumerate(cells):
      img = Image.fromarray(cell).resize((w, h), Image.Resampling.NEAREST)
      canvas.paste(img, (c * (w + 2), y + LABEL_HEIGHT))
  return np.asarray(canvas)


def _normalise(maps: np.ndarray) -> np.ndarray:
  lo, hi = maps.min(), maps.max()
  return (maps - lo) / max(hi - lo, 1e-8)


def tracklet_grid(
  frames: np.ndarray,
  response_maps: np.ndarray,
  grid: tuple[int, int],
  scale: int = 1,
) -> np.ndarray:
  """frames (T, H, W, 3) uint8; response_maps (T', N, L) -> picture.

  Each tracklet's maps are normalised over its whole clip, so its cells
  compare across time.
  """
  steps, queries, length = response_maps.shape
  if grid[0] * grid[1] != length:
    raise ValueError(f"grid {grid} does not hold {length} tokens")
  shown = frames_for_steps(frames, steps)
  rows = []
  for n in range(queries):
    maps = _normalise(response_maps[:, n]).reshape(steps, *grid)
    rows.append([overlay(shown[t], maps[t]) for t in range(steps)])
  return _grid(rows, [f"tracklet {n + 1}" for n in range(queries)], scale)


def cam_grid(
  frames: np.ndarray,
  tokens: np.ndarray,
  class_weight: np.ndarray,
  grid: tuple[int, int],
  label: str = "backbone CAM",
  scale: int = 1,
) -> np.ndarray:
  """frames (T, H, W, 3); tokens (T', L, C); class_weight (C,) -> picture."""
  steps = tokens.shape[0]
  cam = np.maximum(
    tokens.astype(np.float32) @ class_weight.astype(np.float32), 0.0
  )
  cam = _normalise(cam).reshape(steps, *grid)
  shown = frames_for_steps(frames, steps)
  return _grid(
    [[overlay(shown[t], cam[t]) for t in range(steps)]], [label], scale
  )


def stack_vertically(images: Sequence[np.ndarray]) -> np.ndarray:
  """Pads to the widest image and stacks (H_i, W, 3) pictures."""
  width = max(i.shape[1] for i in images)
  padded = [
    np.pad(i, ((0, 0), (0, width - i.shape[1]), (0, 0)), constant_values=255)
    for i in images
  ]
  return np.concatenate(padded, axis=0)


def clip_picture(
  frames: np.ndarray,
  response_maps: np.ndarray | None,
  tokens: np.ndarray | None,
  class_weight: np.ndarray | None,
  grid: tuple[int, int],
  title: str = "",
  scale: int = 1,
) -> np.ndarray:
  """Tracklet grid above the backbone CAM grid, with an optional title (one
  text line per line of `title`)."""
  parts = []
  if title:
    lines = title.split("\n")
    strip = Image.new(
      "RGB",
      (max(frames.shape[2] * scale * 4, 200), LABEL_HEIGHT * len(lines) + 4),
      "white",
    )
    draw = ImageDraw.Draw(strip)
    for k, line in enumerate(lines):
      draw.text((2, 2 + LABEL_HEIGHT * k), line, fill="black")
    parts.append(np.asarray(strip))
  if response_maps is not None:
    parts.append(tracklet_grid(frames, response_maps, grid, scale))
  if tokens is not None and class_weight is not None:
    parts.append(cam_grid(frames, tokens, class_weight, grid, scale=scale))
  return stack_vertically(parts)


def save_png(image: np.ndarray, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(image).save(path)
  return path


def write_tracklet_pictures(
  explained: Mapping[str, np.ndarray],
  frames: np.ndarray,
  class_weights: np.ndarray,
  class_names: Sequence[str] | None,
  grid: tuple[int, int],
  out_dir: str,
  step: int,
  writer: "reporting.MetricWriter | None" = None,
  max_clips: int = 4,
  labels: np.ndarray | None = None,
) -> list[str]:
  """Tracklet + CAM pictures of `max_clips` clips of a batch (PNG + TB),
  titled with the prediction and, given `labels` (B,), the true class.

  explained: `probs` (B, K), `tokens` (B, T', L, C) and, unless the model
  is the baseline, `response_maps` (B, T', N, L); frames (B, T, H, W, 3);
  class_weights (C, K). The clips are spread evenly over the batch (first
  and last included), as evaluation sets are often sorted by class; files
  and TensorBoard tags carry the clip's index in the batch
  (`step{step}_clip{i}.png`).
  """
  paths = []
  maps = explained.get("response_maps")  # absent in the baseline
  name_of = lambda k: class_names[k] if class_names else str(k)
  b = frames.shape[0]
  picks = np.linspace(0, b - 1, min(max_clips, b)).round().astype(int)
  for i in np.unique(picks):
    probs = explained["probs"][i]
    pred = int(np.argmax(probs))
    title = f"pred: {name_of(pred)} ({probs[pred]:.2f})"
    if labels is not None:
      title = f"true: {name_of(int(labels[i]))}\n{title}"
    image = clip_picture(
      frames[i],
      None if maps is None else maps[i],
      explained["tokens"][i],
      class_weights[:, pred],
      grid,
      title=title,
      scale=2,
    )
    paths.append(
      save_png(image, os.path.join(out_dir, f"step{step}_clip{i}.png"))
    )
    if writer is not None:
      writer.image(step, f"tracklets/clip{i}", image)
  return paths


# --- confusion matrix --------------------------------------------------------

LABEL_WRAP = 40  # characters per line of a class name on the axes


def confusion_figure(
  confusion: np.ndarray,
  names: Sequence[str],
  title: str = "",
  *,
  max_labels: int = 100,
  max_values: int = 30,
) -> Any:
  """The row-normalised confusion matrix (K, K) (rows: true class) as a
  matplotlib Figure.

  Class names are shown in full (wrapped at LABEL_WRAP characters, the
  margins sized to them) for up to `max_labels` classes; each cell prints
  its rate for up to `max_values` classes, larger matrices get a colour
  bar instead.
  """
  import matplotlib  # noqa: PLC0415 - plotting only where reports are written

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  k = confusion.shape[0]
  rows = confusion.sum(1, keepdims=True)
  norm = np.divide(confusion, np.maximum(rows, 1))
  labels = [
    textwrap.fill(n, LABEL_WRAP, break_on_hyphens=False)
    for n in (names if k <= max_labels else ())
  ]
  cell = 0.45 if k <= max_values else 0.16  # inches per class
  chars = max((len(line) for n in labels for line in n.split("\n")), default=0)
  margin = 0.8 + 0.055 * chars  # room for the longest label line (7 pt)
  side = k * cell
  bar = 0.0 if k <= max_values else 1.0
  fig, ax = plt.subplots(
    figsize=(min(40.0, margin + side + bar + 0.4), min(40.0, margin + side))
  )
  image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(title)
  if labels:
    ax.set_xticks(range(k), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(k), labels, fontsize=7)
  if k <= max_values:
    for i in range(k):
      for j in range(k):
        ax.text(
          j,
          i,
          f"{norm[i, j]:.2f}",
          ha="center",
          va="center",
          fontsize=6,
          color="white" if norm[i, j] > 0.5 else "black",
        )
  else:
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="rate")
  fig.tight_layout()
  return fig


def plot_confusion(
  confusion: np.ndarray, names: Sequence[str], path: str, title: str = ""
) -> str:
  """Writes `confusion_figure` as a PNG; -> path."""
  fig = confusion_figure(confusion, names, title)
  import matplotlib.pyplot as plt  # noqa: PLC0415 - after the Agg backend

  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
