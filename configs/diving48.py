r"""ART on Diving48 (V2 annotations).

  python -m art_jax.data.prepare --dataset=diving48 --videos=.../rgb \
      --annotations=... --out=data/diving48
  python -m art_jax.main --config=configs/diving48.py:b16

Variants: b16 | l14 | r50 (TEA-R50 from ImageNet Res2Net weights, no
text: config_lib.set_r50), paper (the paper's SGD recipe from a K400
checkpoint), runlocal. Paper: ART ViT-L/14 Top-1 87.9, ViT-B/16 87.0,
R50 85.4.
"""

from art_jax import config_lib

NUM_CLASSES = 48  # Diving48_vocab.json


def get_config(arg: str | None = None):
  v = config_lib.parse_variant(
    arg,
    size=("b16", config_lib.BACKBONE_SIZES),
    runlocal=(False, bool),
    paper=(False, bool),
  )
  c = config_lib.base_config()
  c.name = f"diving48-{v['size']}"
  c.data.dataset = "diving48"
  c.data.num_classes = NUM_CLASSES
  c.data.eval_split = "test"
  c.model.preset = v["size"]
  config_lib.set_paths(c, "data/diving48", v["size"])
  c.num_epochs = 50.0
  c.batch_size = 64
  c.optim.lr = 1e-4
  c.optim.warmup_epochs = 2.0
  c.data.num_spatial_crops = 3
  if v["size"] == "r50":  # the paper's CNN rows, always its recipe
    config_lib.set_r50(c)
  elif v["paper"]:
    config_lib.set_paper_recipe(c, v["size"])
  if v["runlocal"]:
    config_lib.set_runlocal(c)
  c.lock()
  return c
