r"""Synthetic fine-grained actions: a stick figure and local limb motions.

Every clip shows one articulated figure (head, torso, two-segment arms and
legs) doing the same base movement, a squat with an arm raise. Classes
differ only in a small local region: which limb adds a local motion

  flick   the forearm (or lower leg: "kick") snaps up and back, once or twice
  circle  the forearm turns one full turn around the elbow
  hold    the forearm is held pointing straight up

and, for the "A then B" classes, in the order of two such motions, so that
the reversed pair has exactly the same frame average. "Left" and "right"
are the figure's own: it faces the camera, so its left arm is on the image
right. Horizontal flips change the label (`flip_safe` False).

Nuisances that never change the class: position, scale, limb colours,
background colour and texture, pixel noise, camera shake (integer per-frame
shifts), speed and phase of the base movement, timing, speed and direction
of the local motions. Clips are deterministic per seed and classes rendered
with the same seed share every nuisance (the random stream does not depend
on the class).

  python -m art_jax.data.prepare --dataset=synthetic --out=/tmp/synth \
      --num_train=3000 --num_val=600 [--seed=0 --frames=16 --size=64]
  python -m art_jax.data.synthetic --data=/tmp/synth   # frame baselines
  python -m art_jax.data.synthetic --montage=docs/synthetic_classes.png
"""

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app, flags
from array_record.python import array_record_module

from art_jax.data import record, video
from art_jax.data.datasets import common

VARIANTS = {"default": ("train", "val")}
DEFAULT_VARIANT = "default"
FLIP_SAFE = False  # "left"/"right" classes.
SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}

# (name, ((limb, motion), ...)): one or two local motions, in time order.
CLASSES = (
  ("left forearm flick", (("left_arm", "flick"),)),
  ("right forearm flick", (("right_arm", "flick"),)),
  ("left forearm circle", (("left_arm", "circle"),)),
  ("right forearm circle", (("right_arm", "circle"),)),
  ("left forearm hold", (("left_arm", "hold"),)),
  ("right forearm hold", (("right_arm", "hold"),)),
  ("left lower-leg kick", (("left_leg", "flick"),)),
  ("right lower-leg kick", (("right_leg", "flick"),)),
  (
    "left forearm flick then right forearm circle",
    (("left_arm", "flick"), ("right_arm", "circle")),
  ),
  (
    "right forearm circle then left forearm flick",
    (("right_arm", "circle"), ("left_arm", "flick")),
  ),
  (
    "right forearm flick then left lower-leg kick",
    (("right_arm", "flick"), ("left_leg", "flick")),
  ),
  (
    "left lower-leg kick then right forearm flick",
    (("left_leg", "flick"), ("right_arm", "flick")),
  ),
)
CLASS_NAMES = [name for name, _ in CLASSES]
NUM_CLASSES = len(CLASSES)

# Body proportions in figure heights (ground to head top ~1).
HEAD_R, NECK_TO_HEAD, TORSO = 0.075, 0.10, 0.30
SHOULDER, HIP = 0.075, 0.055  # half widths
UPPER_ARM, FOREARM, THIGH, SHIN = 0.17, 0.19, 0.25, 0.25
LIMB_R, TORSO_R = 0.035, 0.045  # segment radii
LIMBS = ("left_arm", "right_arm", "left_leg", "right_leg")
MOTIONS = ("flick", "circle", "hold")  # the local motions `_pose` knows
# +1: image right (the figure's left), -1: image left.
SIDE = {"left_arm": 1.0, "right_arm": -1.0, "left_leg": 1.0, "right_leg": -1.0}


def _unit(angle: np.ndarray, side: float) -> np.ndarray:
  """Direction at `angle` (radians) from straight down, outward to `side`."""
  return np.stack([side * np.sin(angle), -np.cos(angle)], -1)


def _window(t: np.ndarray, start: float, length: float) -> np.ndarray:
  """Local time u in [0, 1] inside the window, NaN outside. (T,) -> (T,)."""
  u = (t - start) / length
  return np.where((u >= 0) & (u <= 1), u, np.nan)


