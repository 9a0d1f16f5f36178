r"""ART on NTU RGB+D 60 / 120 (RGB videos).

  python -m art_jax.data.prepare --dataset=ntu60 --variant=xsub \
      --videos=.../nturgb+d_rgb --out=data/ntu60_xsub
  python -m art_jax.main --config=configs/ntu.py:ntu60_xsub,b16

Variants: ntu60_xsub | ntu60_xview | ntu120_xsub | ntu120_xset, b16 | l14 |
r50 (TEA-R50 from ImageNet Res2Net weights, no text: config_lib.set_r50),
paper (the paper's SGD recipe from a K400 checkpoint), runlocal.
"""

from art_jax import config_lib

SPLITS = ("ntu60_xsub", "ntu60_xview", "ntu120_xsub", "ntu120_xset")


def get_config(arg: str | None = None):
  v = config_lib.parse_variant(
    arg,
    split=("ntu60_xsub", SPLITS),
    size=("b16", config_lib.BACKBONE_SIZES),
    runlocal=(False, bool),
    paper=(False, bool),
  )
  c = config_lib.base_config()
  c.name = f"{v['split']}-{v['size']}"
  c.data.dataset = v["split"].split("_")[0]
  c.data.num_classes = 60 if v["split"].startswith("ntu60") else 120
  c.data.eval_split = "val"
  c.model.preset = v["size"]
  config_lib.set_paths(c, f"data/{v['split']}", v["size"])
  c.num_epochs = 50.0  # paper IV-A: 50 epochs for every dataset
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
