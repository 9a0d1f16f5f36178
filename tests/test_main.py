"""main: the summary at the end of a run, and errors without tracebacks."""

import os

from art_jax import reporting


def test_run_summary_names_metrics_outputs_and_next_command(tmp_path):
  workdir = str(tmp_path / "run")
  for sub in ("checkpoints", "eval", "tensorboard"):
    os.makedirs(os.path.join(workdir, sub))
  result = {
    "steps": 900,
    "top1": 0.9354,
    "top5": 1.0,
    "mean_class_accuracy": 0.9354,
    "preempted": False,
    "skipped_steps": 0,
  }
  text = reporting.run_summary(result, workdir, "configs/demo.py", 354.0)
  lines = text.splitlines()
  assert lines[0] == "done in 5.9 min (900 steps)"
  assert "Top-1 93.5%  Top-5 100.0%  Mean class accuracy 93.5%" in lines[1]
  assert any(line.endswith(os.path.join(workdir, "eval")) for line in lines)
  assert not any("tracklet" in line for line in lines)  # not written here
  assert lines[-1].endswith(
    f"--config=configs/demo.py --checkpoint={workdir} --video=VIDEO"
  )
  preempted = reporting.run_summary(
    {"steps": 3, "preempted": True}, workdir, "c.py", 1.0
  )
  assert "resume" in preempted and "Top-1" not in preempted


def test_a_users_error_is_one_message_not_a_traceback(tmp_path):
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415

  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "art_jax.main",
      "--config=configs/finegym.py:gym99,runlocal",
      f"--config.data.dir={tmp_path / 'no_shards_here'}",
      f"--workdir={tmp_path / 'run'}",
      "--compilation_cache=",
    ],
    cwd=repo,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and "no_shards_here" in last
