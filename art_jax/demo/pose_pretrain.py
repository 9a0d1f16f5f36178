r"""Pose pretraining on synthetic stills: the demo backbone's stand-in for CLIP.

Real ART runs start the backbone from CLIP or UniFormerV2 weights. Nothing
can be downloaded for the demo, and a from-scratch UniFormerV2 learns the
synthetic limb motions slowly (docs/demo.md), so the demo starts
its backbone from weights made here on first use (~2.5 min on 2 CPU cores):
the same UniFormerV2 (the demo's config) regresses the 2-D image positions
of the 15 joints of the synthetic figure (`synthetic.JOINT_ORDER`) from ONE
rendered frame in a random pose (`synthetic.random_pose`: wider than any
class's pose, the action classes are never drawn, no labels are used).

Like CLIP's, these weights have only ever seen still images. The still is
fed as a 2-frame video of one repeated frame, so the patch embedding's
time taps that read real frames are trained; the tap that only read the
zero padding is cleared after training (`clear_padding_taps`). On a still
video the saved backbone computes exactly what was trained; on a real
video each time step reads its own two frames (an inflated 2-D CLIP
kernel reads one of them, the centre). The file is a params file
(`weights.save_params_file`) that the demo loads through
`config.init_from.path`, the code path that loads converted CLIP weights.
The regression head is re-initialised there (another shape); everything
else is loaded.

`config.init_from.pose_pretrain.clips=True` pretrains on clips of random
motion instead (`synthetic.random_motion`; data.num_frames frames, the
joints of every frame regressed from the one global feature), so that the
temporal parts (patch-embedding time taps, Local MHRA, DPE, the global
decoder) start trained too. On the demo it read 69.4% against the stills'
75.6% (one seed each), so stills stay the default.

  python -m art_jax.demo.pose_pretrain --config=configs/demo.py [--out=FILE]
      [--config.init_from.pose_pretrain.steps=...]
"""

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags, logging
from ml_collections import config_flags

from art_jax import config_lib, weights
from art_jax.data import synthetic
from art_jax.models import build, uniformerv2

NUM_TARGETS = 2 * len(synthetic.JOINT_ORDER)  # per frame


def _render(
  stream: int,
  seed: int,
  count: int,
  size: int,
  frames: int,
  difficulty: float,
  draw_joints,
) -> tuple[np.ndarray, np.ndarray]:
  """`count` examples of `frames` frames: example i from the random stream
  [seed, stream, i], nuisances, then `draw_joints(rng)`, then the pixels.
  -> (uint8 (count, frames, size, size, 3), float32 (count, frames *
  NUM_TARGETS))."""
  images = np.empty((count, frames, size, size, 3), np.uint8)
  targets = np.empty((count, frames * NUM_TARGETS), np.float32)
  for i in range(count):
    rng = np.random.default_rng([seed, stream, i])
    nz = synthetic.sample_nuisance(rng, frames, size, difficulty)
    joints = draw_joints(rng)
    images[i] = synthetic.paint(joints, nz, rng, size)
    pixels = synthetic.to_pixels(synthetic.joint_array(joints), nz)
    targets[i] = (2.0 * pixels / size - 1.0).reshape(-1)
  return images, targets