def _pose(
  labels: Sequence[tuple[str, str]], t: np.ndarray, nz: dict[str, Any]
) -> dict[str, np.ndarray]:
  """Joint positions in figure units (y up, feet at 0): name -> (T, 2)."""
  squat = 0.5 - 0.5 * np.cos(2 * np.pi * (nz["phase"] + nz["speed"] * t))
  thigh = np.deg2rad(10 + 50 * squat)
  shin = np.deg2rad(10 - 40 * squat)
  hip_y = THIGH * np.cos(thigh) + SHIN * np.cos(shin)
  angles = {}
  for limb in LIMBS:
    if limb.endswith("arm"):
      upper = np.deg2rad(20 + 70 * squat)  # arms rise with the squat
      angles[limb] = [upper, upper + np.deg2rad(25) * squat]
    else:
      angles[limb] = [thigh, shin]
  # Local motions, each over its own window of the clip.
  for (limb, motion), (start, length), k in zip(
    labels, nz["windows"], range(2)
  ):
    u = _window(t, start, length)
    inside = ~np.isnan(u)
    u = np.nan_to_num(u)
    lower = angles[limb][1]
    if motion == "flick":
      amp = np.deg2rad(nz["flick_amp"][k])
      off = amp * (0.5 - 0.5 * np.cos(2 * np.pi * nz["flicks"][k] * u))
      angles[limb][1] = np.where(inside, lower + off, lower)
    elif motion == "circle":
      off = nz["circle_dir"][k] * 2 * np.pi * u
      angles[limb][1] = np.where(inside, lower + off, lower)
    elif motion == "hold":
      ramp = np.clip(np.minimum(u, 1 - u) / 0.2, 0, 1)
      ramp = np.where(inside, ramp * ramp * (3 - 2 * ramp), 0)
      angles[limb][1] = lower + ramp * (np.pi - lower)  # straight up
    else:
      raise ValueError(f"unknown motion {motion!r}")
  return _skeleton(hip_y, angles)


def _skeleton(
  hip_y: np.ndarray, angles: dict[str, list[np.ndarray]]
) -> dict[str, np.ndarray]:
  """Joint positions from the hip height and two angles per limb.

  hip_y (T,) in figure units; angles[limb] = [upper, lower] (T,) radians
  from straight down, outward. -> {"hip"|"neck"|"head": (T, 2), limb:
  (T, 3, 2) root, middle and end joint}.
  """
  hip = np.stack([np.zeros_like(hip_y), hip_y], -1)
  neck = hip + np.array([0.0, TORSO])
  shoulder_c = neck - np.array([0.0, 0.02])
  joints = {"hip": hip, "neck": neck, "head": neck + [0, NECK_TO_HEAD]}
  for limb in LIMBS:
    side = SIDE[limb]
    if limb.endswith("arm"):
      root = shoulder_c + [side * SHOULDER, 0.0]
      len1, len2 = UPPER_ARM, FOREARM
    else:
      root = hip + [side * HIP, 0.0]
      len1, len2 = THIGH, SHIN
    mid = root + len1 * _unit(angles[limb][0], side)
    joints[limb] = np.stack(
      [root, mid, mid + len2 * _unit(angles[limb][1], side)], 1
    )
  return joints


JOINT_ORDER = ("hip", "neck", "head") + tuple(
  f"{limb}_{part}" for limb in LIMBS for part in ("root", "middle", "end")
)


def joint_array(joints: dict[str, np.ndarray]) -> np.ndarray:
  """`_skeleton`'s dict -> (T, 15, 2) in JOINT_ORDER (figure units)."""
  parts = [joints[k][:, None] for k in ("hip", "neck", "head")]
  parts += [joints[limb] for limb in LIMBS]
  return np.concatenate(parts, axis=1)


def random_pose(
  rng: np.random.Generator, num_frames: int = 1
) -> dict[str, np.ndarray]:
  """Independent random poses, wider than any class's: (T,) frames.

  Squat depth, both angles of every limb drawn uniformly (arms anywhere
  from down to up with the forearm at any angle; legs from straight to a
  high kick). Used to pretrain the demo backbone on stills
  (`art_jax.pose_pretrain`); the action classes are never drawn.
  -> joints as `_skeleton`.
  """

  def u(lo: float, hi: float) -> np.ndarray:
    return rng.uniform(lo, hi, size=num_frames)

  squat = u(0.0, 1.0)
  angles = {}
  for limb in LIMBS:
    if limb.endswith("arm"):
      upper = np.deg2rad(u(0, 180))
      angles[limb] = [upper, upper + np.deg2rad(u(-150, 180))]
    else:
      thigh = np.deg2rad(10 + 50 * squat + u(-10, 80))
      angles[limb] = [thigh, thigh + np.deg2rad(u(-90, 30))]
  thigh = np.deg2rad(10 + 50 * squat)
  shin = np.deg2rad(10 - 40 * squat)
  return _skeleton(THIGH * np.cos(thigh) + SHIN * np.cos(shin), angles)


