"""art_jax.sharding: mesh construction over all devices, a subset of them,
and devices of several slices (fake devices with a `slice_index`)."""

import dataclasses

import jax
import numpy as np
import pytest

from art_jax import sharding as sh

AUTO = (jax.sharding.AxisType.Auto,) * 3


def test_make_mesh_over_all_devices():
  mesh = sh.make_mesh({"data": -1, "fsdp": 2})
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1}
  assert mesh.axis_types == AUTO
  assert sorted(d.id for d in mesh.devices.flat) == sorted(
    d.id for d in jax.devices()
  )


@pytest.mark.parametrize("take", [slice(0, 2), slice(2, 6), slice(None, 3, -1)])
def test_make_mesh_over_a_subset_keeps_its_order(take):
  devices = jax.devices()[take]
  mesh = sh.make_mesh({"data": -1}, devices)
  assert dict(mesh.shape) == {"data": len(devices), "fsdp": 1, "tensor": 1}
  assert list(mesh.devices.flat) == devices
  assert mesh.axis_types == AUTO


def test_make_mesh_rejects_a_mesh_that_does_not_divide():
  with pytest.raises(ValueError, match="does not fit 3 devices"):
    sh.make_mesh({"data": 2}, jax.devices()[:3])


@dataclasses.dataclass(frozen=True)
class FakeDevice:
  """What the mesh builders read of a device."""

  id: int
  slice_index: int
  platform: str = "cpu"
  device_kind: str = "cpu"


def fake_slices(num_slices: int, per_slice: int) -> list[FakeDevice]:
  # Interleaved, as a device list need not be grouped by slice.
  return [
    FakeDevice(i * num_slices + s, s)
    for i in range(per_slice)
    for s in range(num_slices)
  ]


def test_slices_of_groups_by_slice_index():
  slices = sh.slices_of(fake_slices(2, 3))
  assert {k: [d.id for d in v] for k, v in slices.items()} == {
    0: [0, 2, 4],
    1: [1, 3, 5],
  }
  assert list(sh.slices_of(jax.devices()[:4])) == [0]  # CPUs: one slice


def test_hybrid_grid_splits_data_across_slices():
  devices = fake_slices(2, 4)
  grid = sh.hybrid_device_grid((4, 2, 1), devices)
  assert grid.shape == (4, 2, 1)
  slice_of = np.vectorize(lambda d: d.slice_index)(grid)
  # data rows 0-1 on slice 0, rows 2-3 on slice 1; fsdp within a slice.
  assert (slice_of[:2] == 0).all() and (slice_of[2:] == 1).all()
  assert sorted(d.id for d in grid.flat) == list(range(8))


def test_hybrid_mesh_shapes():
  assert sh.hybrid_mesh_shapes((8, 2, 1), 4) == ((2, 2, 1), (4, 1, 1))
  assert sh.hybrid_mesh_shapes((2, 1, 4), 2) == ((1, 1, 4), (2, 1, 1))


@pytest.mark.parametrize(
  "shape, per_slice, says",
  [
    ((1, 8, 1), (4, 4), "mesh.data must be a multiple of 2"),
    ((3, 2, 1), (3, 3), "mesh.data must be a multiple of 2"),
    ((7, 1, 1), (4, 3), "devices per slice differ"),
  ],
)
def test_hybrid_grid_errors_are_clear(shape, per_slice, says):
  devices = [
    FakeDevice(10 * s + i, s) for s, n in enumerate(per_slice) for i in range(n)
  ]
  with pytest.raises(ValueError, match=says):
    sh.hybrid_device_grid(shape, devices)
