"""art_jax.tools.aot_compile: TPU slice names, and (slow, with libtpu) the
real train step compiled for a v5e 2x2 slice on the CPU host."""

import importlib.util
import math
import os

import jax
import pytest
from test_config import load_config

from art_jax import sharding as sh
from art_jax.tools import aot_compile


@pytest.mark.parametrize(
  "name, topology, chips, hosts",
  [
    ("v4-8", "v4:2x2x1", 4, 1),
    ("v4-32", "v4:2x2x4", 16, 4),
    ("v5e-16", "v5e:4x4", 16, 4),
    ("v5litepod-16", "v5e:4x4", 16, 4),
    ("v5litepod-8", "v5e:2x4", 8, 1),
    ("v5p-128", "v5p:4x4x4", 64, 16),
    ("v6e-256", "v6e:16x16", 256, 64),
    ("v5e:2x2", "v5e:2x2", 4, 1),
    ("V5P:4x4x8", "v5p:4x4x8", 128, 32),
  ],
)
def test_names_resolve_to_jax_topologies(name, topology, chips, hosts):
  tpu = aot_compile.parse_topology(name)
  assert (tpu.topology, tpu.chips, tpu.hosts) == (topology, chips, hosts)
  assert math.prod(tpu.shape) == chips


def test_generation_table_and_multislice():
  hbm = {g: aot_compile.GENERATIONS[g].hbm_gib for g in aot_compile.GENERATIONS}
  assert hbm == {"v4": 32, "v5e": 16, "v5p": 95, "v6e": 32}
  two = aot_compile.parse_topology("v5e-16", num_slices=2)
  assert (two.chips, two.hosts) == (32, 8)
  assert two.topology_kwargs()["num_slices"] == 2
  assert aot_compile.parse_topology("v4-32").topology_kwargs() == {
    "chip_config_name": "megacore"
  }
  rows = aot_compile.topology_table()
  assert {r["name"] for r in rows} >= {"v4-32", "v5e-16", "v5p-128", "v6e-256"}
  assert all(r["chips"] == r["hosts"] * r["chips_per_host"] for r in rows)


@pytest.mark.parametrize(
  "name, says",
  [
    ("v4-31", "v4 slices are v4-N for N in 8, 16, 32"),
    ("v5e-12", "v5e slices are v5e-N"),
    ("v7x-8", "unknown TPU topology 'v7x-8'"),
    ("v5e:2x2x1", "GEN:AxB[xC]"),
    ("tpu", "accelerator type"),
  ],
)
def test_unknown_names_are_clear_errors(name, says):
  with pytest.raises(ValueError, match="unknown TPU topology") as e:
    aot_compile.parse_topology(name)
  assert says in str(e.value)


def test_missing_libtpu_says_how_to_install(monkeypatch):
  monkeypatch.delenv("TPU_LIBRARY_PATH", raising=False)
  monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
  with pytest.raises(RuntimeError, match=r"pip install -e '\.\[tpu\]'"):
    aot_compile.slice_devices(aot_compile.parse_topology("v5e:2x2"))


def test_count_collectives_counts_async_starts():
  hlo = (
    "  %all-gather.1 = bf16[8]{0} all-gather(bf16[2]{0} %p), dimensions={0}\n"
    "  %ags = (bf16[2], bf16[8]) all-gather-start(bf16[2]{0} %q)\n"
    "  %ar = f32[] all-reduce(f32[] %x), to_apply=%add\n"
    "  %rs = f32[2]{0} reduce-scatter(f32[8]{0} %y), dimensions={0}\n"
  )
  assert aot_compile.count_collectives(hlo) == {
    "all-gather": 2,
    "reduce-scatter": 1,
    "all-reduce": 1,
    "all-to-all": 0,
  }


HAS_LIBTPU = bool(
  os.environ.get("TPU_LIBRARY_PATH") or importlib.util.find_spec("libtpu")
)


needs_libtpu = pytest.mark.skipif(
  not HAS_LIBTPU, reason="needs libtpu (pip install .[tpu])"
)


@needs_libtpu
def test_mesh_over_part_of_a_slice_follows_its_torus():
  # v5e 2x4: ids 0-3 are the 2x2 at y = 0, 1, numbered row by row; a ring
  # over them runs 0, 1, 3, 2 (a plain reshape of the list would not).
  devices = aot_compile.slice_devices(aot_compile.parse_topology("v5e:2x4"))
  mesh = sh.make_mesh({"data": -1}, devices[:4])
  assert [d.id for d in mesh.devices.flat] == [0, 1, 3, 2]
  assert mesh.axis_types == (jax.sharding.AxisType.Auto,) * 3


@needs_libtpu
def test_two_slice_mesh_puts_data_across_slices():
  tpu = aot_compile.parse_topology("v5e:2x2", num_slices=2)
  devices = aot_compile.slice_devices(tpu)
  assert len(sh.slices_of(devices)) == 2
  mesh = sh.make_mesh({"data": -1, "fsdp": 2}, devices)
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1}
  slice_of = [[d.slice_index for d in row] for row in mesh.devices[..., 0]]
  assert slice_of == [[0, 0], [0, 0], [1, 1], [1, 1]]
  with pytest.raises(ValueError, match="multiple of 2"):
    sh.make_mesh({"data": 1, "fsdp": -1}, devices)


@pytest.mark.slow
@needs_libtpu
@pytest.mark.parametrize("mesh", [{"data": -1}, {"data": 1, "fsdp": -1}])
def test_runlocal_step_compiles_for_v5e_2x2(mesh):
  config = load_config("finegym", "gym99,runlocal")
  config.unlock()
  config.mesh.update({"data": 1, "fsdp": 1, "tensor": 1, **mesh})
  tpu = aot_compile.parse_topology("v5e:2x2")
  devices = aot_compile.slice_devices(tpu)
  assert [d.device_kind for d in devices] == ["TPU v5 lite"] * 4
  row = aot_compile.compile_row(config, tpu, devices, 2, cost="scaled")
  assert row["chips"] == 4 and row["hosts"] == 1
  assert row["batch"] == 8 and row["per_device_batch"] == 2
  assert row["hbm_gib"] == 16 and row["fits"] is True
  assert 0 < row["hbm_used_gib"] < 1
  assert row["model_tflop_per_step_per_chip"] > 0
  # runlocal scans 2 backbone layers: the unrolled step has more FLOPs.
  assert row["flop_ratio_unrolled"] > 1.05
  assert row["est_step_s"] > 0 and 0 < row["est_mfu"] < 1
  assert row["compile_s"] > 0
  if "fsdp" in mesh:
    assert row["mesh"] == "data1xfsdp4xtensor1"
    assert row["all_gather"] > 0  # parameters gathered per layer
  else:
    assert row["mesh"] == "data4xfsdp1xtensor1"
    assert row["all_reduce"] > 0 and row["all_gather"] == 0