def random_motion(
  rng: np.random.Generator, t: np.ndarray
) -> dict[str, np.ndarray]:
  """A smooth random movement of the whole figure at times t (T,) in [0, 1].

  The squat follows a random cosine; every limb's upper angle a random slow
  sway around a random angle; every lower angle (forearm, lower leg) starts
  at a random angle and, over a random window of the clip, stays, swings
  (a random number of 0.5-2.5 swings of random size) or turns (by 180-400
  degrees either way), holding where the window ends. Angle ranges are
  `random_pose`'s. Used to pretrain the demo backbone on motion
  (`art_jax.pose_pretrain`); the action classes are never drawn.
  -> joints as `_skeleton`.
  """
  deg = np.deg2rad
  phase, speed, depth = rng.uniform(), rng.uniform(0.5, 1.5), rng.uniform()
  squat = depth * (0.5 - 0.5 * np.cos(2 * np.pi * (phase + speed * t)))

  def sway(max_amp: float) -> np.ndarray:
    amp, freq, ph = rng.uniform(0, max_amp), rng.uniform(0, 1.5), rng.uniform()
    return deg(amp) * np.sin(2 * np.pi * (freq * t + ph))

  def local() -> np.ndarray:
    start, length = rng.uniform(0, 0.5), rng.uniform(0.3, 0.7)
    u = np.clip((t - start) / length, 0, 1)
    kind = rng.integers(3)
    if kind == 1:  # swing out and back
      amp = rng.choice([-1.0, 1.0]) * rng.uniform(40, 120)
      return deg(amp) * (
        0.5 - 0.5 * np.cos(2 * np.pi * rng.uniform(0.5, 2.5) * u)
      )
    if kind == 2:  # turn
      return rng.choice([-1.0, 1.0]) * deg(rng.uniform(180, 400)) * u
    return np.zeros_like(t)

  angles = {}
  for limb in LIMBS:
    if limb.endswith("arm"):
      upper = deg(rng.uniform(0, 180)) + sway(40)
      lower = upper + deg(rng.uniform(-150, 180)) + local()
    else:
      upper = deg(10 + 50 * squat + rng.uniform(-10, 60)) + sway(20)
      lower = upper + deg(rng.uniform(-90, 30)) + local()
    angles[limb] = [upper, lower]
  thigh = np.deg2rad(10 + 50 * squat)
  shin = np.deg2rad(10 - 40 * squat)
  return _skeleton(THIGH * np.cos(thigh) + SHIN * np.cos(shin), angles)


