"""Video decoding (PyAV), JPEG coding, frame sampling and augmentation.

Shapes: a clip is (T, H, W, 3) uint8 in RGB, time first. Frame indices in
this module index the frames *stored* in a record unless named `source`.
"""

import contextlib
import dataclasses
import io
import math
from collections.abc import Sequence

import av
import numpy as np
from PIL import Image

from art_jax.data import fs

try:  # libjpeg-turbo straight into numpy; about 1.5x Pillow (docs/data.md).
  import simplejpeg
except ImportError:  # pragma: no cover - exercised where it is missing.
  simplejpeg = None

MULTISCALE_SCALES = (1.0, 0.875, 0.75, 0.66)


class VideoError(Exception):
  """A video that cannot be used: missing, undecodable, truncated, short."""


# --------------------------------------------------------------------------
# JPEG.


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
  """(H, W, 3) uint8 -> JPEG bytes (4:2:0)."""
  frame = np.ascontiguousarray(frame)
  if simplejpeg is not None:
    return simplejpeg.encode_jpeg(frame, quality=quality, colorspace="RGB")
  buf = io.BytesIO()
  Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
  return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
  """JPEG bytes -> (H, W, 3) uint8; raises ValueError if it does not decode."""
  try:
    if simplejpeg is not None:
      return simplejpeg.decode_jpeg(data, colorspace="RGB")
    with Image.open(io.BytesIO(data)) as img:
      return np.asarray(img.convert("RGB"))
  except Exception as e:  # noqa: BLE001 - codecs raise assorted types.
    raise ValueError(f"JPEG does not decode: {e}") from e


# --------------------------------------------------------------------------
# Reading clips out of video files (preprocessing and the benchmark).


@dataclasses.dataclass
class DecodedClip:
  frames: list[np.ndarray]  # each (H, W, 3) uint8
  frame_index: list[int]  # source-frame index of each kept frame
  num_source_frames: int  # frames in the requested range
  fps: float


def resized_size(h: int, w: int, short_side: int) -> tuple[int, int]:
  """(h, w) with the short side scaled to `short_side` (0: unchanged)."""
  if short_side <= 0:
    return h, w
  s = short_side / min(h, w)
  return max(1, round(h * s)), max(1, round(w * s))


def subsample_indices(n: int, max_frames: int) -> np.ndarray:
  """Evenly spaced `min(n, max_frames)` indices into range(n)."""
  if max_frames <= 0 or n <= max_frames:
    return np.arange(n)
  return np.floor((np.arange(max_frames) + 0.5) * n / max_frames).astype(int)


def read_clip(
  path: str,
  *,
  start_sec: float | None = None,
  end_sec: float | None = None,
  start_frame: int | None = None,
  end_frame: int | None = None,
  short_side: int = 256,
  max_frames: int = 64,
  min_frames: int = 1,
  min_coverage: float = 0.5,
) -> DecodedClip:
  """Decodes the frames of a clip with PyAV, resized, capped at max_frames.

  The clip is [start_sec, end_sec) in seconds, or frames start_frame ..
  end_frame inclusive, or the whole video. Frames beyond `max_frames` are
  evenly subsampled. A remote `path` (gs://...) is downloaded to a
  temporary file first (`fs.local_copy`).

  Raises:
    VideoError: the file is missing or does not decode, has no video
      stream, or yields fewer than `min_frames` frames or less than
      `min_coverage` of the requested time range / of the frame count
      its header announces (a truncated file).
  """
  local = path
  with contextlib.ExitStack() as stack:
    try:
      local = stack.enter_context(fs.local_copy(path))
      container = av.open(local)
    except FileNotFoundError as e:
      raise VideoError(f"missing video {path}") from e
    except (av.error.FFmpegError, OSError, ValueError) as e:
      raise VideoError(f"cannot open {path}: {_error(e, local, path)}") from e
    stack.callback(container.close)
    return _read_open_clip(
      container,
      path,
      local,
      start_sec,
      end_sec,
      start_frame,
      end_frame,
      short_side,
      max_frames,
      min_frames,
      min_coverage,
    )


def _error(e: Exception, local: str, path: str) -> str:
  """The message of `e`, naming `path` where it names its local copy."""
  return str(e).replace(local, path) if local != path else str(e)


