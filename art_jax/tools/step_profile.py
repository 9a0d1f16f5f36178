r"""Where the time of a compiled step goes: device time per model component.

  rows = step_profile.profile_calls(step, compiled.as_text(), steps=3,
                                    log_dir="runs/profile")

Runs `step` under `jax.profiler.trace`, reads the device events of the
trace (XLA ops with an `hlo_op` stat; on the CPU backend, the host thread
that runs the thunks), and names each op by the `op_name` metadata that the
compiled HLO carries (the jax name stack: `jvp(ART)/backbone/...`). Time is
then grouped by pass (forward, backward, remat = the forward recomputed
inside the backward pass, update = optimizer and everything outside the
model) and by module path, e.g.
`backbone/uniblocks_scan_0/resblock/attn`. Used by
`art_jax.tools.bench_train --profile_steps=N`.
"""

import collections
import glob
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

import jax
from absl import app, flags

# `%name = shape op(...), ..., metadata={op_type=".." op_name="..." ...}`
_INSTRUCTION = re.compile(
  r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=.*?op_name=\"([^\"]*)\""
)
# Name-stack pieces that say how, not where: jit wrappers, loops, remat.
_NOISE = re.compile(
  r"^(jit\(.*\)|while|body|cond|closed_call|checkpoint|rematted_computation"
  r"|remat|pjit|eval_jaxpr|custom_jvp_call|custom_vjp_call|vmap\(.*\))$"
)

# XLA:GPU flag that runs every op as its own launch, so that the trace names
# each one (command buffers, i.e. CUDA graphs, show as one opaque op).
NO_COMMAND_BUFFERS = "--xla_gpu_enable_command_buffer="

# Control flow whose body ops are traced on their own.
_CONTAINER = re.compile(r"^(while|conditional|call)(\.\d+)?$")


def hlo_op_names(hlo_text: str) -> dict[str, str]:
  """Instruction name -> its `op_name` metadata, from compiled HLO text."""
  names = {}
  for line in hlo_text.splitlines():
    m = _INSTRUCTION.match(line)
    if m:
      names.setdefault(m.group(1), m.group(2))
  return names


def _strip_wrappers(piece: str) -> str:
  """`transpose(jvp(ART))` -> `ART`."""
  while True:
    m = re.fullmatch(r"(?:transpose|jvp|vmap|remat)\((.*)\)", piece)
    if not m:
      return piece
    piece = m.group(1)


def classify(
  op_name: str, depth: int = 4, model: str = "ART"
) -> tuple[str, str]:
  """(pass, module path) of one op from its jax name stack.

  pass: "forward", "backward", "remat" (forward ops recomputed in the
  backward pass) or "update" (outside the differentiated function: the
  optimizer, the text-bank update). The path keeps the first `depth`
  module names under the top-level module `model`, without the loop/remat
  plumbing and the primitive; differentiated ops outside `model` are
  "(losses)".
  """
  if "rematted_computation" in op_name:
    pass_ = "remat"
  elif "transpose(" in op_name:
    pass_ = "backward"
  elif "jvp(" in op_name:
    pass_ = "forward"
  else:
    pass_ = "update"
  pieces = op_name.split("/")
  scope_at = next(
    (i for i, p in enumerate(pieces) if re.match(r"^(transpose\()?jvp\(", p)),
    None,
  )
  if scope_at is None and pass_ != "remat":
    return pass_, "(outside the model)"
  if scope_at is not None and _strip_wrappers(pieces[scope_at]) != model:
    return pass_, "(losses)"  # differentiated, but not inside the model
  # (Some recomputed ops lose the scope above the remat: keep what is left.)
  start = 0 if scope_at is None else scope_at + 1
  path = []
  for piece in pieces[start:-1]:  # the last piece is the primitive
    piece = _strip_wrappers(piece)
    if not piece or _NOISE.match(piece) or any(c in piece for c in ".,>"):
      continue  # also method scopes (`backbone._blocks`), einsum specs
    path.append(piece)
  return pass_, "/".join(path[:depth]) or "(model top level)"


_REDUCTIONS = {
  "reduce_sum",
  "reduce_max",
  "reduce_min",
  "reduce_prod",
  "argmax",
  "argmin",
  "reduce_and",
  "reduce_or",
}
_DATA_MOVEMENT = {
  "copy",
  "transpose",
  "concatenate",
  "pad",
  "slice",
  "dynamic_slice",
  "dynamic_update_slice",
  "broadcast_in_dim",
  "reshape",
  "gather",
  "scatter",
  "scatter-add",
  "rev",
  "select_and_scatter_add",
  "squeeze",
  "expand_dims",
}


