"""The synthetic fine-grained action dataset: renderer, prepare, baseline."""

import os
import subprocess
import sys

import numpy as np
import pytest

from art_jax.data import pipeline, record
from art_jax.data import synthetic as syn
from art_jax.data.datasets import synthetic as syn_dataset
from art_jax.demo import inputs
from art_jax.tools import frame_baselines


def test_render_is_deterministic_with_shapes():
  a = syn.render(3, [7, 0, 1])
  assert a.shape == (16, 64, 64, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(a, syn.render(3, [7, 0, 1]))
  assert np.abs(a.astype(int) - syn.render(3, [7, 0, 2])).mean() > 5
  b = syn.render(3, 5, num_frames=8, size=48)
  assert b.shape == (8, 48, 48, 3)


def test_every_class_renders_and_differs():
  assert syn.NUM_CLASSES >= 12
  assert len(set(syn.CLASS_NAMES)) == syn.NUM_CLASSES
  clips = [syn.render(c, 11, 8, 48) for c in range(syn.NUM_CLASSES)]
  for c in range(1, syn.NUM_CLASSES):
    assert not np.array_equal(clips[0], clips[c]), syn.CLASS_NAMES[c]
  # The order classes come in pairs listing the same motions reversed.
  for c in (8, 10):
    assert syn.CLASSES[c][1] == syn.CLASSES[c + 1][1][::-1]


def test_nuisances_vary_within_a_class():
  n = [syn.sample_nuisance(np.random.default_rng(s), 16, 64) for s in (1, 2)]
  for key in ("cx", "ground", "fig_h", "phase", "speed", "noise"):
    assert n[0][key] != n[1][key], key
  assert not np.array_equal(n[0]["colours"], n[1]["colours"])
  assert not np.array_equal(n[0]["background"], n[1]["background"])
  assert np.abs(n[0]["shake"]).sum() > 0


@pytest.mark.parametrize("difficulty", [1.0, 0.5, 0.0])
def test_figure_is_lighter_than_the_background(difficulty):
  """Colours vary, the polarity never does: every body part is lighter
  than the background's mean in every clip (half the clips dark-on-light
  kept the from-scratch demo model at chance)."""
  lum = np.array([0.299, 0.587, 0.114])
  for seed in range(40):
    nz = syn.sample_nuisance(np.random.default_rng(seed), 8, 48, difficulty)
    assert nz["colours"].min() >= 0.55
    figure = (nz["colours"] @ lum).min()
    assert figure > nz["background"].mean((0, 1)) @ lum + 0.1, seed


def _arm_region(seed, size=64):
  """Pixels the figure's left arm (image right) can reach, (T, H, W)."""
  nz = syn.sample_nuisance(np.random.default_rng(seed), 16, size)
  x = np.arange(size)[None, None, :] - nz["shake"][:, 0, None, None]
  y = np.arange(size)[None, :, None] - nz["shake"][:, 1, None, None]
  s = nz["fig_h"]
  return (x > nz["cx"] - 0.12 * s - 2) & (y < nz["ground"] - 0.25 * s)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classes_differ_only_locally(seed):
  base = syn.render(0, seed).astype(int)  # left forearm flick
  for other in (2, 4):  # left forearm circle, left forearm hold
    diff = np.abs(base - syn.render(other, seed)).sum(-1)  # (T, H, W)
    assert diff.sum() > 0
    assert (diff > 0).mean() < 0.05  # a small part of the frames
    inside = diff[_arm_region(seed)].sum() / diff.sum()
    assert inside > 0.99, (other, inside)
  # Right forearm flick: the change is also on the other side.
  diff = np.abs(base - syn.render(1, seed)).sum(-1)
  assert diff[~_arm_region(seed)].sum() > 0.3 * diff.sum()


def test_read_lists_balanced_seeded_clips():
  ann = syn_dataset.read(None, None, "val", num_clips={"val": 25}, seed=4)
  assert len(ann.clips) == 25 and ann.class_names == syn.CLASS_NAMES
  counts = np.bincount([c.label for c in ann.clips])
  assert counts.min() >= 2 and counts.max() <= 3
  assert ann.clips[3].id == "s4_val_000003"
  assert ann.clips[3].meta == {"seed": [4, 1, 3]}


def test_prepare_cli(tmp_path):
  out = str(tmp_path / "synth")
  cmd = [
    sys.executable,
    "-m",
    "art_jax.data.prepare",
    "--dataset=synthetic",
    f"--out={out}",
    "--num_train=24",
    "--num_val=12",
    "--frames=8",
    "--size=48",
    "--clips_per_shard=10",
    "--workers=1",
  ]
  p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
  assert p.returncode == 0, p.stderr
  assert "train: 24 clips, 0 failed" in p.stdout
  meta = record.read_metadata(out, "train", num_classes=syn.NUM_CLASSES)
  assert meta["class_names"] == syn.CLASS_NAMES
  assert len(meta["shards"]) == 3 and not meta["flip_safe"]
  assert meta["params"]["short_side"] == 48
  assert record.read_metadata(out, "val")["num_clips"] == 12
  it = pipeline.make_train_iterator(
    out,
    "train",
    batch_size=4,
    num_frames=4,
    crop_size=32,
    flip=False,
    num_classes=syn.NUM_CLASSES,
  )
  batch = next(it)
  assert batch["video"].shape == (4, 4, 32, 32, 3)
  assert batch["label"].max() < syn.NUM_CLASSES


def test_prepare_cli_needs_videos_for_real_datasets(tmp_path):
  p = subprocess.run(
    [
      sys.executable,
      "-m",
      "art_jax.data.prepare",
      "--dataset=diving48",
      f"--out={tmp_path}",
    ],
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert p.returncode != 0 and "needs --videos" in p.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("built"))
  counts = inputs.build_synthetic(out, 48, 24, seed=1, num_frames=8, size=32)
  return out, counts


def test_build_synthetic_writes_and_resumes(built):
  out, counts = built
  assert counts == {"train": 48, "val": 24}
  shard = os.path.join(out, record.shard_name("train", 0, 1))
  mtime = os.path.getmtime(shard)
  inputs.build_synthetic(out, 48, 24, seed=1, num_frames=8, size=32)
  assert os.path.getmtime(shard) == mtime  # finished shards are skipped
  meta = record.read_metadata(out, "val")
  assert meta["dataset"] == "synthetic" and meta["synthetic_seed"] == 1


def test_frame_average_baseline_runs(built):
  res = frame_baselines.frame_average_baseline(built[0])
  assert res["num_train"] == 48 and res["chance"] == 1 / syn.NUM_CLASSES
  for name in ("pixels_frame_average", "frame_average", "single_frame"):
    assert 0 <= res[name]["logreg"] <= 1
    assert 0 <= res[name]["centroid"] <= 1
  feats = frame_baselines.clip_features(syn.render(0, 0, 16, 64))
  assert feats["frame_average"].shape == (144,)
  assert feats["stacked_frames"].shape == (8 * 144,)


def test_difficulty_scales_nuisances_only():
  np.testing.assert_array_equal(
    syn.render(4, 9, 8, 48), syn.render(4, 9, 8, 48, difficulty=1.0)
  )
  easy = syn.sample_nuisance(np.random.default_rng(3), 8, 48, difficulty=0.0)
  full = syn.sample_nuisance(np.random.default_rng(3), 8, 48)
  assert easy["cx"] == 24 and easy["speed"] == 1.0 and easy["noise"] == 0
  assert not easy["shake"].any()
  assert easy["background"].std((0, 1)).max() < 1e-6
  np.testing.assert_array_equal(easy["flick_amp"], full["flick_amp"])
  assert easy["colours"].std() < 1e-6 < full["colours"].std()
  clips = syn_dataset.read(
    None, None, "train", num_clips={"train": 2}, difficulty=0.5
  )
  assert clips.clips[0].id == "s0_d0.5_train_000000"
  assert clips.clips[0].meta["difficulty"] == 0.5
