r"""What the demo's tiny CLIP learned: zero-shot Top-1 and the bank's shape.

* Zero-shot Top-1 of the tiny CLIP (`art_jax.demo.clip_pretrain`) on the demo's
  validation clips (the split and frames the demo evaluates on): each
  clip's video-tower embedding against the class embeddings, the mean over
  templates of the text bank (built from the class-name prompts), as CLIP
  classifies zero-shot. The tiny CLIP never saw a class name or label.
* The bank's structure: mean cosine between class embeddings of the demo's
  single-motion classes that share the limb (other motion), share the
  motion word (other limb), or share neither; single classes against the
  two-motion classes containing them; and each reversed pair ("X then Y"
  vs "Y then X": the same words in another order; a bag of words would
  give exactly 1). The same numbers for the random tiny text tower the
  demo used before ("tiny") are printed alongside.

  python -m art_jax.tools.clip_probe --config=configs/demo.py [--out=probe.json]

(builds the demo's data and tiny CLIP first if absent).
"""

import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from art_jax import text_bank
from art_jax.data import pipeline, synthetic
from art_jax.demo import clip_pretrain, inputs, motion_captions, tiny_clip


def class_embeddings(bank: np.ndarray) -> np.ndarray:
  """Bank (K, M, D) -> (K, D): the normalised template mean per class."""
  c = np.asarray(bank, np.float32).mean(1)
  return c / np.linalg.norm(c, axis=-1, keepdims=True)


def _words(events: Sequence[tuple[str, str]]) -> tuple[set, set]:
  limbs = {limb for limb, _ in events}
  motions = {motion_captions.motion_name(limb, m) for limb, m in events}
  return limbs, motions


def bank_structure(
  bank: np.ndarray,
  class_names: Sequence[str],
  classes: Sequence[tuple[str, Any]] = synthetic.CLASSES,
) -> dict[str, Any]:
  """Mean cosines between class embeddings of bank (K, M, D), by relation.

  Classes are matched to `classes` ((name, events), the synthetic
  classes) by name. Returns {"same_limb", "same_motion", "unrelated"} over
  single-motion class pairs, "single_in_pair" (a single class vs a
  two-motion class holding its event), "reversed_pairs" {"A | B": cosine}
  and "reversed_per_template" (the mean cosine of the same template filled
  with A and B).
  """
  events = dict(classes)
  ev = [tuple(events[n]) for n in class_names]
  c = class_embeddings(bank)
  cos = c @ c.T
  groups: dict[str, list[float]] = {
    "same_limb": [],
    "same_motion": [],
    "unrelated": [],
    "single_in_pair": [],
  }
  reversed_pairs, per_template = {}, []
  k = len(ev)
  for i in range(k):
    for j in range(i + 1, k):
      (li, mi), (lj, mj) = _words(ev[i]), _words(ev[j])
      if len(ev[i]) == len(ev[j]) == 1:
        if li == lj:
          groups["same_limb"].append(cos[i, j])
        elif mi == mj:
          groups["same_motion"].append(cos[i, j])
        else:
          groups["unrelated"].append(cos[i, j])
      elif len(ev[i]) != len(ev[j]):
        single, pair = (ev[i], ev[j]) if len(ev[i]) == 1 else (ev[j], ev[i])
        if single[0] in pair:
          groups["single_in_pair"].append(cos[i, j])
      elif ev[i] == ev[j][::-1]:
        reversed_pairs[f"{class_names[i]} | {class_names[j]}"] = float(
          cos[i, j]
        )
        per_template.append(float(np.mean(np.sum(bank[i] * bank[j], axis=-1))))
  out = {g: float(np.mean(v)) if v else None for g, v in groups.items()}
  out["reversed_pairs"] = reversed_pairs
  out["reversed_per_template"] = (
    float(np.mean(per_template)) if per_template else None
  )
  return out


def zero_shot(
  config: ml_collections.ConfigDict,
  bank: np.ndarray,
  batch_size: int = 48,
) -> dict[str, Any]:
  """Zero-shot Top-1 of the config's trained tiny CLIP video tower against
  the bank's class embeddings on the config's eval split. -> {"top1",
  "per_class", "num_clips"}."""
  embed_videos = clip_pretrain.load_video_embedder(config)
  classes = jnp.asarray(class_embeddings(bank))

  def predict(x):
    v = clip_pretrain.normalize(embed_videos(x))
    return jnp.argmax(v @ classes.T, 1)

  d = config.data
  it = pipeline.make_eval_iterator(
    d.dir,
    d.eval_split,
    batch_size=batch_size,
    num_frames=d.num_frames,
    sampling=d.sampling,
    frame_stride=d.frame_stride,
    crop_size=d.crop_size,
    num_classes=d.num_classes,
  )
  preds, labels = [], []
  for batch in it:
    p = np.asarray(predict(batch["video"]))
    preds.append(p[batch["mask"]])
    labels.append(batch["label"][batch["mask"]])
  preds, labels = np.concatenate(preds), np.concatenate(labels)
  per_class = [
    float(np.mean(preds[labels == c] == c)) if np.any(labels == c) else None
    for c in range(len(bank))
  ]
  return {
    "top1": float(np.mean(preds == labels)),
    "per_class": per_class,
    "num_clips": int(len(labels)),
  }


def random_bank(
  class_names: Sequence[str], templates: Sequence[str], seed: int = 0
) -> np.ndarray:
  """The bank of the random tiny text tower (`text_bank.clip = "tiny"`)."""
  with tempfile.TemporaryDirectory() as d:
    tiny_clip.write_tiny_clip_checkpoint(
      d,
      words=list(class_names) + list(templates),
      width=64,
      layers=2,
      heads=4,
      projection_dim=64,
      seed=seed,
    )
    return text_bank.build_text_bank(d, class_names, templates, progress=False)


def probe(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Builds what is missing (data, tiny CLIP, bank), then measures."""
  inputs.ensure_synthetic_data(config)
  inputs.ensure_text_bank(config)
  bank, meta = text_bank.load_text_bank(config.text_bank.dir)
  names, templates = meta["class_names"], meta["templates"]
  with open(
    os.path.join(config.text_bank.dir, clip_pretrain.SUMMARY_FILE)
  ) as f:
    pretrain_summary = json.load(f)
  return {
    "zero_shot": zero_shot(config, bank),
    "bank": bank_structure(bank, names),
    "random_tiny_bank": bank_structure(
      random_bank(names, templates, config.seed), names
    ),
    "pretrain": {
      k: v for k, v in pretrain_summary.items() if k != "clip_pretrain"
    },
  }


def define_flags() -> None:
  """Command-line flags (only when run as a program)."""
  config_flags.DEFINE_config_file("config", None, "Config file.")
  flags.DEFINE_string("out", None, "Also write the JSON here.")
  flags.mark_flags_as_required(["config"])


def main(argv: Sequence[str]) -> None:
  del argv
  config = flags.FLAGS.config
  if config.text_bank.clip != clip_pretrain.CLIP_NAME:
    raise app.UsageError(
      f"set --config.text_bank.clip={clip_pretrain.CLIP_NAME}"
    )
  result = probe(config)
  text = json.dumps(result, indent=1)
  print(text)
  if flags.FLAGS.out:
    with open(flags.FLAGS.out, "w", encoding="utf-8") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  define_flags()
  app.run(main)