def op_kind(op: str, op_name: str) -> str:
  """What an XLA op does, from its HLO name and its root's jax primitive:
  "matmul", "attention" (fused kernels), "reduction", "data movement",
  "elementwise" or "CUDA graph" (an opaque command buffer)."""
  primitive = op_name.rsplit("/", 1)[-1]
  if "dot_product_attention" in op or "dot_product_attention" in op_name:
    return "attention"
  if op.startswith("command_buffer"):
    return "CUDA graph"
  # cuBLAS GEMMs are custom calls; a backward matmul's root is often a
  # `transpose` of the forward one, so the HLO name decides first.
  if primitive == "dot_general" or re.match(
    r"(custom-call|cublas|gemm_fusion|triton_gemm|dot)([._]|$)", op
  ):
    return "matmul"
  if primitive in _DATA_MOVEMENT or op.startswith(
    ("copy", "wrapped_transpose")
  ):
    return "data movement"
  if primitive in _REDUCTIONS or op.startswith(("input_", "reduce")):
    return "reduction"
  return "elementwise"


def _event_planes(space: Any) -> list[Any]:
  """Device planes if the trace has any, else the host planes (CPU)."""
  planes = list(space.planes)
  device = [p for p in planes if p.name.startswith("/device:")]
  return device or [p for p in planes if p.name.startswith("/host:")]


def op_times(xplane_path: str, module: str | None = None) -> dict[str, float]:
  """Seconds spent per HLO op in a trace (events with an `hlo_op` stat),
  summed over the whole trace; only ops of HLO modules whose name contains
  `module` when given."""
  from jax.profiler import ProfileData  # noqa: PLC0415 - jax >= 0.4.36

  times: dict[str, float] = collections.defaultdict(float)
  for plane in _event_planes(ProfileData.from_file(xplane_path)):
    for line in plane.lines:
      for event in line.events:
        stats = dict(event.stats)
        op = stats.get("hlo_op")
        if not op:
          continue
        if module and module not in str(stats.get("hlo_module", "")):
          continue
        if _CONTAINER.match(str(op)):
          continue  # its ops have their own events (CPU thunks nest)
        times[str(op)] += event.duration_ns * 1e-9
  return dict(times)


def _sample(xplane_path: str, per_line: int = 2) -> str:
  """A few events of each plane line, to say what a trace did hold."""
  from jax.profiler import ProfileData  # noqa: PLC0415

  out = []
  for plane in ProfileData.from_file(xplane_path).planes:
    for line in plane.lines:
      for i, event in enumerate(line.events):
        if i == per_line:
          break
        out.append(
          f"{plane.name}/{line.name}: {event.name} {sorted(dict(event.stats))}"
        )
  return "; ".join(out[:40])


def summarise(
  times: dict[str, float],
  names: dict[str, str],
  steps: int,
  step_s: float | None = None,
  depth: int = 4,
) -> dict[str, Any]:
  """Per-step device seconds by pass, by (pass-free) module path, by kind
  of op (`op_kind`) and by op.

  `step_s` (the measured wall time of one step) adds the share of the step
  the device was busy with these ops.
  """
  by_pass: dict[str, float] = collections.defaultdict(float)
  by_path: dict[str, float] = collections.defaultdict(float)
  by_kind: dict[str, float] = collections.defaultdict(float)
  ops = []
  for op, seconds in times.items():
    op_name = names.get(op, "")
    if op_name:
      pass_, path = classify(op_name, depth)
    else:  # copies and layout changes XLA added
      pass_, path = "?", "(no op_name: copies, layout)"
    per_step = seconds / steps
    kind = op_kind(op, op_name)
    by_pass[pass_] += per_step
    by_path[path] += per_step
    by_kind[kind] += per_step
    ops.append(
      {
        "op": op,
        "s": per_step,
        "pass": pass_,
        "path": path,
        "kind": kind,
        "op_name": op_name,
      }
    )
  total = sum(by_pass.values())
  ops.sort(key=lambda r: -r["s"])
  out = {
    "device_s_per_step": total,
    "by_pass": dict(sorted(by_pass.items(), key=lambda kv: -kv[1])),
    "by_path": dict(sorted(by_path.items(), key=lambda kv: -kv[1])),
    "by_kind": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
    "top_ops": ops,
  }
  if step_s:
    out["step_s"] = step_s
    out["busy_fraction"] = total / step_s
  graphs = by_kind.get("CUDA graph", 0.0)
  if total and graphs > 0.1 * total:
    out["note"] = (
      f"{100 * graphs / total:.0f}% of the time is in XLA command buffers "
      "(CUDA graphs), whose ops the trace does not name: profile again with "
      f"XLA_FLAGS={NO_COMMAND_BUFFERS} (bench.sh: XLA_EXTRA=...)"
    )
  return out