def render_stills(
  seed: int, count: int, size: int, difficulty: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
  """`count` random-pose stills and their joint targets.

  Still i is drawn from the random stream [seed, 7, i] (the 7 keeps it apart
  from the clips' [seed, split, i]) with the nuisances of `difficulty`.

  Returns:
    (uint8 (count, size, size, 3), float32 (count, NUM_TARGETS)): targets
    are (x, y) per joint in `synthetic.JOINT_ORDER`, in [-1, 1] across the
    frame (x right, y down; raised limbs may leave the frame).
  """
  images, targets = _render(
    7, seed, count, size, 1, difficulty, synthetic.random_pose
  )
  return images[:, 0], targets


def render_clips(
  seed: int, count: int, size: int, frames: int, difficulty: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
  """`count` clips of random motion (`synthetic.random_motion`), `frames`
  evenly spaced frames over the clip, and their joint targets.

  Clip i is drawn from the random stream [seed, 8, i], with the nuisances
  of `difficulty` (camera shake per frame).

  Returns:
    (uint8 (count, frames, size, size, 3), float32 (count, frames *
    NUM_TARGETS)): per frame, (x, y) per joint as `render_stills`.
  """
  t = np.linspace(0.0, 1.0, frames)
  return _render(
    8,
    seed,
    count,
    size,
    frames,
    difficulty,
    lambda rng: synthetic.random_motion(rng, t),
  )


def clip_frames(config: ml_collections.ConfigDict) -> int:
  """Frames per pretraining example: data.num_frames for clips, else 0."""
  if config.init_from.pose_pretrain.clips:
    return config.data.num_frames
  return 0


def backbone_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The training config's UniFormerV2 fields with a joint-regression head
  (every joint of every frame for clips)."""
  kw = build.backbone_kwargs(config)
  kw.update(
    num_classes=NUM_TARGETS * max(1, clip_frames(config)),
    cls_dropout=0.0,
    remat_policy="none",
  )
  return kw


def shuffled_batches(
  n: int, batch_size: int, seed: int
) -> Iterator[np.ndarray]:
  """Endless sorted index batches (batch_size,) of range(n): a fresh
  permutation per epoch (seeded), the tail shorter than a batch dropped."""
  order = np.random.default_rng(seed).permutation
  perm, pos = order(n), 0
  while True:
    if pos + batch_size > len(perm):
      perm, pos = order(n), 0
    yield np.sort(perm[pos : pos + batch_size])
    pos += batch_size


def clear_padding_taps(kernel: np.ndarray, frames: int = 2) -> np.ndarray:
  """Zeroes the time taps that only ever read padding in pretraining.

  kernel (kt, p, p, 3, C), stride 2 and padding kt // 2 in time. The one
  output step of a `frames`-frame still reads taps kt//2 .. kt//2+frames-1
  (all the same frame); the taps before them read zero padding and were
  never trained. -> the kernel with those zeroed: the same output on any
  still, and on a video each time step reads its own two frames with the
  trained taps (CLIP's centre inflation would read one of the two).
  """
  centre = kernel.shape[0] // 2
  cleared = np.array(kernel, copy=True)
  cleared[:centre] = 0
  cleared[centre + frames :] = 0
  return cleared


def _still_video(images: jax.Array, frames: int) -> jax.Array:
  """uint8 (B, H, W, 3) -> CLIP-normalised float32 (B, frames, H, W, 3),
  normalised as the trainer does (`build.normalize_video`)."""
  x = build.normalize_video(images[:, None], jnp.float32)
  return jnp.repeat(x, frames, axis=1)


def mean_joint_error(
  pred: jax.Array, target: jax.Array, size: int
) -> jax.Array:
  """Mean Euclidean joint error in pixels. (B, 2J) x 2 -> ()."""
  d = (pred - target).reshape(pred.shape[0], -1, 2) * (size / 2.0)
  return jnp.mean(jnp.sqrt(jnp.sum(d * d, axis=-1)))


def pretrain(
  config: ml_collections.ConfigDict, out_path: str
) -> dict[str, float]:
  """Trains the pose regressor of `config.init_from.pose_pretrain`, writes
  `out_path` (a params file, atomically) and returns its summary.

  Summary: {'steps', 'seconds', 'train_error_px', 'val_error_px',
  'val_error_px_at_init'} (mean joint error on held-out stills).
  """
  pp = config.init_from.pose_pretrain
  size, clips = config.data.crop_size, clip_frames(config)
  t0 = time.time()
  if clips:
    render = lambda seed, n: render_clips(seed, n, size, clips, pp.difficulty)
  else:
    render = lambda seed, n: render_stills(seed, n, size, pp.difficulty)
  images, targets = render(pp.seed, pp.num_images)
  val_images, val_targets = render(pp.seed + 1, pp.num_val_images)
  logging.info(
    "pose pretraining: rendered %d + %d %s in %.0f s",
    len(images),
    len(val_images),
    f"{clips}-frame clips" if clips else "stills",
    time.time() - t0,
  )
  model = uniformerv2.UniFormerV2(**backbone_kwargs(config))
  # Stills: the fewest frames the backbone takes, 2 when it halves time.
  frames = 2 if model.temporal_downsample else 1

  def as_video(x: jax.Array) -> jax.Array:
    if clips:  # normalised as the trainer does
      return build.normalize_video(x, jnp.float32)
    return _still_video(x, frames)

  init_rng, data_rng = jax.random.split(jax.random.key(pp.seed))
  variables = nn.meta.unbox(
    jax.jit(lambda r, x: model.init(r, x, train=False))(
      init_rng, as_video(jnp.asarray(images[:2]))
    )
  )
  params, stats = variables["params"], variables.get("batch_stats", {})
  schedule = optax.warmup_cosine_decay_schedule(
    0.0, pp.lr, max(1, pp.steps // 20), max(pp.steps, 2)
  )
  tx = optax.adamw(schedule, weight_decay=pp.weight_decay)
  opt_state = tx.init(params)

  def loss_fn(p, s, x, y, rng):
    out, new = model.apply(
      {"params": p, "batch_stats": s},
      as_video(x),
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": rng},
    )
    pred = out["logits"].astype(jnp.float32)
    return jnp.mean((pred - y) ** 2), (new["batch_stats"], pred)

  @jax.jit
  def train_step(p, s, o, x, y, rng):
    grads, (s, pred) = jax.grad(loss_fn, has_aux=True)(p, s, x, y, rng)
    updates, o = tx.update(grads, o, p)
    return (
      optax.apply_updates(p, updates),
      s,
      o,
      mean_joint_error(pred, y, size),
    )

  @jax.jit
  def predict(p, s, x):
    out = model.apply({"params": p, "batch_stats": s}, as_video(x))
    return out["logits"].astype(jnp.float32)

  def val_error(p, s) -> float:
    errs = []
    for i in range(0, len(val_images), pp.batch_size):
      x, y = (
        val_images[i : i + pp.batch_size],
        val_targets[i : i + pp.batch_size],
      )
      errs.append(float(mean_joint_error(predict(p, s, x), y, size)) * len(x))
    return sum(errs) / len(val_images)

  summary = {"val_error_px_at_init": val_error(params, stats)}
  batches = shuffled_batches(len(images), pp.batch_size, pp.seed)
  recent = []
  t_train = time.time()
  for step, idx in zip(range(1, pp.steps + 1), batches):
    params, stats, opt_state, err = train_step(
      params,
      stats,
      opt_state,
      images[idx],
      targets[idx],
      jax.random.fold_in(data_rng, step),
    )
    recent.append(err)
    if step % max(1, pp.steps // 10) == 0 or step == pp.steps:
      train_err = float(np.mean(jax.device_get(recent)))
      recent = []
      logging.info(
        "pose pretraining step %d/%d: joint error %.2f px (train), %.0f s",
        step,
        pp.steps,
        train_err,
        time.time() - t_train,
      )
  summary.update(
    steps=pp.steps,
    train_error_px=train_err,
    val_error_px=val_error(params, stats),
  )
  params = jax.tree.map(np.asarray, params)
  if not clips:  # clips train every tap
    params["conv1"]["kernel"] = clear_padding_taps(
      params["conv1"]["kernel"], frames
    )
  summary["seconds"] = time.time() - t0
  logging.info(
    "pose pretraining: held-out joint error %.2f px (%.2f at init), %.0f s",
    summary["val_error_px"],
    summary["val_error_px_at_init"],
    summary["seconds"],
  )
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  tmp = f"{out_path}.tmp-{os.getpid()}"
  weights.save_params_file(
    tmp,
    {"params": params, "batch_stats": jax.tree.map(np.asarray, stats)},
    model,
    source=json.dumps({"pose_pretrain": pp.to_dict(), **summary}),
  )
  os.replace(tmp, out_path)
  return summary


def config_problems(config: ml_collections.ConfigDict) -> list[str]:
  """What is wrong with init_from.pose_pretrain (empty when off or fine)."""
  pose = config.init_from.pose_pretrain
  if pose.steps <= 0:
    return []
  problems = []
  kind = config.model.get("backbone_kind", "uniformerv2")
  if kind != "uniformerv2":
    problems.append(
      "init_from.pose_pretrain pretrains a UniFormerV2, but "
      f"model.backbone_kind={kind!r}: set init_from.pose_pretrain.steps=0"
    )
  if not config.init_from.path:
    problems.append(
      "init_from.pose_pretrain.steps > 0 needs init_from.path (the params "
      "file it builds and the run loads)"
    )
  if not 0 < pose.batch_size <= pose.num_images:
    problems.append(
      f"init_from.pose_pretrain.batch_size={pose.batch_size} must be in "
      f"(0, num_images={pose.num_images}]"
    )
  if pose.num_val_images < 1:
    problems.append("init_from.pose_pretrain.num_val_images must be >= 1")
  return problems


def ensure_pose_backbone(config: ml_collections.ConfigDict) -> None:
  """Builds init_from.path by pose pretraining if configured and absent."""
  if config.init_from.pose_pretrain.steps <= 0:
    return
  problems = config_problems(config)
  if problems:
    raise config_lib.ConfigError("; ".join(problems))
  path = config.init_from.path
  if os.path.exists(path):
    return
  logging.info("pose-pretraining the backbone into %s", path)
  pretrain(config, path)


def define_flags() -> None:
  """Command-line flags (only when run as a program)."""
  config_flags.DEFINE_config_file("config", None, "Config file.")
  flags.DEFINE_string(
    "out", None, "Output params file (default: the config's init_from.path)."
  )
  flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
  del argv
  config = flags.FLAGS.config
  out = flags.FLAGS.out or config.init_from.path
  if not out:
    raise app.UsageError("give --out or set config.init_from.path")
  if config.init_from.pose_pretrain.steps <= 0:
    raise app.UsageError("config.init_from.pose_pretrain.steps must be > 0")
  summary = pretrain(config, out)
  print(json.dumps({"out": out, **summary}, indent=1))


if __name__ == "__main__":
  define_flags()
  app.run(main)
