r"""ART on Kinetics-400 / 600.

  python -m art_jax.data.prepare --dataset=kinetics --variant=k400 \
      --videos=... --annotations=... --out=data/k400
  python -m art_jax.main --config=configs/kinetics.py:k400,b16

Variants: k400 | k600, b16 | l14, runlocal. Dense sampling (UniFormerV2's
Kinetics recipe, 16 frames x stride 4), 4 clips x 3 crops at test,
Top-1 and Top-5.
"""

from art_jax import config_lib

NUM_CLASSES = {"k400": 400, "k600": 600}


def get_config(arg: str | None = None):
  v = config_lib.parse_variant(
    arg,
    classes=("k400", tuple(NUM_CLASSES)),
    size=("b16", config_lib.BACKBONE_PRESETS),
    runlocal=(False, bool),
  )
  c = config_lib.base_config()
  c.name = f"{v['classes']}-{v['size']}"
  c.data.dataset = "kinetics"
  c.data.num_classes = NUM_CLASSES[v["classes"]]
  c.data.eval_split = "val"
  c.data.sampling = "dense"
  c.data.frame_stride = 4
  c.data.num_test_clips = 4
  c.data.num_spatial_crops = 3
  c.model.preset = v["size"]
  config_lib.set_paths(c, f"data/{v['classes']}", v["size"])
  # UniFormerV2 K400 recipe: AdamW 4e-4 at batch 256, cosine to 1e-6,
  # weight decay 0.05; 55 epochs.
  c.num_epochs = 55.0
  c.batch_size = 256
  c.optim.lr = 4e-4
  c.optim.warmup_epochs = 0.0
  c.optim.backbone_lr_mult = 1.0
  if v["runlocal"]:
    config_lib.set_runlocal(c)
  c.lock()
  return c
