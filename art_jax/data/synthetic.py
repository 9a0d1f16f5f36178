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

This module is the renderer. The dataset's clip list and per-clip job are
`art_jax.data.datasets.synthetic` (prepared like any dataset):

  python -m art_jax.data.prepare --dataset=synthetic --out=/tmp/synth \
      --num_train=3000 --num_val=600 [--seed=0 --frames=16 --size=64]
  python -m art_jax.tools.frame_baselines --data=/tmp/synth
  python -m art_jax.data.synthetic --montage=docs/synthetic_classes.png
"""

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app, flags

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
  (`art_jax.demo.pose_pretrain`); the action classes are never drawn.
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
  (`art_jax.demo.pose_pretrain`); the action classes are never drawn.
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


def montage(
  path: str,
  seed: int = 0,
  num_frames: int = 16,
  size: int = 64,
  columns: int = 8,
  zoom: int = 2,
) -> None:
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


def define_flags() -> None:
  """Command-line flags (defined only when run as a program)."""
  flags.DEFINE_string("montage", None, "write a PNG of every class here")
  flags.DEFINE_integer("seed", 0, "montage seed")
  flags.mark_flags_as_required(["montage"])


def main(argv: Sequence[str]) -> None:
  del argv
  f = flags.FLAGS
  montage(f.montage, f.seed)
  print(f"wrote {f.montage}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
