"""checkpointing.restore_latest: a damaged newest checkpoint falls back."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import logging

from art_jax import checkpointing


def _manager(path):
  return checkpointing.make_manager(
    str(path), keep=5, keep_best=False, best_metric="top1", async_save=False
  )


def _save_steps(path, steps):
  manager = _manager(path)
  for step in steps:
    state = {"w": jnp.full((64, 64), float(step)), "step": jnp.int32(step)}
    checkpointing.save(manager, step, state, None)
  manager.wait_until_finished()
  manager.close()
  return jax.eval_shape(lambda: state)


def _damage(path, step):
  """Truncates every data file of `step` (a partial copy from a bucket)."""
  for root, _, files in os.walk(os.path.join(path, str(step))):
    for name in files:
      if "METADATA" in name.upper() or name.startswith("_"):
        continue
      full = os.path.join(root, name)
      with open(full, "r+b") as f:
        f.truncate(max(0, os.path.getsize(full) // 3))


def test_newest_restoring_checkpoint_is_used(tmp_path):
  abstract = _save_steps(tmp_path, [2, 4])
  state, _, step = checkpointing.restore_latest(
    _manager(tmp_path), abstract, None
  )
  assert step == 4 and int(state["step"]) == 4


def test_damaged_newest_checkpoint_falls_back_and_is_kept(tmp_path, caplog):
  abstract = _save_steps(tmp_path, [2, 4, 6])
  _damage(tmp_path, 6)
  manager = _manager(tmp_path)
  with caplog.at_level(logging.WARNING):
    state, _, step = checkpointing.restore_latest(manager, abstract, None)
  assert step == 4
  np.testing.assert_array_equal(state["w"], 4.0)
  assert os.path.isdir(tmp_path / "6.damaged")  # kept, never deleted
  assert 6 not in manager.all_steps()  # so step 6 can be saved again
  warnings = [r for r in caplog.records if "does not restore" in r.message]
  assert len(warnings) == 1 and "step 6" in warnings[0].getMessage()
  checkpointing.save(manager, 6, {"w": jnp.zeros((64, 64)), "step": 6}, None)
  manager.wait_until_finished()
  assert 6 in manager.all_steps()


def test_no_checkpoint_restores_is_one_clear_error(tmp_path):
  abstract = _save_steps(tmp_path, [2])
  _damage(tmp_path, 2)
  with pytest.raises(checkpointing.CheckpointError, match="step 2"):
    checkpointing.restore_latest(_manager(tmp_path), abstract, None)
  assert (
    checkpointing.restore_latest(_manager(tmp_path / "empty"), abstract, None)
    is None
  )


def test_an_unfinished_save_is_ignored(tmp_path):
  """A kill -9 during an async save leaves `<step>.orbax-checkpoint-tmp`:
  the newest finished checkpoint restores and the leftover stays."""
  abstract = _save_steps(tmp_path, [2, 4])
  leftover = tmp_path / "6.orbax-checkpoint-tmp"
  leftover.mkdir()
  (leftover / "partial").write_bytes(b"\0" * 10)
  _, _, step = checkpointing.restore_latest(_manager(tmp_path), abstract, None)
  assert step == 4 and leftover.is_dir()
