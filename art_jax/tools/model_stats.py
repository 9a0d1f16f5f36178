r"""Parameters and XLA-counted GFLOPs of the backbones and ART, per view.

  python -m art_jax.tools.model_stats [--presets=b16,l14,r50] [--frames=16]
      [--num_classes=99] [--compile_l14]

Presets b16 / l14 / l14_336 are UniFormerV2 (each backbone recipe below);
r50 is TEA-R50 and ART-R50 at 224, the heads without text as the r50
configs run them (config_lib.set_r50).

Parameters are counted on `jax.eval_shape` (nothing is allocated; BatchNorm
statistics excluded, like PyTorch's parameters()). FLOPs come from XLA's
cost analysis of the lowered single-clip forward pass in float32, halved so
that a multiply-add counts once (the fvcore convention of the paper).
`--compile_l14` also times lowering + compiling ART-L/14's forward+backward
on this machine's CPU.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from art_jax import config_lib, reporting, text_bank
from art_jax.models import art, backbones, uniformerv2
from art_jax.tools import bench_lib


def define_flags() -> None:
  """Command-line flags; defined only when run as a program."""
  flags.DEFINE_list("presets", ["b16", "l14", "r50"], "Backbone presets.")
  flags.DEFINE_integer("frames", 16, "Input frames T.")
  flags.DEFINE_integer("num_classes", 99, "Classes K (Gym99).")
  flags.DEFINE_integer("templates", 16, "Prompt templates M.")
  flags.DEFINE_bool(
    "compile_l14", False, "Time ART-L/14 forward+backward compile."
  )


# ../shared/ART_SPEC.md, "Reference figures from the paper".
PAPER = {
  ("UniFormerV2", "l14"): ("1332", "345.05"),
  ("ART", "b16"): ("436", "-"),
  ("ART", "l14"): ("1390 (1429 in Table VII)", "365.01"),
  # Table I, CNN rows (16 frames): TEA as the paper lists it, and ART-R50.
  ("TEA", "r50"): ("70", "-"),
  ("ART", "r50"): ("72", "-"),
}


def count_params(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


# Backbone recipes: the presets' defaults (Local MHRA, temporal
# downsampling: T' = T/2), and UniFormerV2's Kinetics recipe that its
# published 16x224 figures use (exp/k400/*_f16x224: NO_LMHRA,
# TEMPORAL_DOWNSAMPLE False, so T' = T).
RECIPES = {
  "preset": {},
  "k400": config_lib.KINETICS_BACKBONE,
}


def _models(
  preset: str,
  frames: int,
  num_classes: int,
  scan: bool = False,
  recipe: str = "preset",
):
  """XLA's cost analysis counts a scanned body once, not per layer: FLOPs
  are counted on the unrolled (scan=False) model."""
  kwargs = uniformerv2.preset_kwargs(
    preset, num_classes=num_classes, t_size=frames, scan=scan, **RECIPES[recipe]
  )
  backbone = uniformerv2.UniFormerV2(**kwargs)
  full = art.ART(
    backbone=kwargs, heads={"num_classes": num_classes, "scan": scan}
  )
  return kwargs, backbone, full


def _tea_models(frames: int, num_classes: int):
  """TEA-R50 and ART-R50 (heads without text, as config_lib.set_r50)."""
  kwargs = backbones.preset_kwargs(
    "tea", "r50", num_classes=num_classes, num_segments=frames
  )
  full = art.ART(
    backbone=kwargs,
    heads={"num_classes": num_classes, "scan": False, "use_text": False},
    backbone_kind="tea",
  )
  return backbones.build("tea", kwargs), full


def stats(
  preset: str, frames: int, num_classes: int, templates: int, recipe: str
):
  """Rows for the backbone and ART at `preset` (UniFormerV2 with a
  backbone recipe, or r50: TEA, whose `recipe` is not read)."""
  if preset == "r50":
    backbone_name, res = "TEA", 224
    backbone, full = _tea_models(frames, num_classes)
    bank_shape = text_bank.blank_bank(num_classes).shape
    recipe = "-"
  else:
    backbone_name = "UniFormerV2"
    kwargs, backbone, full = _models(preset, frames, num_classes, recipe=recipe)
    res = kwargs["input_resolution"]
    bank_shape = (num_classes, templates, reporting.TEXT_DIM[preset])
  video = jax.ShapeDtypeStruct((1, frames, res, res, 3), jnp.float32)
  bank = jax.ShapeDtypeStruct(bank_shape, jnp.float32)
  key = jax.random.key(0)
  rows = []
  for name, model, args in (
    (backbone_name, backbone, (video,)),
    ("ART", full, (video, bank)),
  ):
    variables = jax.eval_shape(
      lambda *a, m=model: m.init(key, *a, train=False), *args
    )
    params = count_params(variables["params"])
    flops = reporting.forward_flops(
      lambda v, *a, m=model: m.apply(v, *a, train=False), variables, *args
    )
    gflops = flops / 2 / 1e9
    paper_gflops, paper_params = PAPER.get((name, preset), ("-", "-"))
    rows.append(
      {
        "model": f"{name} {preset.upper()}",
        "recipe": recipe,
        "input": f"{frames}x{res}",
        "params (M)": f"{params / 1e6:.2f}",
        "GFLOPs/view": f"{gflops:.0f}",
        "paper params (M)": paper_params,
        "paper GFLOPs": paper_gflops,
      }
    )
  return rows


def compile_time_l14(frames: int, num_classes: int, templates: int) -> float:
  """Seconds to lower + compile ART-L/14 forward+backward (batch 1, CPU)."""
  kwargs, _, full = _models("l14", frames, num_classes, scan=True)
  res = kwargs["input_resolution"]
  video = jax.ShapeDtypeStruct((1, frames, res, res, 3), jnp.bfloat16)
  bank = jax.ShapeDtypeStruct((num_classes, templates, 768), jnp.float32)
  full = full.clone(
    dtype=jnp.bfloat16, backbone={**kwargs, "remat_policy": "nothing_saveable"}
  )
  variables = jax.eval_shape(
    lambda v, b: full.init(jax.random.key(0), v, b, train=False), video, bank
  )

  def loss(params, batch_stats, v, b):
    out, _ = full.apply(
      {"params": params, "batch_stats": batch_stats},
      v,
      b,
      train=True,
      rngs={"dropout": jax.random.key(1)},
      mutable=["batch_stats"],
    )
    return out["logits"].astype(jnp.float32).sum()

  t0 = time.perf_counter()
  jax.jit(jax.grad(loss)).lower(
    variables["params"], variables["batch_stats"], video, bank
  ).compile()
  return time.perf_counter() - t0


def main(argv):
  del argv
  rows = []
  for recipe in RECIPES:
    for preset in flags.FLAGS.presets:
      if preset == "r50" and recipe != "preset":
        continue  # the recipes are UniFormerV2's
      rows += stats(
        preset,
        flags.FLAGS.frames,
        flags.FLAGS.num_classes,
        flags.FLAGS.templates,
        recipe,
      )
  print(bench_lib.markdown_table(rows))
  if flags.FLAGS.compile_l14:
    seconds = compile_time_l14(
      flags.FLAGS.frames, flags.FLAGS.num_classes, flags.FLAGS.templates
    )
    print(
      f"\nART-L/14 forward+backward compile on "
      f"{jax.devices()[0].device_kind}: {seconds:.1f} s"
    )


if __name__ == "__main__":
  define_flags()
  app.run(main)
