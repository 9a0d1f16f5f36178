r"""Compile the real train step for a named TPU slice on a CPU host (AOT).

  python -m art_jax.tools.aot_compile --config=configs/finegym.py:gym99,l14 \
      --topology=v5p-128 --batch_sizes=8,16 [--num_slices=1] \
      [--cost=scaled|unrolled|none] [--json_out=FILE] [--config.mesh.fsdp=...]
  python -m art_jax.tools.aot_compile --list_topologies

Needs libtpu (`pip install -e '.[tpu]'`), not a TPU: libtpu describes the
slice (`jax.experimental.topologies`) and XLA:TPU compiles for it here. The
step is the trainer's own (`state.setup_state`, `train.make_train_step`,
`train.compile_train_step`: the state donated, every sharding from the
logical axis names) on the (data, fsdp, tensor) mesh `sharding.make_mesh`
builds from the slice's devices, as the trainer does on the slice (over
several slices, `--num_slices`: the data axis split across them).

`--batch_sizes` are per-device batches: the global batch is that times
the mesh's data x fsdp size. One row per batch size: per-chip HBM the
compiled step uses (arguments + temp + output - aliased, from XLA's memory
analysis) against the chip's HBM and whether it fits; model FLOPs per chip
and step (counted as bench_train counts them: 3 x the unrolled forward);
the number of all-gather / reduce-scatter / all-reduce ops in the compiled
HLO; compile seconds; and XLA's *estimate* of the step time, not a
measurement, with the MFU it implies: `optimal_seconds` of XLA:TPU's cost
analysis, or, where XLA returns a negative one (it does for ART's step:
some op has no time model), the roofline of XLA's own counts,
max(flops / peak bf16 FLOP/s, bytes accessed / HBM bandwidth); `est_from`
says which. XLA's cost analysis counts a scanned layer body once, so the
estimate of the scanned step is corrected by `--cost`:

  * scaled (default): x the ratio of the FLOPs of the whole unrolled step
    to the scanned one, both counted by XLA on the lowered (unoptimised)
    HLO, never compiled;
  * unrolled: a second compile of the same step with model.scan=False,
    whose own estimate is used (twice the compile time);
  * none: XLA's number for the scanned step as it is (too low).

Memory, fit and collectives always come from the scanned step training
runs (the config's model.scan). A batch that does not fit fails XLA:TPU's
compile; its row has fits=False, the HBM the compiler asked for and the
chip's usable HBM (`hbm_limit_gib`), and no estimate. `--json_out` is
rewritten after every row.
"""

import dataclasses
import importlib.util
import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
from absl import logging

from art_jax import config_lib, reporting, train
from art_jax import sharding as sh
from art_jax.tools import bench_lib

INSTALL_HINT = (
  "compiling for a TPU slice needs libtpu (no TPU needed): "
  "pip install -e '.[tpu]'"
)


@dataclasses.dataclass(frozen=True)
class TpuGeneration:
  """One TPU generation: how users name its slices and what a chip has."""

  name: str  # as in jax's topology names: "v5e"
  device_kind: str  # jax's device_kind of its chips
  hbm_gib: float  # per chip
  peak_bf16_flops: float  # per chip, dense
  hbm_bytes_per_s: float  # per chip
  cores_in_name: int  # "v4-32" counts TensorCores: 2 per chip
  chips_per_host: int  # of a multi-host slice
  single_host_chips: int  # largest slice on one host
  megacore: bool  # two TensorCores as one device
  dims: int  # torus dimensions (2: v5e/v6e, 3: v4/v5p)
  aliases: tuple[str, ...] = ()


GENERATIONS: dict[str, TpuGeneration] = {
  g.name: g
  for g in (
    TpuGeneration("v4", "TPU v4", 32, 275e12, 1.2e12, 2, 4, 4, True, 3),
    TpuGeneration(
      "v5e", "TPU v5 lite", 16, 197e12, 819e9, 1, 4, 8, False, 2, ("v5litepod",)
    ),
    TpuGeneration("v5p", "TPU v5", 95, 459e12, 2.765e12, 2, 4, 4, True, 3),
    TpuGeneration("v6e", "TPU v6 lite", 32, 918e12, 1.64e12, 1, 4, 8, False, 2),
  )
}

