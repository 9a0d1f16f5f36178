r"""Classify one video file with a trained checkpoint; draw its tracklets.

  python -m art_jax.predict --config=configs/demo.py --checkpoint=runs/demo \
      --video=clip.mp4 [--out=DIR] [--top=5]

Decodes the file with PyAV, samples and crops it as evaluation does
(segment centres, centre square of the short side, resized to the crop),
prints the top classes with probabilities and writes
`<out>/<video name>_tracklets.png` (tracklet responses above the backbone's
class-activation map). `--checkpoint` is a workdir, its `checkpoints`
folder, or one step folder inside it.
"""

import os
import sys

import jax
import numpy as np
import optax
from absl import app, flags
from ml_collections import config_flags

from art_jax import checkpointing, config_lib, evaluate, optim, text_bank, viz
from art_jax import sharding as sh
from art_jax import state as state_lib
from art_jax.data import video as video_lib
from art_jax.models import art as art_model
from art_jax.models import backbones, build


def define_flags() -> None:
  """Command-line flags; defined only when run as a program, so that
  importing this module (tests, notebooks) defines none."""
  config_flags.DEFINE_config_file("config", None, "Config file.")
  flags.DEFINE_string(
    "checkpoint", None, "Workdir, checkpoints folder or step folder."
  )
  flags.DEFINE_string("video", None, "A video file PyAV can read.")
  flags.DEFINE_string(
    "out", None, "Folder for the picture (default: next to the video)."
  )
  flags.DEFINE_integer("top", 5, "How many classes to print.")
  flags.mark_flags_as_required(["config", "checkpoint", "video"])


class PredictError(RuntimeError):
  """A clear, user-facing failure (bad video, mismatched checkpoint)."""


def load_clip(path: str, num_frames: int, crop_size: int) -> np.ndarray:
  """(T, crop, crop, 3) uint8 sampled and cropped as in evaluation."""
  try:
    clip = video_lib.read_clip(
      path, short_side=256, max_frames=256, min_frames=1
    )
  except video_lib.VideoError as e:
    raise PredictError(f"cannot read video {path}: {e}") from e
  idx = video_lib.segment_indices(len(clip.frames), num_frames, None, 0, 1)
  h, w = clip.frames[0].shape[:2]
  box = video_lib.eval_boxes(h, w, 1)[0]
  return np.stack(
    [
      video_lib.crop_resize(clip.frames[i], box, crop_size)
      for i in np.asarray(idx).tolist()
    ]
  )


def _checkpoint_location(path: str) -> tuple[str, int | None]:
  """(checkpoints dir, step or None for the latest)."""
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, "checkpoints")):
    return os.path.join(path, "checkpoints"), None
  base = os.path.basename(path)
  if base.isdigit():
    return os.path.dirname(path), int(base)
  return path, None


def predict(
  config, checkpoint: str, video_path: str, out_dir: str | None, top: int = 5
) -> dict:
  """Top classes of `video_path`; writes the tracklet picture."""
  frames = load_clip(video_path, config.data.num_frames, config.data.crop_size)
  bank, meta = text_bank.load_for_config(config)
  names = meta.get("class_names") or [
    str(k) for k in range(config.data.num_classes)
  ]
  rules = sh.LOGICAL_RULES
  mesh = sh.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  model = build.build_model(config)
  tx = optim.make_optimizer(config.optim, optax.constant_schedule(0.0))
  setup = state_lib.setup_state(
    model, tx, mesh, rules, (1, *frames.shape), tuple(bank.shape)
  )
  directory, step = _checkpoint_location(checkpoint)
  manager = checkpointing.make_manager(
    directory, keep=1000, keep_best=False, best_metric="top1", async_save=False
  )
  step = manager.latest_step() if step is None else step
  if step is None:
    raise PredictError(f"no checkpoint in {directory}")
  try:
    state, _ = checkpointing.restore(manager, step, setup.abstract, None)
  except (ValueError, KeyError, TypeError) as e:
    raise PredictError(
      f"checkpoint {directory}/{step} does not match the config "
      f"(model size, classes or text bank differ): {e}"
    ) from e
  finally:
    manager.close()
  dtype = build.DTYPES[config.model.dtype]
  with jax.set_mesh(mesh):
    out = jax.device_get(
      jax.jit(
        evaluate.make_explain_fn(model, dtype, config_lib.pixel_stats(config))
      )(state, frames[None])
    )
  probs = out["probs"][0]
  order = np.argsort(-probs)[:top]
  result = {
    "video": video_path,
    "step": int(step),
    "top": [(names[k], float(probs[k])) for k in order],
  }
  kind = model.backbone_kind
  grid = backbones.token_grid(kind, model.backbone, config.data.crop_size)
  weights = np.asarray(
    jax.device_get(art_model.class_weights(state.params, kind)), np.float32
  )
  image = viz.clip_picture(
    frames,
    out["response_maps"][0] if "response_maps" in out else None,
    out["tokens"][0],
    weights[:, order[0]],
    (grid, grid),
    title=f"{os.path.basename(video_path)}: {names[order[0]]} "
    f"({probs[order[0]]:.2f})",
    scale=2,
  )
  out_dir = out_dir or os.path.dirname(os.path.abspath(video_path))
  stem = os.path.splitext(os.path.basename(video_path))[0]
  result["picture"] = viz.save_png(
    image, os.path.join(out_dir, f"{stem}_tracklets.png")
  )
  return result


def main(argv):
  del argv
  try:
    result = predict(
      flags.FLAGS.config,
      flags.FLAGS.checkpoint,
      flags.FLAGS.video,
      flags.FLAGS.out,
      flags.FLAGS.top,
    )
  except (PredictError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"{result['video']} (checkpoint step {result['step']}):")
  for name, p in result["top"]:
    print(f"  {p:6.3f}  {name}")
  print(f"tracklet picture: {result['picture']}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