def _read_open_clip(
  container,
  path,
  local,
  start_sec,
  end_sec,
  start_frame,
  end_frame,
  short_side,
  max_frames,
  min_frames,
  min_coverage,
) -> DecodedClip:
  if not container.streams.video:
    raise VideoError(f"no video stream in {path}")
  stream = container.streams.video[0]
  stream.thread_type = "AUTO"
  rate = stream.average_rate or stream.guessed_rate
  fps = float(rate) if rate else 0.0
  timed = start_sec is not None or end_sec is not None
  t0 = start_sec or 0.0
  t1 = math.inf if end_sec is None else end_sec
  if timed and t0 > 1.0 and stream.time_base:
    try:  # Seek to the keyframe before the start, then decode forward.
      container.seek(
        int((t0 - 1.0) / stream.time_base), stream=stream, backward=True
      )
    except av.error.FFmpegError:
      container.seek(0)
  f0 = start_frame or 0
  f1 = math.inf if end_frame is None else end_frame
  frames, source_index = [], []
  count = 0  # frames decoded from the start of the file / range
  try:
    for frame in container.decode(stream):
      if timed:
        t = frame.time
        if t is None:
          t = count / fps if fps else 0.0
        count += 1
        if t < t0 - 1e-6:
          continue
        if t >= t1 - 1e-6:
          break
        idx = round((t - t0) * fps) if fps else len(frames)
      else:
        idx = count
        count += 1
        if idx < f0:
          continue
        if idx > f1:
          break
        idx -= f0
      h, w = resized_size(frame.height, frame.width, short_side)
      frames.append(frame.to_ndarray(width=w, height=h, format="rgb24"))
      source_index.append(idx)
  except (av.error.FFmpegError, ValueError) as e:
    if not frames:
      raise VideoError(f"cannot decode {path}: {_error(e, local, path)}") from e
    raise VideoError(
      f"decoding {path} failed after {len(frames)} frames: "
      f"{_error(e, local, path)}"
    ) from e
  n = len(frames)
  if n < max(min_frames, 1):
    raise VideoError(
      f"clip too short: {n} frames decoded, {min_frames} required "
      f"({_range_str(start_sec, end_sec, start_frame, end_frame)})"
    )
  if timed and end_sec is not None and fps:
    expected = (t1 - t0) * fps
    if n < min_coverage * expected:
      raise VideoError(
        f"clip too short: {n} frames for {t1 - t0:.2f}s at {fps:.2f} fps "
        f"(video ends before {t1:.2f}s?)"
      )
  elif not timed and end_frame is not None:
    expected = end_frame - f0 + 1
    if n < min_coverage * expected:
      raise VideoError(
        f"clip too short: {n} of frames {f0}..{end_frame} decoded"
      )
  elif not timed and stream.frames and n < min_coverage * stream.frames:
    raise VideoError(f"truncated video: {n} of {stream.frames} frames decoded")
  keep = subsample_indices(n, max_frames)
  return DecodedClip(
    frames=[frames[i] for i in keep],
    frame_index=[source_index[i] for i in keep],
    num_source_frames=n,
    fps=fps,
  )


def _range_str(start_sec, end_sec, start_frame, end_frame) -> str:
  if start_sec is not None or end_sec is not None:
    return f"{start_sec}s to {end_sec}s"
  if start_frame is not None or end_frame is not None:
    return f"frames {start_frame} to {end_frame}"
  return "whole video"


# --------------------------------------------------------------------------
# Frame sampling: which stored frames make up a T-frame clip.


def segment_indices(
  num_stored: int,
  num_frames: int,
  rng: np.random.Generator | None = None,
  clip: int = 0,
  num_clips: int = 1,
) -> np.ndarray:
  """TSN segment sampling: one frame from each of T equal segments.

  Training (rng given): a uniformly random frame per segment. Evaluation:
  the frame at fraction (clip + 0.5) / num_clips of each segment (the
  centre for one clip).

  Returns:
    (T,) int indices into the stored frames.
  """
  seg = num_stored / num_frames
  if rng is not None:
    offset = rng.uniform(size=num_frames)
  else:
    offset = np.full(num_frames, (clip + 0.5) / num_clips)
  idx = np.floor((np.arange(num_frames) + offset) * seg).astype(int)
  return np.clip(idx, 0, num_stored - 1)