def profile_calls(
  fn: Callable[[], Any],
  hlo_text: str,
  steps: int,
  log_dir: str,
  module: str | None = None,
  step_s: float | None = None,
  depth: int = 4,
) -> dict[str, Any]:
  """Trace `steps` calls of `fn` into `log_dir` and summarise (above)."""

  def traces() -> set[str]:
    return set(
      glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True)
    )

  jax.block_until_ready(fn())  # nothing from earlier calls in the trace
  before = traces()
  with jax.profiler.trace(log_dir):
    for _ in range(steps):
      jax.block_until_ready(fn())
  new = sorted(traces() - before, key=os.path.getmtime)
  if not new:
    raise RuntimeError(f"the profiler wrote no trace under {log_dir}")
  times = op_times(new[-1], module)
  if not times:
    raise RuntimeError(f"no XLA op events in {new[-1]}: {_sample(new[-1])}")
  out = summarise(times, hlo_op_names(hlo_text), steps, step_s, depth)
  out["trace"] = new[-1]
  return out


def _table(
  title: str, items: Iterable[tuple[str, float]], total: float, limit: int
) -> list[str]:
  lines = [f"| {title} | ms/step | % |", "|---|---|---|"]
  for i, (key, s) in enumerate(items):
    if i == limit:
      break
    lines.append(f"| {key} | {1e3 * s:.2f} | {100 * s / total:.1f} |")
  return lines


def markdown(summary: dict[str, Any], top: int = 25) -> str:
  """The summary as Markdown tables (pass, kind, module path, top ops)."""
  total = summary["device_s_per_step"] or float("nan")
  head = f"Device time of XLA ops: {1e3 * total:.2f} ms/step"
  if "step_s" in summary:
    head += (
      f" of {1e3 * summary['step_s']:.2f} ms wall "
      f"({100 * summary['busy_fraction']:.0f}% busy)"
    )
  lines = [head, ""] + ([summary["note"], ""] if "note" in summary else [])
  lines += _table("pass", summary["by_pass"].items(), total, top)
  lines += [""] + _table("kind of op", summary["by_kind"].items(), total, top)
  lines += [""] + _table("module", summary["by_path"].items(), total, top)
  lines += ["", "| op | pass | module | ms/step | % |", "|---|---|---|---|---|"]
  for r in summary["top_ops"][:top]:
    lines.append(
      f"| {r['op']} | {r['pass']} | {r['path']} | "
      f"{1e3 * r['s']:.2f} | {100 * r['s'] / total:.1f} |"
    )
  return "\n".join(lines)


def resummarise(summary: dict[str, Any], depth: int = 4) -> dict[str, Any]:
  """A saved summary (JSON of `summarise`) grouped again, e.g. at another
  `depth` or after this module's rules changed."""
  times = {r["op"]: r["s"] for r in summary["top_ops"]}
  names = {r["op"]: r["op_name"] for r in summary["top_ops"]}
  return summarise(times, names, 1, summary.get("step_s"), depth)


def define_flags() -> None:
  """Command-line flags (defined only when run as a program)."""
  flags.DEFINE_integer("top", 25, "Ops listed.")
  flags.DEFINE_integer("depth", 4, "Name-path depth of the grouping.")


def main(argv: list[str]) -> None:
  """python -m art_jax.tools.step_profile SUMMARY.json[.gz] [--top] [--depth]

  SUMMARY: b<batch>.json written by bench_train --profile_steps.
  """
  import gzip  # noqa: PLC0415
  import json  # noqa: PLC0415

  if len(argv) != 2:
    raise app.UsageError("give one SUMMARY.json[.gz] (bench_train writes it)")
  path = argv[1]
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt") as f:
    summary = json.load(f)
  print(markdown(resummarise(summary, flags.FLAGS.depth), flags.FLAGS.top))


if __name__ == "__main__":
  define_flags()
  app.run(main)
