r"""Paper Table IV ablations, trained and evaluated with the real trainer.

  python -m art_jax.tools.ablate --config=configs/demo.py --seeds=3 \
      [--settings=baseline,rssa,rssa_no_se,rssa_ta,art] [--workdir=runs/ablate]
      [--config.total_steps=...]

Settings (ART_SPEC section 12, Table IV):
  baseline    UniFormerV2 alone: logits_g, cross-entropy only;
  rssa        + RSSA with sum aggregation (no TA), CE terms only;
  rssa_no_se  + RSSA without spatial semantic enhancement, CE terms only;
  rssa_ta     + RSSA + tracklet aggregation, CE terms only;
  art         the full method: + MTC loss and text fine-tuning (L_vc, L_pc).
Each setting runs once per seed (seed changes initialisation, data order and
augmentation); prints a Markdown table of mean and standard deviation of
Top-1 and mean class accuracy over seeds, and writes it to
<workdir>/ablation.md. Finished runs are reused (the trainer resumes).
"""

import json
import os

import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from art_jax import losses, train
from art_jax.models import art


def define_flags() -> None:
  """Command-line flags; defined only when run as a program, so that
  importing this module (tests, notebooks) defines none."""
  config_flags.DEFINE_config_file("config", None, "Config file.")
  flags.DEFINE_integer("seeds", 3, "Seeds per setting.")
  flags.DEFINE_list(
    "settings",
    ["baseline", "rssa", "rssa_no_se", "rssa_ta", "art"],
    "Table IV settings to run.",
  )
  flags.DEFINE_string("workdir", "runs/ablate", "Root folder.")
  flags.mark_flags_as_required(["config"])


LABELS = {
  "baseline": "(1) baseline (UniFormerV2)",
  "rssa": "(2) + RSSA",
  "rssa_no_se": "(3) + RSSA w/o SE",
  "rssa_ta": "(4) + RSSA + TA",
  "art": "(5) ART (+ MTC + text fine-tuning)",
}


def setting_config(
  base: ml_collections.ConfigDict, setting: str, seed: int
) -> ml_collections.ConfigDict:
  """`base` with the model and loss switches of `setting` and `seed`."""
  if setting not in LABELS:
    raise ValueError(f"unknown setting {setting!r}; known: {list(LABELS)}")
  c = ml_collections.ConfigDict(base.to_dict())
  c.seed = seed
  heads = {"use_rssa": True, "use_se": True, "use_ta": True}
  heads.update(art.ABLATIONS[setting])
  c.model.heads.update(heads)
  loss = losses.LOSS_SETTINGS[setting]
  for field in (
    "use_global",
    "use_final",
    "use_mtc",
    "use_ft",
    "use_vc",
    "use_pc",
    "use_spa",
    "use_tem",
    "use_trk",
  ):
    c.loss[field] = getattr(loss, field)
  return c


def summarise(results: dict[str, list[dict]]) -> str:
  """Markdown: mean ± std of Top-1 and mean class accuracy per setting."""
  lines = ["| setting | seeds | Top-1 (%) | Mean (%) |", "|---|---|---|---|"]
  for setting, runs in results.items():
    top1 = 100 * np.array([r["top1"] for r in runs])
    mean = 100 * np.array([r["mean_class_accuracy"] for r in runs])
    lines.append(
      f"| {LABELS[setting]} | {len(runs)} | "
      f"{top1.mean():.1f} ± {top1.std():.1f} | "
      f"{mean.mean():.1f} ± {mean.std():.1f} |"
    )
  return "\n".join(lines)


def main(argv):
  del argv
  base = flags.FLAGS.config
  results: dict[str, list[dict]] = {}
  for setting in flags.FLAGS.settings:
    for seed in range(flags.FLAGS.seeds):
      workdir = os.path.join(flags.FLAGS.workdir, f"{setting}_seed{seed}")
      done = os.path.join(workdir, "result.json")
      if os.path.exists(done):
        with open(done) as f:
          result = json.load(f)
      else:
        result = train.train_and_evaluate(
          setting_config(base, setting, seed), workdir
        )
        result = {
          k: result[k] for k in ("top1", "top5", "mean_class_accuracy", "steps")
        }
        with open(done, "w") as f:
          json.dump(result, f)
      print(f"{setting} seed {seed}: {json.dumps(result)}", flush=True)
      results.setdefault(setting, []).append(result)
  table = summarise(results)
  print(table)
  os.makedirs(flags.FLAGS.workdir, exist_ok=True)
  with open(os.path.join(flags.FLAGS.workdir, "ablation.md"), "w") as f:
    f.write(table + "\n")


if __name__ == "__main__":
  define_flags()
  app.run(main)