def dense_indices(
  frame_index: Sequence[int],
  num_frames: int,
  frame_stride: int,
  rng: np.random.Generator | None = None,
  clip: int = 0,
  num_clips: int = 1,
) -> np.ndarray:
  """Dense sampling: T frames `frame_stride` source frames apart.

  The window starts at a random source frame in training, and at evenly
  spaced starts in evaluation (centred for one clip). Positions past the
  end repeat the last frame. `frame_stride` counts source frames; each
  position maps to the nearest stored frame (records store at most
  `max_frames` frames, evenly subsampled).

  Returns:
    (T,) int indices into the stored frames.
  """
  src = np.asarray(frame_index)
  first, last = int(src[0]), int(src[-1])
  span = (num_frames - 1) * frame_stride + 1
  slack = max(last - first + 1 - span, 0)
  if rng is not None:
    start = first + int(rng.integers(0, slack + 1))
  elif num_clips == 1:
    start = first + slack // 2
  else:
    start = first + round(clip * slack / (num_clips - 1))
  pos = np.minimum(start + np.arange(num_frames) * frame_stride, last)
  j = np.clip(np.searchsorted(src, pos), 1, len(src) - 1)
  nearer_left = (pos - src[j - 1]) <= (src[j] - pos)
  return np.where(nearer_left, j - 1, j) if len(src) > 1 else 0 * pos


# --------------------------------------------------------------------------
# Spatial boxes (x0, y0, x1, y1) in stored-frame pixels.


def multiscale_box(
  h: int,
  w: int,
  rng: np.random.Generator,
  scales: Sequence[float] = MULTISCALE_SCALES,
  max_distort: int = 1,
) -> tuple[int, int, int, int]:
  """TSN multi-scale crop: sides from `scales` x short side, random place.

  Height and width scales are drawn independently with at most
  `max_distort` steps between them in `scales`.
  """
  base = min(h, w)
  sizes = [max(1, int(base * s)) for s in scales]
  pairs = [
    (i, j)
    for i in range(len(sizes))
    for j in range(len(sizes))
    if abs(i - j) <= max_distort
  ]
  i, j = pairs[rng.integers(len(pairs))]
  ch, cw = sizes[i], sizes[j]
  y0 = int(rng.integers(0, h - ch + 1))
  x0 = int(rng.integers(0, w - cw + 1))
  return x0, y0, x0 + cw, y0 + ch


def random_resized_box(
  h: int,
  w: int,
  rng: np.random.Generator,
  area_range: Sequence[float] = (0.08, 1.0),
  aspect_range: Sequence[float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
  """Inception-style random resized crop (falls back to a centre crop)."""
  area = h * w
  log_r = np.log(aspect_range)
  for _ in range(10):
    target = area * rng.uniform(*area_range)
    ratio = math.exp(rng.uniform(*log_r))
    cw = round(math.sqrt(target * ratio))
    ch = round(math.sqrt(target / ratio))
    if 0 < cw <= w and 0 < ch <= h:
      y0 = int(rng.integers(0, h - ch + 1))
      x0 = int(rng.integers(0, w - cw + 1))
      return x0, y0, x0 + cw, y0 + ch
  s = min(h, w)
  return (w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s


def eval_boxes(h: int, w: int, num_crops: int) -> list[tuple[int, ...]]:
  """Square boxes of the short side: centre (1) or start/centre/end (3+)."""
  s = min(h, w)
  long = max(h, w)
  if num_crops == 1:
    starts = [(long - s) // 2]
  else:
    starts = [round(k * (long - s) / (num_crops - 1)) for k in range(num_crops)]
  if w >= h:
    return [(x, 0, x + s, s) for x in starts]
  return [(0, y, s, y + s) for y in starts]


def crop_resize(
  frame: np.ndarray, box: Sequence[int], size: int, flip: bool = False
) -> np.ndarray:
  """Crops `box` out of (H, W, 3) and resizes it to (size, size, 3)."""
  img = Image.fromarray(frame)
  out = np.asarray(
    img.resize((size, size), Image.Resampling.BILINEAR, box=tuple(box))
  )
  return out[:, ::-1] if flip else out


def decode_views(
  jpegs: Sequence[bytes],
  indices: Sequence[np.ndarray],
  boxes: Sequence[Sequence[int]],
  size: int,
  flip: bool = False,
) -> np.ndarray:
  """Decodes the sampled frames once and cuts every view out of them.

  Args:
    jpegs: the stored frames of a record.
    indices: one (T,) index array per temporal clip.
    boxes: spatial boxes applied to every temporal clip.
    size: output side.
    flip: mirror horizontally.

  Returns:
    (len(indices) * len(boxes), T, size, size, 3) uint8, clip-major.
  """
  cache = {}
  views = []
  for idx in indices:
    for box in boxes:
      clip = []
      for i in np.asarray(idx).tolist():
        if i not in cache:
          cache[i] = decode_jpeg(jpegs[i])
        clip.append(crop_resize(cache[i], box, size, flip))
      views.append(np.stack(clip))
  return np.stack(views)
