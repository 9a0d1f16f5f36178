"""Logical axis names and the one table that maps them onto mesh axes.

Every parameter and every constrained activation in art_jax names its axes
with the constants below. `LOGICAL_RULES` turns those names into mesh axes of
a `("data", "fsdp", "tensor")` mesh:

  * batch-like axes are split over data and fsdp (data parallelism),
  * the model width (`embed`) is split over fsdp (parameters are gathered
    per layer, ZeRO-3 style),
  * MLP hidden units, attention heads and classes are split over tensor.

Configs choose the mesh sizes only (`config.mesh`, one axis may be -1:
the remaining devices, resolved by `mesh_shape`). Functions that place
arrays take the table as an argument (`rules`), so code may pass another;
the names here are the vocabulary every module uses.
"""

import math
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils

# Activation axes.
BATCH = "batch"
TIME = "time"  # frames / backbone time steps
LENGTH = "length"  # tokens within one frame or one sentence
QUERIES = "queries"  # ART region queries / text tokens in the heads

# Parameter axes.
EMBED = "embed"  # model width C (backbone) or d (ART heads)
MLP = "mlp"  # hidden width of an MLP
HEADS = "heads"
KV = "kv"  # per-head width
LAYERS = "layers"  # the stacked axis created by nn.scan
CLASSES = "classes"
TEMPLATES = "templates"  # prompt templates of the text bank
TEXT_EMBED = "text_embed"  # CLIP joint embedding width D
VOCAB = "vocab"
# Kernel extents of convolutions; one name per axis (an array may not repeat
# a logical name).
CONV_T = "conv_t"
CONV_H = "conv_h"
CONV_W = "conv_w"
NORM = "norm"  # LayerNorm / BatchNorm feature axis when it is not `embed`

LogicalRules = Sequence[tuple[str, str | tuple[str, ...] | None]]

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_RULES: LogicalRules = (
  (BATCH, ("data", "fsdp")),
  (EMBED, "fsdp"),
  (MLP, "tensor"),
  (HEADS, "tensor"),
  (CLASSES, "tensor"),
  (KV, None),
  (LAYERS, None),
  (TIME, None),
  (LENGTH, None),
  (QUERIES, None),
  (TEMPLATES, None),
  (TEXT_EMBED, None),
  (VOCAB, None),
  (CONV_T, None),
  (CONV_H, None),
  (CONV_W, None),
  (NORM, None),
)


def mesh_shape(axes: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
  """Resolves `{'data': -1, 'fsdp': 1, 'tensor': 1}` to sizes for MESH_AXES."""
  sizes = [int(axes.get(name, 1)) for name in MESH_AXES]
  known = math.prod(s for s in sizes if s != -1)
  if sizes.count(-1) > 1 or known <= 0 or num_devices % known:
    raise ValueError(f"mesh {dict(axes)} does not fit {num_devices} devices")
  return tuple(num_devices // known if s == -1 else s for s in sizes)


def make_mesh(
  axes: Mapping[str, int], devices: Sequence[jax.Device] | None = None
) -> jax.sharding.Mesh:
  """A (data, fsdp, tensor) mesh with Auto axis types over `devices`
  (default: all), laid out for the interconnect.

  One slice: `jax.make_mesh(..., devices=devices)`, which orders a TPU
  slice's devices (or a subset of them) along its torus and keeps other
  platforms' order. Devices of several slices (distinct `slice_index`: TPU
  slices over DCN, GPU nodes): `mesh_utils.create_hybrid_device_mesh`,
  the data axis split across the slices (data parallelism over the slow
  network) and fsdp / tensor within each (see `hybrid_mesh_shapes`).
  """
  devices = jax.devices() if devices is None else list(devices)
  shape = mesh_shape(axes, len(devices))
  auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  num_slices = len(slices_of(devices))
  if num_slices == 1:
    return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)
  return jax.sharding.Mesh(
    hybrid_device_grid(shape, devices), MESH_AXES, axis_types=auto
  )


def slices_of(devices: Sequence[jax.Device]) -> dict[int, list[jax.Device]]:
  """Devices by `slice_index` (0 where a platform has none), in order."""
  slices: dict[int, list[jax.Device]] = {}
  for d in devices:
    slices.setdefault(int(getattr(d, "slice_index", 0)), []).append(d)
  return slices


def hybrid_mesh_shapes(
  shape: Sequence[int], num_slices: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(per-slice, across-slices) shapes of a MESH_AXES mesh over
  `num_slices` slices: the data axis is split across them."""
  data, *rest = shape
  if data % num_slices:
    raise ValueError(
      f"mesh {dict(zip(MESH_AXES, shape))} over {num_slices} slices: data "
      "parallelism runs across slices, so mesh.data must be a multiple of "
      f"{num_slices} (e.g. mesh.data={num_slices}, fsdp/tensor within a slice)"
    )
  return (data // num_slices, *rest), (num_slices,) + (1,) * len(rest)


def hybrid_device_grid(
  shape: Sequence[int], devices: Sequence[jax.Device]
) -> np.ndarray:
  """The device array of a mesh of `shape` over several slices' devices
  (`mesh_utils.create_hybrid_device_mesh`, torus-aware within each)."""
  slices = slices_of(devices)
  sizes = {i: len(d) for i, d in slices.items()}
  if len(set(sizes.values())) > 1:
    raise ValueError(
      f"devices per slice differ ({sizes}): a multi-slice mesh needs "
      "slices of one size"
    )
  ici, dcn = hybrid_mesh_shapes(shape, len(slices))
  return mesh_utils.create_hybrid_device_mesh(
    ici, dcn, devices=list(devices), allow_split_physical_axes=True
  )


def logical_sharding(
  mesh: jax.sharding.Mesh,
  logical_axes: tuple[str | None, ...],
  rules: LogicalRules = LOGICAL_RULES,
) -> jax.sharding.NamedSharding:
  """NamedSharding of an array whose axes carry these logical names."""
  spec = nn.logical_to_mesh_axes(logical_axes, rules)
  return jax.sharding.NamedSharding(mesh, spec)