def sample_nuisance(
  rng: np.random.Generator,
  num_frames: int,
  size: int,
  difficulty: float = 1.0,
) -> dict[str, Any]:
  """Draws every nuisance, in a fixed order independent of the class.

  `difficulty` scales the nuisances around their middle (1: the full
  dataset; 0: centred figure of mean size, flat grey background, grey
  figure, no noise or shake, base movement at 1 cycle per clip). The random
  stream is the same for every difficulty; the local motions are never
  scaled.
  """
  d = float(difficulty)

  def shrink(x: float, mid: float) -> float:  # exact at d == 1
    return x if d == 1.0 else mid + d * (x - mid)

  fig_h = shrink(rng.uniform(0.62, 0.8), 0.71) * size
  nz = {
    "fig_h": fig_h,
    "cx": size / 2 + d * rng.uniform(-0.09, 0.09) * size,
    "ground": size / 2 + 0.48 * fig_h + d * rng.uniform(-0.05, 0.05) * size,
    "phase": rng.uniform(),
    "speed": shrink(rng.uniform(0.6, 1.4), 1.0),  # base cycles per clip
    "flicks": rng.integers(1, 3, size=2),
    "flick_amp": rng.uniform(80, 110, size=2),
    "circle_dir": rng.choice([-1.0, 1.0], size=2),
    "shake": np.round(
      d * rng.normal(0, 0.6 * size / 64, size=(num_frames, 2))
    ).clip(-2, 2),
  }
  single = (rng.uniform(0.05, 0.3), rng.uniform(0.5, 0.65))
  first = (rng.uniform(0.02, 0.08), rng.uniform(0.36, 0.42))
  gap, second_len = rng.uniform(0.03, 0.07), rng.uniform(0.36, 0.42)
  second = (first[0] + first[1] + gap, second_len)
  nz["single"], nz["pair"] = [single], [first, second]
  # Background: a smooth colour field, a grating and pixel noise.
  m = 4  # margin for camera shake
  n = size + 2 * m
  # A darker background than the figure, always (colours below): a clip
  # set where half the figures are dark on light kept the from-scratch demo
  # model at chance (docs/demo.md).
  base = rng.uniform(0.05, 0.45, size=3)
  if d != 1.0:
    base = 0.25 + d * (base - 0.25)
  coarse = d * rng.uniform(-0.18, 0.18, size=(5, 5, 3))
  idx = np.linspace(0, 4, n)
  i0 = np.minimum(idx.astype(int), 3)
  f = (idx - i0)[:, None, None]
  rows = coarse[i0] * (1 - f) + coarse[i0 + 1] * f  # (n, 5, 3)
  f = (idx - i0)[None, :, None]
  field = rows[:, i0] * (1 - f) + rows[:, i0 + 1] * f  # (n, n, 3)
  theta, freq = rng.uniform(0, np.pi), rng.uniform(0.08, 0.3)
  yy, xx = np.mgrid[0:n, 0:n]
  grating = np.sin(
    2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta))
    + rng.uniform(0, 2 * np.pi)
  )
  nz["background"] = np.clip(
    base + field + d * rng.uniform(0, 0.08) * grating[..., None], 0, 1
  ).astype(np.float32)
  nz["noise"] = d * rng.uniform(0.01, 0.05)
  # Colours: body, then the four limbs, each lighter than the background.
  colours = rng.uniform(0, 1, size=(5, 3))
  if d != 1.0:
    colours = 0.5 + d * (colours - 0.5)
  nz["colours"] = (0.55 + 0.45 * colours).astype(np.float32)
  return nz


def render(
  label: int,
  seed: int | Sequence[int],
  num_frames: int = 16,
  size: int = 64,
  difficulty: float = 1.0,
) -> np.ndarray:
  """Renders one clip of class `label`: uint8 (T, size, size, 3).

  `difficulty` scales the nuisances (`sample_nuisance`); 1 is the full
  dataset.
  """
  return render_events(
    CLASSES[label][1],
    np.random.default_rng(seed),
    np.linspace(0, 1, num_frames),
    size,
    difficulty,
  )


def render_events(
  events: Sequence[tuple[str, str]],
  rng: np.random.Generator,
  t: np.ndarray,
  size: int = 64,
  difficulty: float = 1.0,
) -> np.ndarray:
  """Renders one or two local motions (limb, motion) in time order, at
  times t (T,) in [0, 1], with nuisances drawn from `rng`.

  `render` is this with a class's events and evenly spaced times; any limb
  of LIMBS and any motion `_pose` knows may be given (a "flick" of a leg is
  a kick). Timing follows the classes' windows (`sample_nuisance`). ->
  uint8 (T, size, size, 3).
  """
  if not 1 <= len(events) <= 2:
    raise ValueError(f"one or two events, got {len(events)}")
  nz = sample_nuisance(rng, len(t), size, difficulty)
  nz["windows"] = nz["single"] if len(events) == 1 else nz["pair"]
  return paint(_pose(events, t, nz), nz, rng, size)


def to_pixels(points: np.ndarray, nz: dict[str, Any]) -> np.ndarray:
  """Figure units (T, S, 2) -> image pixels (x right, y down), shaken by
  the first T rows of the camera shake."""
  s = nz["fig_h"]
  shake = nz["shake"][: points.shape[-3], None, :]  # (T, 1, 2)
  return (
    np.stack(
      [nz["cx"] + s * points[..., 0], nz["ground"] - s * points[..., 1]], -1
    )
    + shake
  )


