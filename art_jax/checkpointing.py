"""One orbax CheckpointManager for the train state and the grain iterator.

Resume order (used by train.py):
  1. the newest checkpoint in `<workdir>/checkpoints` that restores (same
     command resumes; a damaged newer one is renamed `<step>.damaged`, kept
     on disk, and named in one warning: `restore_latest`);
  2. else `config.init_from.path` (converted UniFormerV2 / CLIP weights);
  3. else a fresh initialisation.

Checkpoints hold `state` (the sharded TrainState, saved asynchronously) and
`data_iter` (the grain iterator of every process, saved synchronously) at the
same step, so a restart continues at the exact next example. Restoring takes
an abstract target carrying the *current* mesh's shardings, so a run saved on
8 devices resumes on 4.
"""

import os
import signal
import threading
from collections.abc import Mapping
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers

PyTree = Any


class PreemptionWatcher:
  """Says, at a step boundary, whether the job was asked to stop.

  Multi-process jobs use JAX's preemption sync point (every process agrees
  on the same step; installed by jax.distributed.initialize). Single-process
  jobs install a SIGTERM handler that only sets a flag.
  """

  def __init__(self, manager: ocp.CheckpointManager):
    self._manager = manager
    self._flag = threading.Event()
    self._multi = jax.process_count() > 1
    self._old_handler = None
    if (
      not self._multi and threading.current_thread() is threading.main_thread()
    ):
      self._old_handler = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM: saving at the next step boundary, then exiting")
    self._flag.set()

  def reached(self, step: int) -> bool:
    if self._multi:
      return bool(self._manager.reached_preemption(step))
    return self._flag.is_set()

  def close(self) -> None:
    if self._old_handler is not None:
      signal.signal(signal.SIGTERM, self._old_handler)
      self._old_handler = None


def make_manager(
  directory: str,
  *,
  keep: int,
  keep_best: bool,
  best_metric: str,
  async_save: bool = True,
) -> ocp.CheckpointManager:
  """Keeps the last `keep` checkpoints plus the best by `best_metric`."""
  policies = [checkpoint_managers.LatestN(n=keep)]
  if keep_best:
    policies.append(
      checkpoint_managers.BestN(
        get_metric_fn=lambda m: m[best_metric],
        n=1,
        keep_checkpoints_without_metrics=False,
      )
    )
  options = ocp.CheckpointManagerOptions(
    preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
    enable_async_checkpointing=async_save,
    create=True,
  )
  return ocp.CheckpointManager(directory, options=options)


def save(
  manager: ocp.CheckpointManager,
  step: int,
  state: PyTree,
  data_iter: grain.DatasetIterator | None,
  metrics: Mapping[str, float] | None = None,
) -> None:
  """Saves state (async) and iterator (sync) at `step`."""
  items = {"state": ocp.args.StandardSave(state)}
  if data_iter is not None:
    items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
  manager.save(
    step,
    args=ocp.args.Composite(**items),
    metrics=dict(metrics) if metrics else None,
    force=True,
  )
  logging.info("checkpoint: saving step %d", step)


def restore(
  manager: ocp.CheckpointManager,
  step: int,
  abstract_state: PyTree,
  data_iter: grain.DatasetIterator | None,
) -> tuple[PyTree, grain.DatasetIterator | None]:
  """Restores onto the shardings carried by `abstract_state`'s leaves."""
  items = {"state": ocp.args.StandardRestore(abstract_state)}
  if data_iter is not None:
    items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
  restored = manager.restore(step, args=ocp.args.Composite(**items))
  logging.info("checkpoint: restored step %d from %s", step, manager.directory)
  return restored["state"], restored.get("data_iter", data_iter)


DAMAGED_SUFFIX = ".damaged"


class CheckpointError(RuntimeError):
  """No checkpoint in a directory could be restored."""


def _short(error: BaseException, limit: int = 300) -> str:
  text = " ".join(f"{type(error).__name__}: {error}".split())
  return text if len(text) <= limit else text[: limit - 3] + "..."


def restore_latest(
  manager: ocp.CheckpointManager,
  abstract_state: PyTree,
  data_iter: grain.DatasetIterator | None,
) -> tuple[PyTree, grain.DatasetIterator | None, int] | None:
  """Restores the newest checkpoint that restores; None if there is none.

  A checkpoint that fails to restore (truncated or damaged files, e.g. a
  partial copy) is renamed `<step>.damaged` in the same folder, never
  deleted, so that training can save that step again; one warning names
  it, and the next older checkpoint is tried. Raises CheckpointError, with
  each step's error, when checkpoints exist and none restores (e.g. the
  config no longer matches them).
  """
  errors = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      state, data_iter = restore(manager, step, abstract_state, data_iter)
      if errors:
        manager.reload()
      return state, data_iter, step
    except Exception as e:  # noqa: BLE001 - orbax raises many kinds
      errors.append(f"step {step}: {_short(e)}")
      path = os.path.join(os.fspath(manager.directory), str(step))
      logging.warning(
        "checkpoint: step %d in %s does not restore (%s); it is kept as "
        "%s%s and the previous checkpoint is tried",
        step,
        manager.directory,
        _short(e),
        path,
        DAMAGED_SUFFIX,
      )
      if os.path.isdir(path):
        os.replace(path, path + DAMAGED_SUFFIX)
  if errors:
    manager.reload()
    raise CheckpointError(
      f"no checkpoint in {manager.directory} restores (damaged ones are now "
      f"*{DAMAGED_SUFFIX}):\n  " + "\n  ".join(errors)
    )
  return None
