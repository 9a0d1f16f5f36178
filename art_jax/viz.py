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
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

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