def paint(
  j: dict[str, np.ndarray],
  nz: dict[str, Any],
  rng: np.random.Generator,
  size: int,
) -> np.ndarray:
  """Paints joints (`_skeleton`'s dict, T frames) over the nuisances.

  Draws the pixel noise from `rng`. -> uint8 (T, size, size, 3).
  """
  num_frames = len(j["hip"])
  # Segments (T, S, 2) in pixels, their radii and colour groups.
  starts, ends, radii, groups = [], [], [], []

  def seg(a, b, r, g):
    starts.append(a)
    ends.append(b)
    radii.append(r)
    groups.append(g)

  for g, limb in enumerate(("left_leg", "right_leg"), 3):
    seg(j[limb][:, 0], j[limb][:, 1], LIMB_R, g)
    seg(j[limb][:, 1], j[limb][:, 2], LIMB_R, g)
  hips = j["hip"] + [HIP, 0.0], j["hip"] - [HIP, 0.0]
  shoulders = j["left_arm"][:, 0], j["right_arm"][:, 0]
  seg(*hips, TORSO_R, 0)
  seg(j["hip"], j["neck"], TORSO_R, 0)
  seg(*shoulders, TORSO_R, 0)
  seg(j["head"], j["head"], HEAD_R, 0)
  for g, limb in enumerate(("left_arm", "right_arm"), 1):
    seg(j[limb][:, 0], j[limb][:, 1], LIMB_R, g)
    seg(j[limb][:, 1], j[limb][:, 2], LIMB_R, g)

  def to_px(p):
    return to_pixels(np.stack(p, 1), nz)  # (T, S, 2)

  a, b = to_px(starts).astype(np.float32), to_px(ends).astype(np.float32)
  radii = np.array(radii, np.float32) * nz["fig_h"]
  groups = np.array(groups)
  # Background with integer shake and pixel noise.
  m = 4
  bg = nz["background"]
  img = np.stack(
    [
      bg[m - int(y) : m - int(y) + size, m - int(x) : m - int(x) + size]
      for x, y in nz["shake"][:num_frames]
    ]
  )
  # Luminance noise: a third of the cost of per-channel noise.
  img += nz["noise"] * rng.standard_normal(
    (num_frames, size, size, 1), dtype=np.float32
  )
  for g in (3, 4, 0, 1, 2):  # legs, body, arms on top
    sel = groups == g
    _draw(img, a[:, sel], b[:, sel], radii[sel], nz["colours"][g])
  img *= 255
  img += 0.5
  return np.clip(img, 0, 255, out=img).astype(np.uint8)


def _draw(
  img: np.ndarray,
  a: np.ndarray,
  b: np.ndarray,
  r: np.ndarray,
  colour: np.ndarray,
):
  """Paints the union of thick segments a-b into img, anti-aliased.

  Args:
    img: float32 (T, H, W, 3), painted in place.
    a, b: float32 (T, S, 2) end points (x, y) in pixels.
    r: float32 (S,) radii in pixels.
    colour: (3,) RGB in [0, 1].
  """
  # Only the box around the segments in all frames: ~10x less work.
  h, w = img.shape[1:3]
  lo = np.floor(np.minimum(a, b).min((0, 1)) - r.max() - 1).astype(int)
  hi = np.ceil(np.maximum(a, b).max((0, 1)) + r.max() + 2).astype(int)
  x0, y0 = np.maximum(lo, 0)
  x1, y1 = min(hi[0], w), min(hi[1], h)
  if x0 >= x1 or y0 >= y1:
    return
  ab = (b - a)[..., None, None]  # (T, S, 2, 1, 1)
  px = (np.arange(x0, x1, dtype=np.float32) + 0.5) - a[..., 0, None, None]
  py = (np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5) - a[
    ..., 1, None, None
  ]  # px (T, S, 1, w'), py (T, S, h', 1)
  dx, dy = ab[:, :, 0], ab[:, :, 1]
  u = np.clip((px * dx + py * dy) / np.maximum(dx * dx + dy * dy, 1e-6), 0, 1)
  d = np.sqrt((px - u * dx) ** 2 + (py - u * dy) ** 2)
  alpha = np.clip(r[:, None, None] + 0.5 - d, 0, 1).max(1)[..., None]
  box = img[:, y0:y1, x0:x1]
  box += alpha * (colour - box)


def clip_seed(seed: int, split: str, index: int) -> list[int]:
  """The render seed of clip `index` of `split`."""
  return [seed, SPLIT_INDEX[split], index]


def read(
  annotations: str | None,
  videos: str | None,
  split: str,
  variant: str = DEFAULT_VARIANT,
  *,
  num_clips: dict[str, int],
  seed: int = 0,
  difficulty: float = 1.0,
) -> common.Annotations:
  """The prepare job's clip list: balanced labels, one seed per clip.

  The seed (and a difficulty other than 1) is in the clip id, so a re-run
  with another --seed or --difficulty redoes the shards; frames and size
  come in through `prepare.Params`.
  """
  del annotations, videos
  common.check_split(split, VARIANTS[variant], "synthetic")
  n = num_clips[split]
  difficulty = float(difficulty)
  tag = "" if difficulty == 1.0 else f"_d{difficulty:g}"
  meta = {} if difficulty == 1.0 else {"difficulty": difficulty}
  clips = [
    common.ClipTask(
      f"s{seed}{tag}_{split}_{i:06d}",
      i % NUM_CLASSES,
      None,
      meta={"seed": clip_seed(seed, split, i), **meta},
    )
    for i in range(n)
  ]
  extra = {"synthetic_seed": seed, "synthetic_difficulty": difficulty}
  return common.Annotations(clips, list(CLASS_NAMES), extra=extra)


