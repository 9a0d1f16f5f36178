r"""ART on Something-Something v2.

  python -m art_jax.data.prepare --dataset=ssv2 --videos=... \
      --annotations=... --out=data/ssv2
  python -m art_jax.main --config=configs/ssv2.py:b16

Variants: b16 | l14, runlocal. Horizontal flip is off: it changes the meaning
of classes such as "pushing something from left to right". Backbone recipe
from UniFormerV2's SSv2 B/16: 8 global UniBlocks on layers 4-11, drop path
0.2 / 0.4.
"""

from art_jax import config_lib

NUM_CLASSES = 174


def get_config(arg: str | None = None):
  v = config_lib.parse_variant(
    arg, size=("b16", config_lib.BACKBONE_PRESETS), runlocal=(False, bool)
  )
  c = config_lib.base_config()
  c.name = f"ssv2-{v['size']}"
  c.data.dataset = "ssv2"
  c.data.num_classes = NUM_CLASSES
  c.data.eval_split = "val"
  c.data.flip = False
  c.data.num_spatial_crops = 3
  c.model.preset = v["size"]
  layers = 12 if v["size"] == "b16" else 24
  c.model.backbone.update(
    {
      "n_layers": 8,
      "return_list": tuple(range(layers - 8, layers)),
      "mlp_dropout": (0.5,) * 8,
      "backbone_drop_path_rate": 0.2,
      "drop_path_rate": 0.4,
    }
  )
  config_lib.set_paths(c, "data/ssv2", v["size"])
  c.num_epochs = 50.0
  c.batch_size = 256
  c.optim.lr = 4e-4
  c.optim.warmup_epochs = 0.0
  c.optim.backbone_lr_mult = 1.0
  if v["runlocal"]:
    config_lib.set_runlocal(c)
  c.lock()
  return c