# Chips -> the slice's torus shape, as Cloud TPU builds them.
SHAPES_2D = {
  1: (1, 1),
  4: (2, 2),
  8: (2, 4),
  16: (4, 4),
  32: (4, 8),
  64: (8, 8),
  128: (8, 16),
  256: (16, 16),
}
SHAPES_3D = {
  4: (2, 2, 1),
  8: (2, 2, 2),
  16: (2, 2, 4),
  32: (2, 4, 4),
  64: (4, 4, 4),
  128: (4, 4, 8),
  256: (4, 8, 8),
  512: (8, 8, 8),
  1024: (8, 8, 16),
  2048: (8, 16, 16),
  4096: (16, 16, 16),
}

# The names the table in docs/benchmarks.md lists (`--list_topologies`).
EXAMPLE_NAMES = (
  "v4-8",
  "v4-32",
  "v4-128",
  "v5e-4",
  "v5litepod-8",
  "v5e-16",
  "v5litepod-256",
  "v5p-8",
  "v5p-128",
  "v5p-1024",
  "v6e-8",
  "v6e-16",
  "v6e-256",
  "v5e:2x2",
  "v5p:4x4x4",
)


@dataclasses.dataclass(frozen=True)
class TpuSlice:
  """A named slice resolved to what jax's topology API takes."""

  name: str  # as given: "v5p-128", "v5e:2x2"
  generation: TpuGeneration
  shape: tuple[int, ...]  # chips along each torus axis
  num_slices: int = 1

  @property
  def topology(self) -> str:
    """jax's topology name, e.g. 'v5p:4x4x4'."""
    return f"{self.generation.name}:{'x'.join(map(str, self.shape))}"

  @property
  def chips(self) -> int:
    """Chips in all slices."""
    return math.prod(self.shape) * self.num_slices

  @property
  def hosts(self) -> int:
    """TPU VM hosts in all slices."""
    per_slice = math.prod(self.shape)
    g = self.generation
    if per_slice <= g.single_host_chips:
      return self.num_slices
    return self.num_slices * per_slice // g.chips_per_host

  def topology_kwargs(self) -> dict[str, Any]:
    """Keyword arguments of `topologies.get_topology_desc` besides the name."""
    g = self.generation
    kwargs: dict[str, Any] = {}
    if g.megacore:
      kwargs["chip_config_name"] = "megacore"
    if math.prod(self.shape) <= g.single_host_chips:
      kwargs["chips_per_host_bounds"] = (*self.shape, 1)[:3]
    if self.num_slices > 1:
      kwargs["num_slices"] = self.num_slices
    return kwargs


def _generation(name: str) -> TpuGeneration | None:
  for g in GENERATIONS.values():
    if name == g.name or name in g.aliases:
      return g
  return None


def parse_topology(name: str, num_slices: int = 1) -> TpuSlice:
  """'v5p-128' (Cloud TPU accelerator type) or 'v5p:4x4x4' (jax's form).

  Accelerator types count TensorCores for v4 and v5p (two per chip: v4-32
  is 16 chips) and chips for v5e and v6e. Raises ValueError naming the
  forms it knows for anything else.
  """
  known = ", ".join(
    f"{g.name}-N" + "".join(f" / {a}-N" for a in g.aliases)
    for g in GENERATIONS.values()
  )
  usage = (
    f"unknown TPU topology {name!r}: use a Cloud TPU accelerator type "
    f"({known}; e.g. v4-32, v5e-16, v5p-128, v6e-256) or jax's form "
    "GEN:AxB[xC] (e.g. v5e:2x2, v5p:4x4x4); "
    "`--list_topologies` prints the table"
  )
  if num_slices < 1:
    raise ValueError(f"num_slices={num_slices}: use 1 or more")
  text = name.strip().lower()
  m = re.fullmatch(r"([a-z0-9]+):(\d+(?:x\d+)*)", text)
  if m:
    g = _generation(m.group(1))
    shape = tuple(int(s) for s in m.group(2).split("x"))
    if g is None or len(shape) != g.dims or min(shape) < 1:
      raise ValueError(usage)
    return TpuSlice(name, g, shape, num_slices)
  m = re.fullmatch(r"([a-z0-9]+)-(\d+)", text)
  g = _generation(m.group(1)) if m else None
  if g is None:
    raise ValueError(usage)
  count = int(m.group(2))
  shapes = SHAPES_3D if g.dims == 3 else SHAPES_2D
  chips, rest = divmod(count, g.cores_in_name)
  if rest or chips not in shapes:
    sizes = ", ".join(str(c * g.cores_in_name) for c in shapes)
    raise ValueError(
      f"unknown TPU topology {name!r}: {g.name} slices are {g.name}-N for "
      f"N in {sizes}, or jax's form {g.name}:" + "x".join("ABC"[: g.dims])
    )
  return TpuSlice(name, g, shapes[chips], num_slices)


