r"""ART on FineGym (Gym99 / Gym288).

  python -m art_jax.data.prepare --dataset=finegym --variant=gym99 \
      --videos=... --annotations=... --out=data/finegym/gym99
  python -m art_jax.main --config=configs/finegym.py:gym99,b16
  python -m art_jax.main --config=configs/finegym.py:gym99,r50

Variants: gym99 | gym288 (classes), b16 | l14 (backbone), r50 (TEA-R50
from ImageNet Res2Net weights, no text, the paper's SGD recipe:
config_lib.set_r50), paper (the paper's SGD recipe from a K400
checkpoint), runlocal (a tiny model for a laptop smoke run). Paper (ART
ViT-L/14, 16 frames): Gym99 Top-1 94.7, ViT-B/16 93.9, R50 91.2 (Gym288
84.4); one 8-GPU node.
"""

from art_jax import config_lib

# FineGym v1.1 element classes (gym99_categories.txt / gym288_categories.txt).
NUM_CLASSES = {"gym99": 99, "gym288": 288}


def get_config(arg: str | None = None):
  v = config_lib.parse_variant(
    arg,
    classes=("gym99", tuple(NUM_CLASSES)),
    size=("b16", config_lib.BACKBONE_SIZES),
    runlocal=(False, bool),
    paper=(False, bool),
  )
  c = config_lib.base_config()
  c.name = f"finegym-{v['classes']}-{v['size']}"
  c.data.dataset = "finegym"
  c.data.num_classes = NUM_CLASSES[v["classes"]]
  c.data.eval_split = "val"
  c.model.preset = v["size"]
  config_lib.set_paths(c, f"data/finegym/{v['classes']}", v["size"])
  # Paper IV-A: 16 frames, segment sampling, 224 crops, flip, 50 epochs;
  # AdamW + cosine for the ViT backbone (UniFormerV2 recipe).
  c.num_epochs = 50.0
  c.batch_size = 64
  c.optim.lr = 1e-4
  c.optim.warmup_epochs = 2.0
  c.data.num_test_clips = 1
  c.data.num_spatial_crops = 3
  if v["size"] == "r50":  # the paper's CNN rows, always its recipe
    config_lib.set_r50(c)
  elif v["paper"]:
    config_lib.set_paper_recipe(c, v["size"])
  if v["runlocal"]:
    config_lib.set_runlocal(c)
  c.lock()
  return c
