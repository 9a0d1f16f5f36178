"""bench_input end to end on a few generated clips (numbers not asserted)."""

import os
import re
import subprocess
import sys


def test_bench_input_prints_every_measurement(tmp_path):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "art_jax.tools.bench_input",
      "--synthetic=3",
      f"--workdir={tmp_path}",
      "--clips=3",
      "--workers=0",
      "--num_frames=4",
      "--crop_size=64",
    ],
    cwd=repo,
    capture_output=True,
    text=True,
    timeout=600,
    check=True,
  ).stdout
  assert re.search(r"grain pipeline, 0 workers: +[0-9.]+ clips/s", out), out
  assert re.search(r"PyAV from video files.*clips per CPU-second", out), out
  assert re.search(r"ratio JPEG records / PyAV: [0-9.]+x", out), out
  assert "simplejpeg" in out or "pillow" in out
