r"""The paper's ablation tables, trained and evaluated with the real trainer.

  python -m art_jax.tools.ablate --config=configs/demo.py:ablation \
      --table=IV [--settings=baseline,rssa_ta_mtc] [--seeds=3] \
      [--seed_offset=0] [--workdir=runs/ablate] [--config.total_steps=...]

--table is IV, V or VI; each row's setting (every model and loss switch)
comes from `art_jax.ablations` (the one table of settings, ART_SPEC section
12). Each setting runs once per seed (seeds seed_offset .. seed_offset +
seeds - 1; the seed changes initialisation, data order and augmentation) in
<workdir>/<setting>_seed<seed>, so a row shared by two tables (IV (4) =
V (1), IV (5) = V (6) = VI (1)) is one run. A finished run (its
result.json) is reused, an unfinished one resumes from its last
checkpoint. Prints a Markdown table of mean and standard deviation of
Top-1 and mean class accuracy over seeds and writes it, with the per-seed
numbers, to <workdir>/table_<table>.md.
"""

import json
import os
from collections.abc import Sequence

import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from art_jax import ablations, train
from art_jax.demo import inputs

RESULT_KEYS = ("top1", "top5", "mean_class_accuracy", "steps")


def define_flags() -> None:
  """Command-line flags; defined only when run as a program, so that
  importing this module (tests, notebooks) defines none."""
  config_flags.DEFINE_config_file("config", None, "Config file.")
  flags.DEFINE_enum("table", "IV", list(ablations.TABLES), "Paper table.")
  flags.DEFINE_list(
    "settings", [], "Subset of the table's settings (default: all rows)."
  )
  flags.DEFINE_integer("seeds", 3, "Seeds per setting.")
  flags.DEFINE_integer("seed_offset", 0, "First seed.")
  flags.DEFINE_string("workdir", "runs/ablate", "Root folder.")
  flags.mark_flags_as_required(["config"])


def select_rows(table: str, settings: Sequence[str]) -> list[tuple[str, str]]:
  """The table's (setting, label) rows, restricted to `settings` if given."""
  rows = ablations.table_rows(table)
  if not settings:
    return rows
  known = [name for name, _ in rows]
  unknown = [s for s in settings if s not in known]
  if unknown:
    raise ValueError(
      f"settings {unknown} are not rows of Table {table}; its rows: {known}"
    )
  return [row for row in rows if row[0] in settings]


def run_dir(workdir: str, setting: str, seed: int) -> str:
  return os.path.join(workdir, f"{setting}_seed{seed}")


def run_setting(
  base: ml_collections.ConfigDict, workdir: str, setting: str, seed: int
) -> dict:
  """Trains and evaluates one (setting, seed), or reads its result.json;
  its inputs exist (`main` builds them)."""
  out = run_dir(workdir, setting, seed)
  done = os.path.join(out, "result.json")
  if os.path.exists(done):
    with open(done) as f:
      return json.load(f)
  result = train.train_and_evaluate(ablations.apply(base, setting, seed), out)
  result = {k: result[k] for k in RESULT_KEYS}
  os.makedirs(out, exist_ok=True)
  with open(done + ".tmp", "w") as f:
    json.dump(result, f)
  os.replace(done + ".tmp", done)
  return result


def summarise(
  rows: Sequence[tuple[str, str]], results: dict[str, list[dict]]
) -> str:
  """Markdown: mean ± std (population) of Top-1 and mean class accuracy."""
  lines = ["| setting | seeds | Top-1 (%) | Mean (%) |", "|---|---|---|---|"]
  for setting, label in rows:
    runs = results.get(setting, [])
    if not runs:
      continue
    top1 = 100 * np.array([r["top1"] for r in runs])
    mean = 100 * np.array([r["mean_class_accuracy"] for r in runs])
    lines.append(
      f"| {label} | {len(runs)} | "
      f"{top1.mean():.1f} ± {top1.std():.1f} | "
      f"{mean.mean():.1f} ± {mean.std():.1f} |"
    )
  return "\n".join(lines)


def per_seed(
  rows: Sequence[tuple[str, str]], results: dict[str, list[dict]]
) -> str:
  """One line per setting: Top-1 of each seed, in seed order."""
  lines = []
  for setting, label in rows:
    runs = sorted(results.get(setting, []), key=lambda r: r["seed"])
    digits = "/".join(f"{100 * r['top1']:.1f}" for r in runs)
    lines.append(
      f"- {label}: Top-1 {digits} (seeds {[r['seed'] for r in runs]})"
    )
  return "\n".join(lines)


def main(argv):
  del argv
  f = flags.FLAGS
  rows = select_rows(f.table, f.settings)
  seeds = range(f.seed_offset, f.seed_offset + f.seeds)
  results: dict[str, list[dict]] = {}
  total = len(rows) * len(seeds)
  # Seed by seed, every row at one seed before the next seed, so that a run
  # stopped early leaves whole rows of a table comparable.
  for i, (seed, setting) in enumerate(
    (seed, s) for seed in seeds for s, _ in rows
  ):
    logging.info("ablation run %d/%d: %s seed %d", i + 1, total, setting, seed)
    # The demo's data, bank and backbone, built on first use (as main does).
    inputs.ensure_inputs(ablations.apply(f.config, setting, seed))
    result = {**run_setting(f.config, f.workdir, setting, seed), "seed": seed}
    print(f"{setting} seed {seed}: {json.dumps(result)}", flush=True)
    results.setdefault(setting, []).append(result)
  table = summarise(rows, results)
  print(table)
  os.makedirs(f.workdir, exist_ok=True)
  with open(os.path.join(f.workdir, f"table_{f.table}.md"), "w") as out:
    out.write(table + "\n\n" + per_seed(rows, results) + "\n")


if __name__ == "__main__":
  define_flags()
  app.run(main)
