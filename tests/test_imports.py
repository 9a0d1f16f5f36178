"""The package's import graph: no cycles, and the core never imports the
tools or the demo; importing every module defines no command-line flag.

The graph is read from the source (`ast`, module-level and in-function
imports alike), so nothing is imported to check it.
"""

import ast
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "art_jax"
# What may import the demo and the tools: the tools and the demo
# themselves, and the entry point that builds the demo's inputs.
NOT_CORE = ("art_jax.tools", "art_jax.demo")
ENTRY_POINTS = ("art_jax.main",)


def module_names() -> dict[str, pathlib.Path]:
  """Dotted module name -> file, for every module of the package."""
  out = {}
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = path
  return out


def _resolve(name: str, modules: dict[str, pathlib.Path]) -> str | None:
  """The art_jax module an imported dotted name refers to (None: outside)."""
  while name and name not in modules:
    name = name.rpartition(".")[0]
  return name or None


def imports_of(module: str, modules: dict[str, pathlib.Path]) -> set[str]:
  """art_jax modules `module` imports anywhere in its source."""
  tree = ast.parse(modules[module].read_text(), str(modules[module]))
  is_package = modules[module].name == "__init__.py"
  found = set()
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = module.split(".")
        anchor = anchor[: len(anchor) - node.level + is_package]
        base = ".".join([*anchor, base] if base else anchor)
      # `from pkg import name`: a submodule if one has that name.
      names = [f"{base}.{a.name}" for a in node.names] or [base]
    for name in names:
      if name == "art_jax" or name.startswith("art_jax."):
        target = _resolve(name, modules)
        if target and target != module:
          found.add(target)
  return found


def import_graph() -> dict[str, set[str]]:
  modules = module_names()
  return {m: imports_of(m, modules) for m in modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components of more than one module (Tarjan)."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def _is_under(module: str, prefixes) -> bool:
  return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_walker_sees_module_level_and_in_function_imports():
  modules = {"art_jax": None, "art_jax.a": None, "art_jax.sub": None}
  modules["art_jax.sub.b"] = None
  assert _resolve("art_jax.sub.b.thing", modules) == "art_jax.sub.b"
  assert _resolve("art_jax.nothing", modules) == "art_jax"
  assert cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [
    ["x", "y", "z"]
  ]
  graph = import_graph()
  # main imports the trainer inside main() (after flags are parsed).
  assert "art_jax.train" in graph["art_jax.main"]


def test_no_import_cycles():
  found = cycles(import_graph())
  assert not found, "import cycles among art_jax modules: " + "; ".join(
    " <-> ".join(c) for c in found
  )


def test_the_core_imports_neither_the_tools_nor_the_demo():
  bad = [
    f"{m} imports {t}"
    for m, targets in sorted(import_graph().items())
    if not _is_under(m, NOT_CORE + ENTRY_POINTS)
    for t in sorted(targets)
    if _is_under(t, NOT_CORE)
  ]
  assert not bad, "core -> tools/demo imports:\n  " + "\n  ".join(bad)


def test_every_module_imports_in_one_process_and_defines_no_flag():
  """Flags are defined only when a module runs as a program: importing two
  CLIs that define the same flag at import raises DuplicateFlagError."""
  names = sorted(module_names())
  script = (
    "import importlib, json, sys\n"
    "from absl import flags\n"
    f"for name in {names!r}:\n"
    "  importlib.import_module(name)\n"
    "owners = sorted(m for m in flags.FLAGS.flags_by_module_dict()\n"
    "                if m.startswith('art_jax'))\n"
    "print(json.dumps(owners))\n"
  )
  proc = subprocess.run(
    [sys.executable, "-c", script],
    capture_output=True,
    text=True,
    cwd=ROOT,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
