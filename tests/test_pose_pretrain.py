"""Pose pretraining on synthetic stills or clips, the demo backbone's CLIP
stand-in."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_config import load_config
from test_train import HEAD_ONLY, read_init_report
from test_uniformerv2 import TINY

from art_jax import config_lib, train, weights
from art_jax.data import synthetic
from art_jax.demo import inputs, pose_pretrain
from art_jax.models import uniformerv2

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_still_targets_land_on_the_figure():
  size, n = 48, 24
  images, targets = pose_pretrain.render_stills(3, n, size, difficulty=0.0)
  assert images.shape == (n, size, size, 3) and images.dtype == np.uint8
  assert targets.shape == (n, pose_pretrain.NUM_TARGETS)
  xy = (targets.reshape(n, -1, 2) + 1.0) * size / 2.0
  luminance = images.astype(np.float32).mean(-1)
  on_figure = []
  for i in range(n):
    for x, y in xy[i]:
      if 0 <= x < size and 0 <= y < size:
        on_figure.append(luminance[i, int(y), int(x)])
  # Difficulty 0: background grey 0.25, figure grey 0.775 (x 255).
  assert len(on_figure) > 10 * n
  assert min(on_figure) > 0.6 * 255
  assert np.median(luminance) < 0.35 * 255
  # The figure faces the camera: its left shoulder is on the image right.
  names = synthetic.JOINT_ORDER
  left = names.index("left_arm_root")
  right = names.index("right_arm_root")
  assert np.all(xy[:, left, 0] > xy[:, right, 0])
  # Poses vary widely: forearm ends spread over the frame.
  end = names.index("right_arm_end")
  assert xy[:, end].std(0).min() > 3.0


def test_still_rendering_is_deterministic_per_seed():
  a = pose_pretrain.render_stills(5, 4, 32)
  b = pose_pretrain.render_stills(5, 4, 32)
  c = pose_pretrain.render_stills(6, 4, 32)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[0], c[0])


def test_clip_targets_follow_the_figure_in_every_frame():
  size, n, frames = 48, 12, 8
  images, targets = pose_pretrain.render_clips(
    3, n, size, frames, difficulty=0.0
  )
  assert images.shape == (n, frames, size, size, 3)
  assert targets.shape == (n, frames * pose_pretrain.NUM_TARGETS)
  xy = (targets.reshape(n, frames, -1, 2) + 1.0) * size / 2.0
  luminance = images.astype(np.float32).mean(-1)
  on_figure = [
    luminance[i, f, int(y), int(x)]
    for i in range(n)
    for f in range(frames)
    for x, y in xy[i, f]
    if 0 <= x < size and 0 <= y < size
  ]
  assert len(on_figure) > 10 * n * frames
  assert min(on_figure) > 0.6 * 255  # every target on the painted figure
  # The limbs move within clips: forearm ends travel several pixels.
  end = synthetic.JOINT_ORDER.index("left_arm_end")
  travel = np.linalg.norm(xy[:, 1:, end] - xy[:, :-1, end], axis=-1).sum(1)
  assert np.median(travel) > 5.0
  again = pose_pretrain.render_clips(3, 2, size, frames, difficulty=0.0)
  np.testing.assert_array_equal(again[0], images[:2])
  np.testing.assert_array_equal(again[1], targets[:2])


def test_random_motion_is_smooth_and_wide():
  t = np.linspace(0.0, 1.0, 400)
  ends, steps = [], []
  for i in range(40):
    joints = synthetic.joint_array(
      synthetic.random_motion(np.random.default_rng([1, i]), t)
    )
    steps.append(np.abs(np.diff(joints, axis=0)).max())
    ends.append(joints[:, synthetic.JOINT_ORDER.index("right_arm_end")])
  # No jumps: at 400 samples a joint moves < 0.03 figure heights per step
  # (a turn of 400 degrees over 30% of the clip moves ~0.025).
  assert max(steps) < 0.03
  ends = np.concatenate(ends)
  assert ends.std(0).min() > 0.1  # forearms reach all around


def test_cleared_padding_taps_keep_stills():
  model = uniformerv2.UniFormerV2(**TINY, scan=False)
  still = jax.random.normal(jax.random.key(0), (2, 1, 32, 32, 3))
  video = jnp.repeat(still, 2, axis=1)
  variables = weights.init_variables(model, jax.random.key(1))
  kernel = variables["params"]["conv1"]["kernel"]
  assert kernel.shape[0] == 3 and np.abs(kernel[0]).max() > 0
  cleared = pose_pretrain.clear_padding_taps(kernel)
  assert np.all(cleared[0] == 0)
  np.testing.assert_array_equal(cleared[1:], kernel[1:])
  new = jax.tree.map(lambda x: x, variables)
  new["params"]["conv1"]["kernel"] = cleared
  out, out_cleared = (model.apply(v, video) for v in (variables, new))
  np.testing.assert_allclose(out["logits"], out_cleared["logits"], atol=1e-5)
  np.testing.assert_allclose(out["tokens"], out_cleared["tokens"], atol=1e-5)
  # Not the padding tap: clearing a trained one changes the still's output.
  wrong = jax.tree.map(lambda x: x, variables)
  wrong["params"]["conv1"]["kernel"] = np.asarray(kernel).copy()
  wrong["params"]["conv1"]["kernel"][2] = 0
  assert not np.allclose(model.apply(wrong, video)["logits"], out["logits"])


def test_pose_pretraining_without_a_path_is_a_config_error():
  c = load_config("demo")
  c.init_from.path = None
  with pytest.raises(config_lib.ConfigError, match="needs init_from.path"):
    inputs.check_config(c)
  # Also where it is built (the demo checks before it builds inputs).
  with pytest.raises(config_lib.ConfigError, match="needs init_from.path"):
    pose_pretrain.ensure_pose_backbone(c)
  c.init_from.path = "unused.msgpack"
  pose = c.init_from.pose_pretrain
  pose.batch_size = pose.num_images + 1
  with pytest.raises(config_lib.ConfigError, match="batch_size"):
    pose_pretrain.ensure_pose_backbone(c)


def test_pretraining_learns_and_the_demo_loads_it(tmp_path):
  c = load_config("demo", "runlocal")
  c.data.dir = str(tmp_path / "data")
  c.text_bank.dir = str(tmp_path / "data" / "bank")
  c.init_from.path = str(tmp_path / "data" / "pose.msgpack")
  c.init_from.pose_pretrain.update(
    steps=40, batch_size=16, num_images=128, num_val_images=32
  )
  c.total_steps = 1
  c.eval_every_steps = 1000
  workdir = str(tmp_path / "run")
  # The demo builds data, text bank and the pose backbone (as main does
  # before training), and the trainer loads it.
  inputs.ensure_inputs(c)
  train.train_and_evaluate(c, workdir, mode="train")
  _, meta = weights.read_params_file(c.init_from.path)
  summary = json.loads(meta["source"])
  assert summary["pose_pretrain"]["steps"] == 40
  # From predicting ~nothing to at least the mean pose and better.
  assert summary["val_error_px"] < 0.6 * summary["val_error_px_at_init"]
  variables = weights.load_params_file(c.init_from.path)
  kernel = variables["params"]["conv1"]["kernel"]
  assert np.all(kernel[0] == 0) and np.abs(kernel[1:]).min(0).max() > 0
  report = read_init_report(workdir)
  assert report["reinitialised_params"] == HEAD_ONLY
  assert "params/backbone/conv1/kernel" in report["loaded"]
  # Built once: a second run finds the file and leaves it alone.
  mtime = os.path.getmtime(c.init_from.path)
  pose_pretrain.ensure_pose_backbone(c)
  assert os.path.getmtime(c.init_from.path) == mtime


def test_clip_pretraining_learns_every_frame_and_keeps_all_taps(tmp_path):
  c = load_config("demo", "runlocal")
  c.init_from.pose_pretrain.update(
    clips=True, steps=40, batch_size=16, num_images=96, num_val_images=16
  )
  out = str(tmp_path / "pose.msgpack")
  summary = pose_pretrain.pretrain(c, out)
  assert summary["val_error_px"] < 0.6 * summary["val_error_px_at_init"]
  variables = weights.load_params_file(out)
  head = variables["params"]["proj_2"]["kernel"]
  assert head.shape[-1] == c.data.num_frames * pose_pretrain.NUM_TARGETS
  # Every time tap of the patch embedding read real frames: none cleared.
  kernel = variables["params"]["conv1"]["kernel"]
  assert np.abs(kernel).reshape(kernel.shape[0], -1).max(1).min() > 0


def test_command_line_writes_the_file_and_prints_the_summary(tmp_path):
  out = tmp_path / "pose.msgpack"
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "art_jax.demo.pose_pretrain",
      "--config=configs/demo.py:runlocal",
      f"--out={out}",
      "--config.init_from.pose_pretrain.steps=2",
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  summary = json.loads(proc.stdout[proc.stdout.index("{") :])
  assert summary["out"] == str(out) and summary["steps"] == 2
  assert os.path.exists(out)


def test_shuffled_batches_walk_a_seeded_permutation_per_epoch():
  """Batches are sorted slices of one permutation per epoch, drawn from
  default_rng(seed) in order; a tail shorter than a batch is dropped."""
  from itertools import islice

  from art_jax.demo.pose_pretrain import shuffled_batches

  got = list(islice(shuffled_batches(10, 4, seed=3), 5))
  rng = np.random.default_rng(3)
  first, second, third = (rng.permutation(10) for _ in range(3))
  want = [first[:4], first[4:8], second[:4], second[4:8], third[:4]]
  assert all(b.shape == (4,) for b in got)
  for b, w in zip(got, want):
    np.testing.assert_array_equal(b, np.sort(w))
