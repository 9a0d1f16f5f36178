"""Throughput, MFU and the metric writer."""

import json
import time

import pytest

from art_jax import reporting


def test_throughput_and_mfu_follow_the_step_time():
  t = reporting.Throughput(
    total_steps=100, global_batch=8, flops_per_step=2e9, peak=1e12
  )
  t.reset(10)
  time.sleep(0.05)
  m = t.measure(15)
  dt = 1.0 / m["perf/steps_per_sec"]
  assert 0.009 < dt < 0.5
  assert m["perf/clips_per_sec"] == pytest.approx(8 / dt)
  assert m["perf/mfu"] == pytest.approx(2e9 / dt / 1e12)
  assert m["perf/eta_minutes"] == pytest.approx(85 * dt / 60)
  # No FLOPs or no peak: no MFU; going backwards only resets.
  t2 = reporting.Throughput(100, 8, None, 1e12)
  t2.reset(0)
  assert "perf/mfu" not in t2.measure(1)
  assert t2.measure(1) == {}


def test_peak_table_matches_device_kinds():
  class Dev:
    def __init__(self, kind):
      self.device_kind = kind

  assert reporting.device_peak_flops(Dev("NVIDIA H100 80GB HBM3")) == 989e12
  assert reporting.device_peak_flops(Dev("TPU v5 lite")) == 197e12
  assert reporting.device_peak_flops(Dev("TPU v4")) == 275e12
  assert reporting.device_peak_flops(Dev("cpu")) is None


def test_writer_appends_json_lines(tmp_path):
  w = reporting.MetricWriter(str(tmp_path))
  w.scalars(3, {"train/loss": 1.5})
  w.scalars(4, {"eval/top1": 0.25})
  w.close()
  with open(tmp_path / "metrics.jsonl") as f:
    rows = [json.loads(x) for x in f]
  assert rows == [
    {"step": 3, "train/loss": 1.5},
    {"step": 4, "eval/top1": 0.25},
  ]
