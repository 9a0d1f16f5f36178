r"""Entry point: the same command on a laptop, one GPU, or every TPU host.

  python -m art_jax.main --config=configs/finegym.py:gym288,l14 \
      --workdir=runs/gym288 [--mode=train_and_eval|train|eval] \
      [--config.batch_size=64 --config.optim.lr=2e-4 ...]

Multi-process runs call `jax.distributed.initialize` (automatic on Cloud
TPU; on GPU clusters from the environment: SLURM or JAX_COORDINATOR_ADDRESS,
or the --coordinator_address/--num_processes/--process_id flags).
"""

import json
import os
import time

from absl import app, flags, logging
from ml_collections import config_flags


def define_flags() -> None:
  """Command-line flags (defined only when run as a program)."""
  config_flags.DEFINE_config_file(
    "config",
    None,
    "Config file, optionally with variants: file.py:a,b.",
    lock_config=True,
  )
  flags.DEFINE_string(
    "workdir",
    None,
    "Checkpoints, logs, reports. Default: runs/<config>-<variant>.",
  )
  flags.DEFINE_enum(
    "mode",
    "train_and_eval",
    ["train", "eval", "train_and_eval"],
    "What to run.",
  )
  flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (multi-process)."
  )
  flags.DEFINE_integer("num_processes", None, "Number of processes.")
  flags.DEFINE_integer("process_id", None, "This process's id.")
  flags.DEFINE_string(
    "compilation_cache",
    os.path.expanduser("~/.cache/art_jax/xla"),
    "Persistent XLA compilation cache ('' disables): a restarted job "
    "skips recompiling the same step.",
  )
  flags.mark_flags_as_required(["config"])


def default_workdir(config_arg: str) -> str:
  """runs/finegym-gym288_l14 from configs/finegym.py:gym288,l14."""
  path, _, variant = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  variant = variant.replace(",", "_").replace("=", "-")
  return os.path.join("runs", f"{name}-{variant}" if variant else name)


def _multiprocess_requested() -> bool:
  env = os.environ
  return bool(
    flags.FLAGS.coordinator_address
    or env.get("JAX_COORDINATOR_ADDRESS")
    or int(env.get("SLURM_NTASKS", "1")) > 1
    or "," in env.get("TPU_WORKER_HOSTNAMES", "")
    or int(env.get("MEGASCALE_NUM_SLICES", "1")) > 1
  )


def initialize_distributed() -> None:
  """jax.distributed.initialize for multi-process jobs; no-op otherwise."""
  import jax  # noqa: PLC0415 - after flags, before any device use

  if not _multiprocess_requested():
    return
  if (
    jax.config.jax_platforms in ("cpu",)
    or os.environ.get("JAX_PLATFORMS") == "cpu"
  ):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  f = flags.FLAGS
  kwargs = {}
  if f.coordinator_address:
    kwargs = dict(
      coordinator_address=f.coordinator_address,
      num_processes=f.num_processes,
      process_id=f.process_id,
    )
  jax.distributed.initialize(**kwargs)
  logging.info(
    "process %d of %d, %d local / %d global devices",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


def _config_arg() -> str:
  """The --config argument as given (path plus variant)."""
  return flags.FLAGS["config"].serialize().split("=", 1)[1]


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  initialize_distributed()
  import jax  # noqa: PLC0415

  if f.compilation_cache:
    jax.config.update("jax_compilation_cache_dir", f.compilation_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.0)

  # Heavy imports after flags.
  from art_jax import (  # noqa: PLC0415
    checkpointing,
    config_lib,
    reporting,
    train,
  )
  from art_jax.data import record  # noqa: PLC0415
  from art_jax.demo import inputs  # noqa: PLC0415

  config = f.config
  workdir = f.workdir or default_workdir(_config_arg())
  logging.info("config:\n%s", config)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as out:
      out.write(config.to_json_best_effort(indent=1))

  start = time.time()
  try:
    # Inputs built on first use (the demo's data, tiny CLIP and pose
    # backbone; a bank from text_bank.clip): nothing for prepared data.
    inputs.ensure_inputs(config)
    result = train.train_and_evaluate(config, workdir, f.mode)
  except (
    config_lib.ConfigError,
    checkpointing.CheckpointError,
    record.MetadataError,
    FileNotFoundError,
  ) as e:
    # What the user can fix (a config, a path, a checkpoint): the message
    # alone, not a traceback around it.
    raise SystemExit(f"error: {e}") from None
  if jax.process_index() == 0:
    summary = {k: v for k, v in result.items() if k != "losses"}
    logging.info("done: %s", json.dumps(summary))
    print(
      reporting.run_summary(
        summary, workdir, _config_arg(), time.time() - start
      ),
      flush=True,
    )


if __name__ == "__main__":
  define_flags()
  app.run(main)
