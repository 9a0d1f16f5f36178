r"""Train-step benchmark: compile time, step time, clips/s, memory, MFU.

  python -m art_jax.tools.bench_train --config=configs/finegym.py:b16 \
      --batch_sizes=8,16,32 --steps=10

Runs the real ART train step of the config (state donated, explicit
shardings over every visible device) on random uint8 clips already on the
device, for each global batch size; a size that does not fit is reported
as OOM and the search stops there. MFU = XLA-counted FLOPs per device per
step / step time / the device's peak bf16 FLOP/s (art_jax.reporting).
"""

import json
import os

import jax
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from art_jax import reporting, train
from art_jax import sharding as sh
from art_jax import state as state_lib
from art_jax.tools import bench_lib, step_profile


def define_flags() -> None:
  """Command-line flags (defined only when run as a program)."""
  config_flags.DEFINE_config_file(
    "config", None, "Config file.", lock_config=False
  )
  flags.DEFINE_list(
    "batch_sizes", None, "Global batch sizes (default: config's)."
  )
  flags.DEFINE_integer(
    "steps",
    10,
    "Timed steps per batch size; 0: compile only (compile time and XLA's "
    "temp memory, no state is created and nothing runs).",
  )
  flags.DEFINE_string("json_out", None, "Also write rows as JSON.")
  flags.DEFINE_integer(
    "profile_steps",
    0,
    "After timing, trace this many more steps of each batch size and print "
    "where the device time goes (art_jax.tools.step_profile).",
  )
  flags.DEFINE_string(
    "profile_dir",
    "runs/profile",
    "Traces and b<batch>.{json,md} summaries of --profile_steps.",
  )
  flags.mark_flags_as_required(["config"])


def bench_one(
  config: ml_collections.ConfigDict,
  batch_size: int,
  steps: int,
  profile_steps: int = 0,
  profile_dir: str = "runs/profile",
) -> dict:
  """One row of the table for `batch_size` (global); steps=0 compiles only
  (step_s, clips_per_s and mfu are NaN). profile_steps > 0 then traces that
  many steps and writes `profile_dir`/b<batch>.{json,md} (step_profile);
  the row gets `device_busy` (device op time / step time)."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.batch_size = batch_size
  rules = sh.LOGICAL_RULES
  mesh = sh.make_mesh(config.mesh.to_dict())
  step_fn, setup, video_shape, bank = bench_lib.build_train_step(
    config, mesh, batch_size
  )
  crop = config.data.crop_size
  compiled, compile_s = train.compile_train_step(
    step_fn, setup, mesh, rules, video_shape
  )
  # Per device: the compiled (scanned) step's XLA count under-reports the
  # layers; MFU uses the model FLOPs of the unrolled forward x 3.
  flops = reporting.model_train_flops(config, batch_size) / jax.device_count()
  mem = compiled.memory_analysis()
  row = {
    "device": jax.devices()[0].device_kind,
    "devices": jax.device_count(),
    "batch": batch_size,
    "frames": config.data.num_frames,
    "crop": crop,
    "dtype": config.model.dtype,
    "compile_s": compile_s,
    "step_s": float("nan"),
    "clips_per_s": float("nan"),
    "model_tflop_per_step_per_device": flops / 1e12,
    "mfu": float("nan"),
    "temp_gib": (getattr(mem, "temp_size_in_bytes", 0) or 0) / 2**30,
    "peak_gib": 0.0,
  }
  if steps == 0:
    return row
  state = state_lib.create_state(setup, mesh, rules, 0, bank)
  shardings = state_lib.batch_shardings(mesh, rules)
  batch = {
    "video": bench_lib.random_video(video_shape, shardings["video"]),
    "label": jax.device_put(
      np.arange(batch_size, dtype=np.int32) % config.data.num_classes,
      shardings["label"],
    ),
  }

  def step():
    nonlocal state
    state, metrics = compiled(state, batch)
    return metrics

  times = bench_lib.time_calls(step, steps)
  step_s = float(np.median(times))
  peak = reporting.device_peak_flops()
  row.update(
    step_s=step_s,
    clips_per_s=batch_size / step_s,
    mfu=(flops / step_s / peak) if flops and peak else float("nan"),
    peak_gib=(bench_lib.peak_memory_bytes() or 0) / 2**30,
  )
  if profile_steps:
    _profile(step, compiled.as_text(), profile_steps, profile_dir, row)
  return row


def _profile(step, hlo_text: str, steps: int, profile_dir: str, row: dict):
  """Trace `steps` steps; print and write the step_profile summary. A
  profiler that fails (no CUPTI, say) costs the profile, not the row."""
  try:
    summary = step_profile.profile_calls(
      step,
      hlo_text,
      steps,
      os.path.join(profile_dir, "trace"),
      module="train_step",
      step_s=row["step_s"],
    )
  except Exception as e:  # noqa: BLE001 - report and go on
    print(f"profile of batch {row['batch']} failed: {e!r}", flush=True)
    row["device_busy"] = float("nan")
    return
  row["device_busy"] = summary["busy_fraction"]
  text = step_profile.markdown(summary)
  print(text, flush=True)
  os.makedirs(profile_dir, exist_ok=True)
  base = os.path.join(profile_dir, f"b{row['batch']}")
  with open(base + ".md", "w") as f:
    f.write(text + "\n")
  with open(base + ".json", "w") as f:
    json.dump(summary, f, indent=1)


def main(argv):
  del argv
  f = flags.FLAGS
  config = f.config
  sizes = [int(b) for b in (f.batch_sizes or [config.batch_size])]
  rows = []
  for bs in sizes:
    try:
      rows.append(
        bench_one(config, bs, f.steps, f.profile_steps, f.profile_dir)
      )
    except Exception as e:  # noqa: BLE001 - OOM ends the search, not the run
      if "RESOURCE_EXHAUSTED" not in str(e) and "Out of memory" not in str(e):
        raise
      rows.append(
        {"device": jax.devices()[0].device_kind, "batch": bs, "step_s": "OOM"}
      )
      break
    print(json.dumps(rows[-1]), flush=True)
  print(bench_lib.markdown_table(rows))
  if f.json_out:
    with open(f.json_out, "w") as out:
      json.dump(rows, out, indent=1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