def topology_table(names: Sequence[str] = EXAMPLE_NAMES) -> list[dict]:
  """Rows of what each name resolves to (no libtpu needed)."""
  rows = []
  for name in names:
    s = parse_topology(name)
    g = s.generation
    rows.append(
      {
        "name": name,
        "jax_topology": s.topology,
        "chips": s.chips,
        "hosts": s.hosts,
        "chips_per_host": s.chips // s.hosts,
        "hbm_gib_per_chip": g.hbm_gib,
        "peak_bf16_tflops_per_chip": g.peak_bf16_flops / 1e12,
        "hbm_gb_per_s_per_chip": g.hbm_bytes_per_s / 1e9,
        "device_kind": g.device_kind,
      }
    )
  return rows


def require_libtpu() -> None:
  """Raises RuntimeError with the install command when libtpu is absent."""
  if os.environ.get("TPU_LIBRARY_PATH"):
    return
  if importlib.util.find_spec("libtpu") is None:
    raise RuntimeError(INSTALL_HINT)


def slice_devices(tpu: TpuSlice) -> list[jax.Device]:
  """The slice's compile-only devices (libtpu's description; no TPU)."""
  require_libtpu()
  # Compile-only: no chip is opened, so several such processes (pytest -n,
  # or one next to a TPU job) need not take libtpu's one-process lockfile.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  from jax.experimental import topologies  # noqa: PLC0415

  desc = topologies.get_topology_desc(
    topology_name=tpu.topology, platform="tpu", **tpu.topology_kwargs()
  )
  devices = list(desc.devices)
  slices = len(sh.slices_of(devices))
  if len(devices) != tpu.chips or slices != tpu.num_slices:
    raise RuntimeError(
      f"{tpu.name} x{tpu.num_slices}: libtpu describes {len(devices)} "
      f"devices in {slices} slices, expected {tpu.chips} chips in "
      f"{tpu.num_slices}"
    )
  return devices


COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all")


def count_collectives(hlo_text: str) -> dict[str, int]:
  """Collective ops in (optimised) HLO text, async start ops included.

  A static count: an op inside a while body (a scanned layer) counts once.
  """
  counts = {}
  for op in COLLECTIVES:
    pattern = rf"\s{re.escape(op)}(?:-start)?\("
    counts[op] = len(re.findall(pattern, hlo_text))
  return counts


def step_seconds(
  cost: Mapping[str, float], generation: TpuGeneration
) -> tuple[float, str]:
  """XLA's estimate of one step on one chip from a compiled step's cost
  analysis, and what it is: `optimal_seconds` where XLA gives one, else
  (negative: XLA has no time model for some op) the roofline of XLA's
  counts, max(flops / peak, bytes accessed / HBM bandwidth)."""
  optimal = float(cost.get("optimal_seconds", -1.0))
  if optimal > 0:
    return optimal, "xla optimal_seconds"
  flops = float(cost.get("flops", 0.0))
  nbytes = float(cost.get("bytes accessed", 0.0))
  roofline = max(
    flops / generation.peak_bf16_flops, nbytes / generation.hbm_bytes_per_s
  )
  return roofline, "roofline of xla flops and bytes"


def _cost(compiled: Any) -> dict[str, float]:
  cost = compiled.cost_analysis()
  if isinstance(cost, list | tuple):
    cost = cost[0] if cost else {}
  return dict(cost or {})


def compile_step(
  config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, batch: int
) -> tuple[Any, float]:
  """The trainer's train step of `config` at global `batch`, compiled by
  `train.compile_train_step` for `mesh`'s devices. Returns (compiled,
  compile seconds)."""
  step, setup, video_shape, _ = bench_lib.build_train_step(config, mesh, batch)
  return train.compile_train_step(
    step, setup, mesh, sh.LOGICAL_RULES, video_shape
  )


