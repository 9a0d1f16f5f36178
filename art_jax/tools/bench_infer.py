r"""Inference benchmark: latency per clip at batch 1, throughput at batch 32.

  python -m art_jax.tools.bench_infer --config=configs/finegym.py:l14

Single view, jitted, after warm-up, on random uint8 clips already on the
device. The paper reports 36.2 ms per clip for ART ViT-L/14 on an A40.
"""

import json

import jax
import numpy as np
import optax
from absl import app, flags
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from ml_collections import config_flags

from art_jax import config_lib, evaluate, optim
from art_jax import sharding as sh
from art_jax import state as state_lib
from art_jax.models import build
from art_jax.tools import bench_lib


def define_flags() -> None:
  """Command-line flags (defined only when run as a program)."""
  config_flags.DEFINE_config_file(
    "config", None, "Config file.", lock_config=False
  )
  flags.DEFINE_list("batch_sizes", ["1", "32"], "Batch sizes to time.")
  flags.DEFINE_integer("steps", 20, "Timed calls per batch size.")
  flags.DEFINE_string("json_out", None, "Also write rows as JSON.")
  flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  f = flags.FLAGS
  config = f.config
  rules = sh.LOGICAL_RULES
  # Inference on one device: batch 1 cannot be split.
  mesh = sh.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  model = build.build_model(config)
  tx = optim.make_optimizer(config.optim, optax.constant_schedule(0.0))
  bank = bench_lib.random_bank(config)
  crop, frames = config.data.crop_size, config.data.num_frames
  setup = state_lib.setup_state(
    model, tx, mesh, rules, (1, frames, crop, crop, 3), bank.shape
  )
  state = state_lib.create_state(setup, mesh, rules, 0, bank)
  dtype = build.DTYPES[config.model.dtype]
  predict = jax.jit(
    evaluate.make_predict_fn(model, dtype, config_lib.pixel_stats(config))
  )
  replicated = NamedSharding(mesh, P())
  rows = []
  for bs in (int(b) for b in f.batch_sizes):
    video = bench_lib.random_video((bs, frames, crop, crop, 3), replicated)
    with jax.set_mesh(mesh):
      times = bench_lib.time_calls(lambda v=video: predict(state, v), f.steps)
    t = float(np.median(times))
    rows.append(
      {
        "device": jax.devices()[0].device_kind,
        "batch": bs,
        "frames": frames,
        "crop": crop,
        "dtype": config.model.dtype,
        "ms_per_batch": 1e3 * t,
        "ms_per_clip": 1e3 * t / bs,
        "clips_per_s": bs / t,
      }
    )
    print(json.dumps(rows[-1]), flush=True)
  print(bench_lib.markdown_table(rows))
  if f.json_out:
    with open(f.json_out, "w") as out:
      json.dump(rows, out, indent=1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
