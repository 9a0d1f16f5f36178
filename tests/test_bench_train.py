"""bench_train's rows: a timed step and a compile-only row agree."""

import math

import pytest
from test_config import load_config

from art_jax.tools import bench_train


@pytest.mark.slow  # two train-step compiles, ~1-2 min on 2 cores
def test_compile_only_row_matches_the_timed_row():
  config = load_config("finegym", "runlocal")
  config.mesh.data = -1
  timed = bench_train.bench_one(config, batch_size=8, steps=1)
  only = bench_train.bench_one(config, batch_size=8, steps=0)
  assert timed["step_s"] > 0 and timed["clips_per_s"] == 8 / timed["step_s"]
  assert timed["devices"] == 8 and timed["batch"] == 8
  assert timed["temp_gib"] > 0 and timed["model_tflop_per_step_per_device"] > 0
  # Compile only: the same program and counts, nothing timed.
  assert math.isnan(only["step_s"]) and math.isnan(only["clips_per_s"])
  assert only["compile_s"] > 0
  for key in ("temp_gib", "model_tflop_per_step_per_device", "frames", "crop"):
    assert only[key] == timed[key], key