def lowered_step_flops(config: ml_collections.ConfigDict, batch: int) -> float:
  """XLA's FLOP count of the whole train step of `config` at global
  `batch` (one device, unsharded), from the lowered HLO; never compiled.
  A scanned layer body counts once here too."""
  cpu = jax.devices("cpu")[:1]
  mesh = jax.sharding.Mesh(
    [[[cpu[0]]]], sh.MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3
  )
  step, setup, video_shape, _ = bench_lib.build_train_step(config, mesh, batch)
  strip = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype)
  batch_struct = {
    "video": jax.ShapeDtypeStruct(video_shape, "uint8"),
    "label": jax.ShapeDtypeStruct(video_shape[:1], "int32"),
  }
  lowered = jax.jit(step).lower(
    jax.tree.map(strip, setup.abstract), batch_struct
  )
  return float(lowered.cost_analysis()["flops"])


def compile_row(
  config: ml_collections.ConfigDict,
  tpu: TpuSlice,
  devices: Sequence[jax.Device],
  per_device_batch: int,
  cost: str = "scaled",
) -> dict[str, Any]:
  """One row: the step of `config` compiled for `tpu` at a per-device batch
  (global = per_device_batch x data x fsdp). See the module docstring."""
  if cost not in ("scaled", "unrolled", "none"):
    raise ValueError(f"cost={cost!r}: use scaled, unrolled or none")
  config = ml_collections.ConfigDict(config.to_dict())
  mesh = sh.make_mesh(config.mesh.to_dict(), devices)
  mesh_sizes = dict(mesh.shape)
  data_parallel = mesh_sizes["data"] * mesh_sizes["fsdp"]
  batch = per_device_batch * data_parallel
  config.batch_size = batch
  config.mesh = ml_collections.ConfigDict(mesh_sizes)
  bank_shape = bench_lib.random_bank(config).shape
  config_lib.validate(config, num_devices=len(devices), bank_shape=bank_shape)

  g = tpu.generation
  head = {
    "topology": tpu.name,
    "jax_topology": tpu.topology
    + (f" x{tpu.num_slices} slices" if tpu.num_slices > 1 else ""),
    "chips": len(devices),
    "hosts": tpu.hosts,
    "batch": batch,
    "per_device_batch": per_device_batch,
    "mesh": "x".join(f"{k}{v}" for k, v in mesh_sizes.items()),
  }
  logging.info("%s: compiling the train step at batch %d", tpu.name, batch)
  t0 = time.perf_counter()
  try:
    compiled, compile_s = compile_step(config, mesh, batch)
  except jax.errors.JaxRuntimeError as e:
    usage = hbm_exhausted(str(e))
    if usage is None:
      raise
    logging.info("out of HBM: %.2f of %.2f GiB", *usage)
    return {
      **head,
      "hbm_used_gib": usage[0],
      "hbm_gib": g.hbm_gib,
      "hbm_limit_gib": usage[1],
      "fits": False,
      "compile_s": time.perf_counter() - t0,
    }
  logging.info("compiled in %.0f s", compile_s)
  mem = compiled.memory_analysis()
  nbytes = lambda k: int(getattr(mem, k, 0) or 0)
  used = (
    nbytes("argument_size_in_bytes")
    + nbytes("temp_size_in_bytes")
    + nbytes("output_size_in_bytes")
    - nbytes("alias_size_in_bytes")
  )
  hbm = g.hbm_gib * 2**30
  chips = len(devices)
  model_flops = reporting.model_train_flops(config, batch) / chips
  xla = _cost(compiled)
  est_s, source = step_seconds(xla, g)
  counts = {k: float(xla.get(k, 0.0)) for k in ("flops", "bytes accessed")}
  row_cost: dict[str, Any] = {}
  if cost != "none":
    unrolled = ml_collections.ConfigDict(config.to_dict())
    unrolled.model.scan = False
    ratio = lowered_step_flops(unrolled, batch) / lowered_step_flops(
      config, batch
    )
    row_cost["flop_ratio_unrolled"] = ratio
    row_cost["est_step_s_scaled"] = est_s * ratio
  if cost == "scaled":
    est_s, source = est_s * ratio, f"{source} x FLOP ratio (scaled)"
    counts = {k: v * ratio for k, v in counts.items()}
  elif cost == "unrolled":
    logging.info("compiling the unrolled step for its cost")
    compiled_u, seconds = compile_step(unrolled, mesh, batch)
    xla_u = _cost(compiled_u)
    est_s, source = step_seconds(xla_u, g)
    source = f"{source} of the unrolled step"
    counts = {k: float(xla_u.get(k, 0.0)) for k in counts}
    compile_s += seconds
  else:
    source = f"{source} (scanned layers counted once)"
  row = {
    **head,
    "hbm_used_gib": used / 2**30,
    "hbm_gib": g.hbm_gib,
    "fits": used <= hbm,
    "temp_gib": nbytes("temp_size_in_bytes") / 2**30,
    "model_tflop_per_step_per_chip": model_flops / 1e12,
    "xla_tflop_per_chip_scanned": float(xla.get("flops", 0)) / 1e12,
    **row_cost,
    "est_xla_tflop_per_chip": counts["flops"] / 1e12,
    "est_xla_gb_accessed_per_chip": counts["bytes accessed"] / 1e9,
    "est_step_s": est_s,
    "est_mfu": model_flops / est_s / g.peak_bf16_flops,
    "est_from": source,
    **{
      k.replace("-", "_"): v
      for k, v in count_collectives(compiled.as_text()).items()
    },
    "compile_s": compile_s,
  }
  return row


