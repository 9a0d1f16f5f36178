"""The train state and its shardings, and host batches made global.

The state is shaped abstractly (`jax.eval_shape`), its shardings come from
the model's logical axis names through the rules table
(`art_jax.sharding`), and a fresh state is born sharded
(`jax.jit(init, out_shardings=...)`), never whole on one device.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from art_jax import sharding as sh

PyTree = Any
Batch = Mapping[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes; a pytree of global arrays."""

  step: jax.Array  # int32 scalar: completed optimiser steps
  params: PyTree  # includes the agent bank S' and the prototypes
  batch_stats: PyTree  # UniFormerV2's BatchNorm statistics
  opt_state: PyTree
  text_bank: jax.Array  # (K, M, D) EMA bank S; never seen by the optimiser
  rng: jax.Array  # typed key; folded with `step` for per-step randomness


@dataclasses.dataclass(frozen=True)
class StateSetup:
  """How to create, shard and restore the train state on one mesh."""

  init_fn: Callable[[jax.Array, jax.Array], TrainState]
  abstract: TrainState  # ShapeDtypeStructs carrying shardings
  shardings: TrainState  # NamedSharding per leaf


def setup_state(
  model: nn.Module,
  tx: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
  rules: sh.LogicalRules,
  video_shape: tuple[int, ...],
  bank_shape: tuple[int, ...],
) -> StateSetup:
  """Derives the state's shardings from the model's logical axis names."""
  dummy = jnp.zeros((1, *video_shape[1:]), jnp.float32)

  def init_boxed(rng, bank):
    p_rng, d_rng, s_rng = jax.random.split(rng, 3)
    variables = model.init(
      {"params": p_rng, "dropout": d_rng}, dummy, bank, train=False
    )
    params = variables["params"]
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables.get("batch_stats", {}),
      opt_state=tx.init(params),
      text_bank=bank,
      rng=s_rng,
    )

  def init_fn(rng, bank):
    return nn.meta.unbox(init_boxed(rng, bank))

  rng_shape = jax.eval_shape(lambda: jax.random.key(0))
  bank_struct = jax.ShapeDtypeStruct(bank_shape, jnp.float32)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    boxed = _drop_empty_boxes(
      jax.eval_shape(init_boxed, rng_shape, bank_struct)
    )
    specs = nn.get_partition_spec(boxed)
    shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
  # Leaves without logical names (step, rng, bank, BatchNorm stats):
  # replicated.
  replicated = NamedSharding(mesh, P())
  shardings = jax.tree.map(
    lambda s: replicated if s is None else s,
    shardings,
    is_leaf=lambda x: x is None or isinstance(x, NamedSharding),
  )
  abstract = jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
    nn.meta.unbox(boxed),
    shardings,
  )
  return StateSetup(init_fn, abstract, shardings)


def _drop_empty_boxes(tree: PyTree) -> PyTree:
  """Unboxes partitioning boxes that hold no array.

  optax.partition/masked put an empty `MaskedNode` where a parameter is not
  in their group; computed over boxed params that node sits *inside* the
  parameter's box, which would otherwise become a sharding where the
  unboxed state has no leaf.
  """

  def fix(x):
    value = getattr(x, "value", None)
    if isinstance(x, nn.meta.AxisMetadata) and not hasattr(value, "shape"):
      return value
    return x

  return jax.tree.map(
    fix, tree, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata)
  )


def create_state(
  setup: StateSetup,
  mesh: jax.sharding.Mesh,
  rules: sh.LogicalRules,
  seed: int,
  bank: np.ndarray,
) -> TrainState:
  """A fresh state, born sharded (never whole on one host)."""
  replicated = NamedSharding(mesh, P())
  bank = jax.device_put(np.asarray(bank, np.float32), replicated)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    init = jax.jit(
      setup.init_fn,
      in_shardings=(replicated, replicated),
      out_shardings=setup.shardings,
    )
    return init(jax.random.key(seed), bank)


# --- host <-> device ---------------------------------------------------------


def batch_shardings(
  mesh: jax.sharding.Mesh, rules: sh.LogicalRules
) -> dict[str, NamedSharding]:
  """Video (B, T, H, W, 3) and labels (B,) split over the batch axes."""
  return {
    "video": sh.logical_sharding(
      mesh, (sh.BATCH, None, None, None, None), rules
    ),
    "label": sh.logical_sharding(mesh, (sh.BATCH,), rules),
  }


def to_global(
  batch: Mapping[str, np.ndarray],
  mesh: jax.sharding.Mesh,
  rules: sh.LogicalRules,
) -> Batch:
  """Host-local numpy batch -> global arrays sharded over the batch axes."""

  def put(x):
    spec = (sh.BATCH,) + (None,) * (x.ndim - 1)
    return jax.make_array_from_process_local_data(
      sh.logical_sharding(mesh, spec, rules), x
    )

  return {k: put(np.asarray(v)) for k, v in batch.items()}