def process_clip(task: common.ClipTask, params: Any) -> tuple[bytes, None]:
  """Renders and JPEG-encodes one clip (prepare's per-clip function).

  `params` is a `prepare.Params`: short_side is the frame size and
  max_frames the number of frames.
  """
  t, size = params.max_frames, params.short_side
  frames = render(
    task.label, task.meta["seed"], t, size, task.meta.get("difficulty", 1.0)
  )
  data = record.encode(
    record.Clip(
      id=task.id,
      label=task.label,
      frames=[video.encode_jpeg(f, params.jpeg_quality) for f in frames],
      frame_index=list(range(t)),
      num_source_frames=t,
      fps=float(t),  # one base-movement cycle lasts about a second
      height=size,
      width=size,
      meta=task.meta,
    )
  )
  return data, None


def build_synthetic(
  out_dir: str,
  num_train: int,
  num_val: int,
  seed: int = 0,
  *,
  num_frames: int = 16,
  size: int = 64,
  jpeg_quality: int = 90,
  clips_per_shard: int = 512,
  workers: int = 1,
  difficulty: float = 1.0,
) -> dict[str, int]:
  """Writes the train and val splits to `out_dir` unless already there.

  Goes through `prepare.prepare_split`, so shards, metadata and resume
  markers are those of the real datasets; finished shards with the same
  clips and parameters are skipped.

  Returns:
    {split: number of clips}.
  """
  from art_jax.data import prepare  # noqa: PLC0415 - prepare imports us.

  params = prepare.Params(
    short_side=size,
    jpeg_quality=jpeg_quality,
    max_frames=num_frames,
    min_frames=num_frames,
  )
  counts = {}
  for split, n in (("train", num_train), ("val", num_val)):
    s = prepare.prepare_split(
      "synthetic",
      DEFAULT_VARIANT,
      split,
      videos=None,
      annotations=None,
      out=out_dir,
      params=params,
      clips_per_shard=clips_per_shard,
      workers=workers,
      read_options={
        "num_clips": {"train": num_train, "val": num_val},
        "seed": seed,
        "difficulty": difficulty,
      },
    )
    if s.num_clips != n:
      raise RuntimeError(f"{out_dir}/{split}: {s.num_clips} of {n} clips")
    counts[split] = s.num_clips
  return counts


# --- Baselines without temporal order --------------------------------------


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


def montage(
  path: str,
  seed: int = 0,
  num_frames: int = 16,
  size: int = 64,
  columns: int = 8,
  zoom: int = 2,
):
  """Writes a PNG grid: one row per class (same seed), `columns` frames."""
  from PIL import Image, ImageDraw  # noqa: PLC0415

  cell = size * zoom
  label_w = 330
  pad = 2
  img = Image.new(
    "RGB",
    (label_w + columns * (cell + pad), NUM_CLASSES * (cell + pad)),
    "white",
  )
  draw = ImageDraw.Draw(img)
  cols = np.linspace(0, num_frames - 1, columns).round().astype(int)
  for c, name in enumerate(CLASS_NAMES):
    clip = render(c, seed, num_frames, size)
    y = c * (cell + pad)
    draw.text((4, y + cell // 2 - 6), f"{c}: {name}", fill="black")
    for k, f in enumerate(cols):
      frame = Image.fromarray(clip[f]).resize((cell, cell), Image.NEAREST)
      img.paste(frame, (label_w + k * (cell + pad), y))
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  img.save(path)


def define_flags():
  flags.DEFINE_string("data", None, "prepared synthetic dataset: baselines")
  flags.DEFINE_string("montage", None, "write a PNG of every class here")
  flags.DEFINE_integer("seed", 0, "montage seed")


def main(argv: Sequence[str]):
  del argv
  f = flags.FLAGS
  if f.montage:
    montage(f.montage, f.seed)
    print(f"wrote {f.montage}")
  if f.data:
    res = frame_average_baseline(f.data)
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
