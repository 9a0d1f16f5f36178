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


def override(c, changes):
  """Sets `{"dotted.key": value}` fields of config `c`; returns `c`."""
  for key, value in changes.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def _valid(**changes):
  return override(load_config("finegym", "runlocal"), changes)


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


@pytest.mark.parametrize(
  "name,arg,classes",
  [("finegym", "gym99,r50", 99), ("finegym", "gym288,r50", 288),
   ("diving48", "r50", 48), ("ntu", "ntu60_xsub,r50", 60)],
)  # fmt: skip
def test_r50_variant_is_art_r50_with_the_papers_recipe(name, arg, classes):
  from art_jax.models import build  # noqa: PLC0415 - builds the model

  c = load_config(name, arg)
  assert (c.model.backbone_kind, c.model.preset) == ("tea", "r50")
  assert c.name.endswith("-r50") and c.data.num_classes == classes
  assert (c.optim.name, c.optim.lr, c.optim.decay_epochs) == ("sgd", 0.01, 20)
  assert c.optim.decay_factor == 0.1 and c.num_epochs == 50
  assert c.optim.clip_grad_norm == 20.0  # TEA's --clip-gradient
  assert c.model.heads.dropout_rate == 0.5 == c.model.backbone.dropout
  assert (c.data.num_frames, c.data.crop_size) == (16, 224)
  assert (c.data.num_test_clips, c.data.num_spatial_crops) == (1, 1)
  assert config_lib.pixel_stats(c) == (
    config_lib.IMAGENET_MEAN,
    config_lib.IMAGENET_STD,
  )
  assert c.init_from.path == "weights/res2net50_26w_4s.msgpack"
  # No text: the table's "Video" (docs/method.md, TEA backbone).
  assert not c.model.heads.use_text and not c.loss.use_ft
  config_lib.validate(c, num_devices=8)
  model = build.build_model(c)
  assert model.backbone_kind == "tea"
  assert model.backbone["layers"] == (3, 4, 6, 3)
  assert model.backbone["num_segments"] == 16
  assert model.backbone["num_classes"] == classes
  assert model.backbone["dropout"] == 0.5
  assert "attention_impl" not in model.backbone  # the heads' only


def test_r50_runlocal_is_a_tiny_tea_and_paper_is_no_extra():
  c = load_config("finegym", "gym99,r50,runlocal")
  assert c.model.backbone_kind == "tea"
  assert tuple(c.model.backbone.layers) == (1, 1)
  assert (c.data.crop_size, c.data.num_frames) == (32, 8)
  assert c.init_from.path is None
  c.text_bank.dir = None  # no text: no bank to read
  config_lib.validate(c, num_devices=8)
  # paper + r50 is r50 (its recipe is the paper's).
  assert load_config("finegym", "r50,paper").to_dict() == (
    load_config("finegym", "r50").to_dict()
  )


def test_demo_r50_is_tea_from_scratch_without_text():
  c = load_config("demo", "r50")
  assert (c.model.backbone_kind, c.model.heads.use_text) == ("tea", False)
  assert c.init_from.path is None and c.init_from.pose_pretrain.steps == 0
  assert c.text_bank.clip is None and not c.loss.use_ft
  assert c.data.num_frames == 8 and c.data.crop_size == 48
  config_lib.validate(c, num_devices=1)
  small = load_config("demo", "r50,runlocal")
  assert small.init_from.path is None and small.total_steps == 4
  config_lib.validate(small, num_devices=1)


def _r50(**changes):
  c = load_config("finegym", "r50,runlocal")
  with c.unlocked():  # model.backbone.width: a field TEA lacks
    return override(c, changes)


@pytest.mark.parametrize(
  "changes,message",
  [
    ({"model.backbone_kind": "resnet"}, "'uniformerv2', 'tea'"),
    ({"model.preset": "l14"}, r"no TEA size; use one of \('r50',\)"),
    ({"model.backbone.width": 64}, r"TEA does not take: \['width'\]"),
    ({"model.backbone.scale": 1}, "scale=1 must be >= 2"),
    ({"loss.use_ft": True}, "use_text=False reads no text, but loss.use_ft"),
    ({"loss.use_align": True}, "loss.use_align"),
    ({"model.heads.text_selection": "video_text"}, "text_selection"),
  ],
)
def test_validate_rejects_what_tea_cannot_do(changes, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(_r50(**changes), num_devices=8)


def test_the_demos_pose_pretraining_refuses_tea():
  """Pose pretraining (a demo knob, art_jax.demo) pretrains a UniFormerV2."""
  from art_jax.demo import inputs  # noqa: PLC0415

  c = load_config("demo", "r50")
  c.init_from.pose_pretrain.steps = 5
  c.init_from.path = "pose.msgpack"
  with pytest.raises(
    config_lib.ConfigError, match="pose_pretrain pretrains a Uni"
  ):
    inputs.check_config(c)


def test_tea_takes_cudnn_attention_in_its_heads_only():
  from art_jax.models import build  # noqa: PLC0415 - builds the model

  c = _r50(**{"model.attention_impl": "cudnn", "model.dtype": "bfloat16"})
  config_lib.validate(c, num_devices=8)
  model = build.build_model(c)
  assert model.heads["attention_impl"] == "cudnn"
  assert "attention_impl" not in model.backbone and "scan" not in model.backbone


def test_the_uniformerv2_default_keeps_its_fields():
  """The ViT path builds the same kwargs as before the backbone choice."""
  from art_jax.models import build, uniformerv2  # noqa: PLC0415

  c = load_config("finegym", "runlocal")
  model = build.build_model(c)
  want = uniformerv2.preset_kwargs(
    "b16",
    num_classes=99,
    t_size=8,
    input_resolution=32,
    **c.model.backbone.to_dict(),
  )
  want.update(remat_policy="nothing_saveable", scan=True, attention_impl="xla")
  got = {k: v for k, v in model.backbone.items() if k not in ("dtype",)}
  got.pop("param_dtype")
  assert model.backbone_kind == "uniformerv2" and got == want
  assert model.heads["use_text"]