_HBM_EXHAUSTED = re.compile(
  r"Ran out of memory in memory space hbm.*?"
  r"Used ([\d.]+)([KMGT]?) of ([\d.]+)([KMGT]?) hbm",
  re.DOTALL,
)


def hbm_exhausted(message: str) -> tuple[float, float] | None:
  """(used, usable) GiB per chip from XLA:TPU's compile-time out-of-HBM
  error ("Ran out of memory in memory space hbm. Used 17.2G of 15.75G
  hbm."), None for any other error."""
  m = _HBM_EXHAUSTED.search(message)
  if m is None:
    return None
  scale = {"": 2**-30, "K": 2**-20, "M": 2**-10, "G": 1.0, "T": 2**10}
  return (
    float(m.group(1)) * scale[m.group(2)],
    float(m.group(3)) * scale[m.group(4)],
  )


def _print_table(rows: Sequence[dict]) -> None:
  keys = list(dict.fromkeys(k for r in rows for k in r))
  full = [{k: r.get(k, "-") for k in keys} for r in rows]
  print(bench_lib.markdown_table(full), flush=True)


def main(argv: Sequence[str]) -> None:
  """Compiles every batch size, prints the table, writes --json_out."""
  del argv
  from absl import flags  # noqa: PLC0415

  f = flags.FLAGS
  if f.list_topologies:
    _print_table(topology_table())
    return
  if f.config is None or not f.topology:
    raise flags.ValidationError("--config and --topology are required")
  tpu = parse_topology(f.topology, f.num_slices)
  devices = slice_devices(tpu)
  rows = []
  for per_device in [int(b) for b in f.batch_sizes]:
    t0 = time.perf_counter()
    rows.append(compile_row(f.config, tpu, devices, per_device, f.cost))
    print(
      json.dumps(rows[-1]) + f"  ({time.perf_counter() - t0:.0f}s)", flush=True
    )
    if f.json_out:  # after every row: a long sweep keeps what it compiled
      with open(f.json_out, "w") as out:
        json.dump(rows, out, indent=1)
  _print_table(rows)
  print(
    "est_step_s / est_mfu are XLA's compile-time estimates, not "
    "measurements; time a real slice with art_jax.tools.bench_train.",
    flush=True,
  )


def define_flags() -> None:
  """Command-line flags; defined only when run as a program."""
  from absl import flags  # noqa: PLC0415
  from ml_collections import config_flags  # noqa: PLC0415

  config_flags.DEFINE_config_file(
    "config", None, "Config file.", lock_config=False
  )
  flags.DEFINE_string(
    "topology", None, "TPU slice: v4-32, v5e-16, v5p-128, v6e-256, v5e:2x2..."
  )
  flags.DEFINE_integer("num_slices", 1, "Slices (multi-slice over DCN).")
  flags.DEFINE_list(
    "batch_sizes", ["8"], "Per-device batches (global = x data x fsdp)."
  )
  flags.DEFINE_enum(
    "cost",
    "scaled",
    ["scaled", "unrolled", "none"],
    "How the step-time estimate covers every scanned layer.",
  )
  flags.DEFINE_string("json_out", None, "Also write the rows as JSON.")
  flags.DEFINE_bool(
    "list_topologies", False, "Print the TPU name table and exit."
  )


if __name__ == "__main__":
  # The host's own backend is the CPU (libtpu only describes the slice),
  # also on a TPU VM, whose chips a training job may hold.
  if not os.environ.get("JAX_PLATFORMS"):
    jax.config.update("jax_platforms", "cpu")
  from absl import app

  define_flags()
  app.run(main)
