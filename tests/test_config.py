"""Configs: variants, overrides, and validation before anything compiles."""

import importlib.util
import pathlib

import pytest

from art_jax import config_lib

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"


def load_config(name: str, arg: str | None = None):
  spec = importlib.util.spec_from_file_location(name, CONFIG_DIR / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.mark.parametrize(
  "name,arg,classes,preset",
  [
    ("finegym", None, 99, "b16"),
    ("finegym", "gym288,l14", 288, "l14"),
    ("diving48", "l14", 48, "l14"),
    ("ntu", "ntu120_xset", 120, "b16"),
    ("ntu", "ntu60_xview,l14", 60, "l14"),
    ("kinetics", "k600", 600, "b16"),
    ("ssv2", None, 174, "b16"),
  ],
)
def test_variants_select_classes_and_size(name, arg, classes, preset):
  c = load_config(name, arg)
  assert c.data.num_classes == classes
  assert c.model.preset == preset
  assert c.text_bank.dir.endswith(preset)


def test_ssv2_recipe_turns_flip_off_and_uses_eight_global_blocks():
  c = load_config("ssv2", "l14")
  assert not c.data.flip
  assert list(c.model.backbone.return_list) == list(range(16, 24))


def test_unknown_variant_lists_choices():
  with pytest.raises(ValueError, match="gym99"):
    load_config("finegym", "gym100")


def test_locked_config_rejects_typos():
  c = load_config("finegym")
  with pytest.raises(AttributeError):
    c.optim.lrr = 1.0


def test_steps_follow_batch_size_after_overrides():
  c = load_config("finegym")
  c.batch_size = 32
  c.num_epochs = 2.0
  c.optim.warmup_epochs = 0.5
  steps = config_lib.steps_from_config(c, num_train_clips=320)
  assert steps["steps_per_epoch"] == 10
  assert steps["total_steps"] == 20
  assert steps["warmup_steps"] == 5


def _valid(**changes):
  c = load_config("finegym", "runlocal")
  for key, value in changes.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def test_validate_accepts_a_good_config():
  config_lib.validate(
    _valid(),
    num_devices=8,
    shard_meta={"num_classes": 99},
    bank_shape=(99, 4, 16),
  )


@pytest.mark.parametrize(
  "changes,devices,meta,bank,message",
  [
    ({"batch_size": 12}, 8, None, None, "not divisible by data-parallel"),
    ({"optim.accum_steps": 3}, 8, None, None, "accum_steps"),
    ({"model.heads.num_queries": 9}, 1, None, None, "N <= k"),
    ({}, 8, {"num_classes": 98}, None, "shards"),
    ({}, 8, None, (100, 4, 16), "text bank"),
    ({"mesh.fsdp": 3}, 8, None, None, "does not divide"),
    ({"data.sampling": "random"}, 8, None, None, "sampling"),
    ({"data.dir": None}, 8, None, None, "data.dir is not set"),
    ({"model.attention_impl": "flash"}, 8, None, None, "'xla' or 'cudnn'"),
    ({"model.heads.top_k": 9}, 8, None, (8, 4, 16), "8 classes"),
    ({"data.pixel_std": (0.0, 1.0, 1.0)}, 8, None, None, "must be > 0"),
    ({"data.pixel_mean": (1.0, 2.0)}, 8, None, None, "per RGB channel"),
    (
      {"model.heads.text_selection": "video_text", "loss.use_ft": False},
      8,
      None,
      None,
      "use_align=True",
    ),
    ({"model.heads.text_selection": "random"}, 8, None, None, "global_head"),
    ({"model.heads.use_rssa": False}, 8, None, None, "use_final, loss.use_mtc"),
    (
      {"model.attention_impl": "cudnn", "model.dtype": "float32"},
      8,
      None,
      None,
      "needs model.dtype bfloat16",
    ),
  ],
)
def test_validate_names_what_to_change(changes, devices, meta, bank, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(
      _valid(**changes), num_devices=devices, shard_meta=meta, bank_shape=bank
    )


def test_validate_checks_the_banks_class_order():
  names = [f"class {i}" for i in range(99)]
  ok = dict(num_devices=8, shard_meta={"num_classes": 99, "class_names": names})
  config_lib.validate(_valid(), bank_class_names=names, **ok)
  swapped = [names[1], names[0], *names[2:]]
  with pytest.raises(config_lib.ConfigError) as err:
    config_lib.validate(_valid(), bank_class_names=swapped, **ok)
  message = str(err.value)
  assert "label order (2 differences" in message
  assert "label 0: shards 'class 0', bank 'class 1'" in message
  with pytest.raises(config_lib.ConfigError, match="98 in bank"):
    config_lib.validate(_valid(), bank_class_names=names[:98], **ok)


def test_parse_variant_key_value_form():
  v = config_lib.parse_variant("size=l14", size=("b16", ("b16", "l14")))
  assert v == {"size": "l14"}


@pytest.mark.parametrize(
  "name,arg",
  [("finegym", "gym99,l14,paper"), ("diving48", "b16,paper"),
   ("ntu", "ntu60_xview,l14,paper")],
)  # fmt: skip
def test_paper_variant_is_the_papers_recipe(name, arg):
  c = load_config(name, arg)
  default = load_config(name, arg.replace(",paper", ""))
  assert (c.optim.name, c.optim.lr, c.optim.decay_epochs) == ("sgd", 0.01, 20)
  assert c.optim.decay_factor == 0.1 and c.num_epochs == 50
  assert c.model.heads.dropout_rate == 0.5 == c.model.backbone.cls_dropout
  assert (c.data.num_test_clips, c.data.num_spatial_crops) == (1, 1)
  assert c.model.backbone.no_lmhra and not c.model.backbone.temporal_downsample
  size = "l14" if "l14" in arg else "b16"
  assert c.init_from.path == f"weights/uv2_k400_{size}.msgpack"
  # The K400 checkpoint's own input statistics (0.45 / 0.225), not CLIP's.
  assert config_lib.pixel_stats(c) == ((114.75,) * 3, (57.375,) * 3)
  assert config_lib.pixel_stats(default) == (
    config_lib.CLIP_MEAN,
    config_lib.CLIP_STD,
  )
  # Everything else is the dataset's default config.
  assert (
    c.data.dir == default.data.dir and c.text_bank.dir == default.text_bank.dir
  )
  assert default.optim.name == "adamw" and default.num_epochs == 50
  config_lib.validate(c, num_devices=8)
