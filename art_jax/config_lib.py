"""The shared base of every config, the variant parser, and validation.

Config files in configs/ call `base_config()` and change what their dataset
needs. Durations are written in epochs (or `total_steps`) and converted to
steps by the trainer after command-line overrides (`steps_from_config`),
never inside `get_config`, so that `--config.batch_size=` keeps schedules
right.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from ml_collections import config_dict

from art_jax import sharding as sh

# Input normalisation, RGB in 0..255 pixel units. A run normalises as its
# starting weights were trained (`data.pixel_mean` / `data.pixel_std`):
# CLIP's statistics (OpenAI) for CLIP weights; UniFormerV2's Kinetics and
# K710 checkpoints were fine-tuned with 0.45 / 0.225 (its configs' DATA.MEAN
# and STD, mmaction2's 114.75 / 57.375); ImageNet's for ImageNet CNNs.
CLIP_MEAN = (0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255)
CLIP_STD = (0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255)
KINETICS_MEAN = (0.45 * 255,) * 3
KINETICS_STD = (0.225 * 255,) * 3
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

BACKBONE_PRESETS = ("b16", "l14", "l14_336")  # UniFormerV2 sizes
# The configs' `size` variants: UniFormerV2's, and r50 (TEA-R50, the
# paper's CNN rows: model.backbone_kind="tea", `set_r50`).
BACKBONE_SIZES = (*BACKBONE_PRESETS, "r50")


def parse_variant(arg: str | None, **defaults: Any) -> dict[str, Any]:
  """Parses `"gym288,l14,runlocal"` or `"classes=gym288,size=l14"`.

  Bare words are matched against the values allowed in `defaults`, whose
  entries are `name=(default, allowed_values)`; bare flags listed with
  allowed value `bool` become True. Unknown words raise a ValueError that
  lists what is allowed.
  """
  out = {k: v[0] for k, v in defaults.items()}
  if not arg:
    return out
  for word in filter(None, (w.strip() for w in arg.split(","))):
    if "=" in word:
      key, value = word.split("=", 1)
      if key not in defaults:
        raise ValueError(
          f"unknown config variant key {key!r}; known: {sorted(defaults)}"
        )
      out[key] = value
      continue
    for key, (_, allowed) in defaults.items():
      if allowed is bool and word == key:
        out[key] = True
        break
      if allowed is not bool and word in allowed:
        out[key] = word
        break
    else:
      choices = {
        k: ("flag" if a is bool else list(a)) for k, (_, a) in defaults.items()
      }
      raise ValueError(f"unknown config variant {word!r}; choices: {choices}")
  return out


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every dataset (ART_SPEC section 12)."""
  c = ml_collections.ConfigDict()
  c.name = "art"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.dataset = "finegym"  # informational; the shards say what they hold
  c.data.dir = config_dict.placeholder(str)  # folder of ArrayRecord shards
  c.data.train_split = "train"
  c.data.eval_split = "val"
  c.data.num_classes = 99
  c.data.num_frames = 16
  c.data.sampling = "segment"  # 'segment' (TSN-style sparse) | 'dense'
  c.data.frame_stride = 2  # dense sampling only
  c.data.crop_size = 224
  c.data.crop = "multiscale"  # 'multiscale' (TSN scales) | 'rrc' (area)
  c.data.crop_scales = (1.0, 0.875, 0.75, 0.66)  # 'multiscale' only
  c.data.min_area = 0.25  # random-resized-crop area range ('rrc' only)
  c.data.max_area = 1.0
  c.data.flip = True  # horizontal flip (off where it changes the class)
  c.data.num_workers = 8
  c.data.num_test_clips = 1
  c.data.num_spatial_crops = 1
  # Pixel statistics the video is normalised with on device (RGB, 0..255):
  # those the starting weights were trained with (see CLIP_MEAN above).
  c.data.pixel_mean = CLIP_MEAN
  c.data.pixel_std = CLIP_STD
  c.data.eval_batch_size = config_dict.placeholder(int)  # default: batch_size

  c.text_bank = ml_collections.ConfigDict()
  c.text_bank.dir = config_dict.placeholder(str)  # bank.npy + bank.json
  c.text_bank.momentum = 0.999  # EMA of the agent bank into the bank (Eq 12)
  # If bank.npy is absent, build it with this CLIP (HF id or local dir; the
  # demo's "tiny" / "tiny_pretrained": art_jax.demo.inputs) from the split's
  # class names, before training (art_jax.main).
  c.text_bank.clip = config_dict.placeholder(str)
  c.text_bank.num_templates = 16  # first M of text_bank.DEFAULT_TEMPLATES

  c.model = ml_collections.ConfigDict()
  # "uniformerv2" or "tea" (art_jax/models/backbones.py; `set_r50`).
  c.model.backbone_kind = "uniformerv2"
  c.model.preset = "b16"  # its size: b16 | l14 | l14_336; r50 for "tea"
  # Overrides of the preset's fields (UniFormerV2's here; TEA's after
  # `set_r50`), e.g. layers=2 for a runlocal variant. Unknown keys are a
  # ConfigError.
  c.model.backbone = ml_collections.ConfigDict(
    {
      "backbone_drop_path_rate": 0.0,
      "drop_path_rate": 0.0,
      "cls_dropout": 0.5,
      # The spec's backbone (ART_SPEC 1): Local MHRA and T' = T/2. The
      # paper's GFLOPs match UniFormerV2's Kinetics recipe instead:
      # no_lmhra=True, temporal_downsample=False (docs/benchmarks.md).
      "no_lmhra": False,
      "double_lmhra": True,
      "temporal_downsample": True,
    }
  )
  c.model.heads = ml_collections.ConfigDict(
    {
      "latent_dim": 256,
      "num_queries": 2,
      "top_k": 8,
      # How the k classes whose text SE / queries / TA read are chosen
      # (ART_SPEC 3): "global_head" (top-k of the CE-trained backbone head)
      # or "video_text" (top-k of cos(v, class text); needs L_ft or
      # loss.use_align to train W_v). docs/method.md says why.
      "text_selection": "global_head",
      "se_layers": 4,
      "decoder_layers": 4,
      "num_heads": 8,
      "use_rssa": True,
      "use_se": True,
      "use_ta": True,
      # Heads read the backbone through a stop-gradient (not in the paper;
      # a diagnostic: docs/demo.md).
      "detach_backbone": False,
      # False: no text (ART-R50, paper Table I "Video"): learned class
      # vectors in place of the bank's text; no bank is read.
      "use_text": True,
      "dropout_rate": 0.5,
    }
  )
  c.model.dtype = "bfloat16"  # compute dtype; params stay param_dtype
  c.model.param_dtype = "float32"
  c.model.remat_policy = "nothing_saveable"
  c.model.scan = True
  # Self-attention of the backbone, SE and the RSSA decoder: "xla" (any
  # device) or "cudnn" (flash attention on NVIDIA GPUs, bf16/fp16 compute
  # only). Attention whose maps are read (the decoder's cross-attention)
  # always takes the einsum path.
  c.model.attention_impl = "xla"

  c.loss = ml_collections.ConfigDict()
  c.loss.label_smoothing = 0.0
  c.loss.use_global = True  # CE on the backbone head's logits
  c.loss.use_final = True  # CE on ART's final logits (off in the baseline)
  c.loss.use_mtc = True  # Eq 8 (Table V switches below)
  c.loss.lambda_mtc = 1.0
  c.loss.mtc_warmup_steps = 0  # linear ramp of lambda_mtc (not in paper)
  c.loss.use_spa = True
  c.loss.use_tem = True
  c.loss.use_trk = True
  c.loss.w_spa = 1.0
  c.loss.w_tem = 1.0
  c.loss.w_trk = 1.0
  c.loss.margin = 0.6  # delta of Eq 6
  c.loss.tracklet_temperature = 0.1  # kappa of Eq 7
  c.loss.use_ft = True  # Eq 17 (Table VI switches below)
  c.loss.lambda_ft = 1.0
  c.loss.use_vc = True
  c.loss.use_pc = True
  c.loss.text_temperature = 0.07  # kappa_v of Eq 14/16
  # L_align: cos(v, class text of the EMA bank) classification, for
  # text_selection="video_text" with text fine-tuning off (not in the paper).
  c.loss.use_align = False
  c.loss.lambda_align = 1.0

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adamw"  # 'adamw' (warmup+cosine) | 'sgd' (step decay)
  c.optim.lr = 4e-4  # peak, for the global batch size below
  c.optim.weight_decay = 0.05
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.momentum = 0.9  # sgd
  c.optim.warmup_epochs = 5.0
  c.optim.min_lr = 1e-6
  c.optim.decay_epochs = 20.0  # sgd step decay period
  c.optim.decay_factor = 0.1
  c.optim.backbone_lr_mult = 0.1
  c.optim.clip_grad_norm = 1.0  # 0 disables clipping
  c.optim.accum_steps = 1  # micro-batches per update

  c.batch_size = 64  # global, across all hosts
  c.num_epochs = 50.0
  c.total_steps = config_dict.placeholder(int)  # overrides num_epochs
  c.log_every_steps = 50
  c.eval_every_steps = config_dict.placeholder(int)  # default: each epoch
  c.max_nonfinite_steps = 10  # stop after this many skipped steps in a row

  c.ckpt = ml_collections.ConfigDict()
  c.ckpt.every_steps = 1000
  c.ckpt.keep = 3
  c.ckpt.keep_best = True
  c.ckpt.best_metric = "top1"

  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})

  c.init_from = ml_collections.ConfigDict()
  c.init_from.path = config_dict.placeholder(str)  # converted params file
  # A leaf of init_from.path with another shape than the model's is an error
  # (the classifier excepted); True re-initialises such leaves instead.
  c.init_from.allow_reinit = False
  return c


def steps_from_config(
  config: ml_collections.ConfigDict, num_train_clips: int
) -> dict[str, int]:
  """Converts epoch-based durations to steps for this global batch size."""
  steps_per_epoch = max(1, num_train_clips // config.batch_size)
  total = config.total_steps or int(round(config.num_epochs * steps_per_epoch))
  warmup = int(round(config.optim.warmup_epochs * steps_per_epoch))
  decay = max(1, int(round(config.optim.decay_epochs * steps_per_epoch)))
  every = config.eval_every_steps or steps_per_epoch
  return {
    "steps_per_epoch": steps_per_epoch,
    "total_steps": max(1, total),
    "warmup_steps": min(warmup, max(0, total - 1)),
    "decay_steps": decay,
    "eval_every_steps": max(1, every),
  }


class ConfigError(ValueError):
  """A config that cannot run; the message says what to change."""


def pixel_stats(
  config: ml_collections.ConfigDict,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """(mean, std) of the input normalisation, RGB in 0..255 units."""
  return tuple(config.data.pixel_mean), tuple(config.data.pixel_std)


def pixel_stats_problems(config: ml_collections.ConfigDict) -> list[str]:
  """Three channel means, and three positive standard deviations."""
  mean, std = pixel_stats(config)
  problems = []
  if len(mean) != 3 or len(std) != 3:
    problems.append(
      f"data.pixel_mean={mean} / data.pixel_std={std}: give one value per "
      "RGB channel"
    )
  elif min(std) <= 0:
    problems.append(f"data.pixel_std={std}: deviations must be > 0")
  return problems


def heads_and_loss_problems(config: ml_collections.ConfigDict) -> list[str]:
  """Model switches and loss switches that contradict each other."""
  heads, loss = config.model.heads, config.loss
  problems = []
  if heads.use_rssa and heads.num_queries > heads.top_k:
    problems.append(
      f"model.heads.num_queries={heads.num_queries} > top_k={heads.top_k}: "
      "region queries take the first N of the k text tokens (N <= k)"
    )
  selection = heads.get("text_selection", "global_head")
  if selection not in ("global_head", "video_text"):
    problems.append(
      f"model.heads.text_selection={selection!r}: use 'global_head' or "
      "'video_text'"
    )
  if not heads.get("use_text", True):
    on = [f"loss.{k}" for k in ("use_ft", "use_align") if loss[k]]
    if selection != "global_head":
      on.append(f"model.heads.text_selection={selection!r}")
    if on:
      problems.append(
        f"model.heads.use_text=False reads no text, but {', '.join(on)} "
        "needs it: switch it off (text_selection='global_head')"
      )
  ft_trains_v = loss.use_ft and (loss.use_vc or loss.use_pc)
  if (
    heads.use_rssa
    and selection == "video_text"
    and not (ft_trains_v or loss.use_align)
  ):
    problems.append(
      "model.heads.text_selection='video_text' with text fine-tuning off "
      "leaves the selection's projection W_v untrained (a fixed random "
      "choice of text): set loss.use_align=True"
    )
  if not heads.use_rssa:
    on = [f"loss.{k}" for k in ("use_final", "use_mtc") if loss[k]]
    if on:
      problems.append(
        f"model.heads.use_rssa=False (the baseline) has no final logits or "
        f"region responses, but {', '.join(on)} is on: switch it off"
      )
  return problems


def validate(
  config: ml_collections.ConfigDict,
  *,
  num_devices: int,
  shard_meta: Mapping[str, Any] | None = None,
  bank_shape: tuple[int, ...] | None = None,
  bank_class_names: Sequence[str] | None = None,
) -> None:
  """Checks a config before anything compiles; raises ConfigError.

  Args:
    config: the resolved config (after overrides).
    num_devices: global device count (for mesh and batch divisibility).
    shard_meta: the training split's metadata ({split}.json), if read.
    bank_shape: (K, M, D) of the text bank, if loaded.
    bank_class_names: the bank's class names (bank.json), if loaded; must
      be the shards' class names in label order.
  """
  from art_jax.models import backbones  # noqa: PLC0415 - builds modules

  problems = backbones.config_problems(config)
  problems += pixel_stats_problems(config)
  mesh = dict(config.mesh)
  mesh_problems = [
    f"mesh.{name}={size}: sizes are >= 1 or -1 (fill)"
    for name, size in mesh.items()
    if size != -1 and size < 1
  ]
  if sum(v == -1 for v in mesh.values()) > 1:
    mesh_problems.append("mesh: at most one axis may be -1")
  data_parallel = 0  # size of the batch-sharding axes (data x fsdp)
  try:
    data, fsdp, _ = sh.mesh_shape(mesh, num_devices)
    data_parallel = data * fsdp
  except ValueError:
    if not mesh_problems:
      mesh_problems.append(
        f"mesh {mesh} does not divide the {num_devices} devices"
      )
  problems += mesh_problems
  accum = config.optim.accum_steps
  if accum < 1:
    problems.append(f"optim.accum_steps={accum} must be >= 1")
  elif data_parallel and config.batch_size % (data_parallel * accum):
    problems.append(
      f"batch_size={config.batch_size} is not divisible by data-parallel "
      f"size {data_parallel} x optim.accum_steps {accum}; use a multiple "
      f"of {data_parallel * accum}"
    )
  eval_bs = config.data.eval_batch_size or config.batch_size
  if data_parallel and eval_bs % data_parallel:
    problems.append(
      f"data.eval_batch_size={eval_bs} is not divisible by the "
      f"data-parallel size {data_parallel}"
    )
  heads = config.model.heads
  problems += heads_and_loss_problems(config)
  if config.data.sampling not in ("segment", "dense"):
    problems.append(
      f"data.sampling={config.data.sampling!r}: use 'segment' or 'dense'"
    )
  impl = config.model.attention_impl
  if impl not in ("xla", "cudnn"):
    problems.append(f"model.attention_impl={impl!r}: use 'xla' or 'cudnn'")
  elif impl == "cudnn" and config.model.dtype not in ("bfloat16", "float16"):
    problems.append(
      f"model.attention_impl='cudnn' needs model.dtype bfloat16 or float16, "
      f"not {config.model.dtype!r}"
    )
  if config.optim.name not in ("adamw", "sgd"):
    problems.append(f"optim.name={config.optim.name!r}: use 'adamw' or 'sgd'")
  if not config.data.dir:
    problems.append(
      "data.dir is not set: point it at the folder of "
      "ArrayRecord shards made by `python -m art_jax.data.prepare`"
    )
  if not config.text_bank.dir and config.model.heads.get("use_text", True):
    problems.append(
      "text_bank.dir is not set: build one with `python -m art_jax.text_bank`"
    )
  num_classes = config.data.num_classes
  if shard_meta is not None:
    got = shard_meta.get("num_classes")
    if got is not None and got != num_classes:
      problems.append(
        f"data.num_classes={num_classes} but the shards in "
        f"{config.data.dir} hold {got} classes"
      )
  if bank_shape is not None:
    if bank_shape[0] != num_classes:
      problems.append(
        f"data.num_classes={num_classes} but the text bank in "
        f"{config.text_bank.dir} has {bank_shape[0]} classes"
      )
    if heads.use_rssa and heads.top_k > bank_shape[0]:
      problems.append(
        f"model.heads.top_k={heads.top_k} exceeds the bank's "
        f"{bank_shape[0]} classes (the text selection picks classes)"
      )
  shard_names = (shard_meta or {}).get("class_names")
  if shard_names is not None and bank_class_names is not None:
    problems += class_order_problems(
      shard_names, bank_class_names, config.text_bank.dir
    )
  if problems:
    raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


def class_order_problems(
  shard_names: Sequence[str], bank_names: Sequence[str], bank_dir: str
) -> list[str]:
  """The bank's row c must be the text of label c: names equal, in order."""
  if list(shard_names) == list(bank_names):
    return []
  diffs = [
    f"label {i}: shards {a!r}, bank {b!r}"
    for i, (a, b) in enumerate(zip(shard_names, bank_names))
    if a != b
  ]
  if len(shard_names) != len(bank_names):
    diffs.append(f"{len(shard_names)} shard classes, {len(bank_names)} in bank")
  return [
    f"the text bank in {bank_dir} does not list the shards' classes in "
    f"label order ({len(diffs)} differences; first: "
    + "; ".join(diffs[:3])
    + "): rebuild it with `python -m art_jax.text_bank` from the shards' "
    "class names"
  ]


def set_paths(c: ml_collections.ConfigDict, root: str, size: str) -> None:
  """Conventional layout: <root>/ shards, <root>/text_bank_<size>, weights."""
  c.data.dir = root
  c.text_bank.dir = f"{root}/text_bank_{size}"
  c.init_from.path = f"weights/clip_{size}.msgpack"


# Sequence-valued fields are tuples: ml_collections overrides tuples from
# the command line (--config.model.backbone.return_list="(8, 9, 10, 11)"),
# but not lists.


# UniFormerV2's Kinetics layout: what its K400/K600 checkpoints hold and
# what the paper's GFLOPs match (no Local MHRA, no temporal downsampling).
KINETICS_BACKBONE = {"no_lmhra": True, "temporal_downsample": False}


def set_paper_schedule(c: ml_collections.ConfigDict) -> None:
  """The paper's training schedule (IV-A), whatever the backbone: SGD, lr
  0.01 x0.1 every 20 epochs, 50 epochs, heads dropout 0.5, one view at
  test."""
  c.optim.name = "sgd"
  c.optim.lr = 0.01
  c.optim.momentum = 0.9
  c.optim.decay_epochs = 20.0
  c.optim.decay_factor = 0.1
  c.optim.warmup_epochs = 0.0
  c.optim.weight_decay = 5e-4  # ours: the paper gives none (TSN/TEA's)
  c.optim.backbone_lr_mult = 1.0  # ours: one lr for all, as TEA trains
  c.num_epochs = 50.0
  c.model.heads.dropout_rate = 0.5
  c.data.num_test_clips = 1
  c.data.num_spatial_crops = 1


def set_paper_recipe(c: ml_collections.ConfigDict, size: str) -> None:
  """The paper's own recipe (IV-A; docs/method.md lists every difference
  from the default): `set_paper_schedule`, dropout 0.5, one 224 view at
  test, from a converted Kinetics-400 UniFormerV2 checkpoint in its own
  layout (Table I: "Pretrained: K400"). For r50 see `set_r50`."""
  set_paper_schedule(c)
  c.model.backbone.cls_dropout = 0.5
  c.model.backbone.update(KINETICS_BACKBONE)
  # The K400 checkpoint was fine-tuned on 0.45 / 0.225 normalised input.
  c.data.pixel_mean = KINETICS_MEAN
  c.data.pixel_std = KINETICS_STD
  c.init_from.path = f"weights/uv2_k400_{size}.msgpack"


def set_r50(c: ml_collections.ConfigDict) -> None:
  """ART-R50, the paper's CNN rows (Table I; docs/method.md "TEA
  backbone"): TEA-R50 from a converted ImageNet Res2Net-50 26w_4s with
  ImageNet normalisation, no text (the table's "Video"; switch:
  model.heads.use_text=True with a bank in text_bank.dir), and the paper's
  schedule with TEA's gradient clipping."""
  c.model.backbone_kind = "tea"
  c.model.preset = "r50"
  # Fields of models/tea.TEA over the preset; the UniFormerV2 ones go.
  c.model.backbone = ml_collections.ConfigDict({"dropout": 0.5})
  c.model.heads.use_text = False
  c.loss.use_ft = False  # no text bank to fine-tune
  set_paper_schedule(c)
  c.optim.clip_grad_norm = 20.0  # TEA's (and TSN's) --clip-gradient 20
  # ImageNet's statistics, as the Res2Net weights were trained.
  c.data.pixel_mean, c.data.pixel_std = IMAGENET_MEAN, IMAGENET_STD
  # python -m art_jax.tools.convert_weights --src=res2net50_26w_4s-06e79181.pth
  #     --dst=weights/res2net50_26w_4s.msgpack --num_classes=K
  c.init_from.path = "weights/res2net50_26w_4s.msgpack"


# runlocal's tiny backbones: two 64-wide UniFormerV2 layers (8x8 patches),
# or two TEA stages of 16 and 32 planes (stride 8); 4x4 tokens at 32x32.
_RUNLOCAL_BACKBONE = {
  "uniformerv2": {
    "width": 64,
    "layers": 2,
    "heads": 2,
    "patch_size": 8,
    "return_list": (0, 1),
    "n_layers": 2,
    "n_dim": 64,
    "n_head": 2,
    "mlp_dropout": (0.5, 0.5),
  },
  "tea": {"layers": (1, 1), "planes": (16, 32), "stem_width": 16},
}


def set_runlocal(c: ml_collections.ConfigDict) -> None:
  """Shrinks a config so the real trainer runs a few steps on a laptop CPU.

  A tiny backbone of the config's kind (`_RUNLOCAL_BACKBONE`) at 32x32 and
  8 frames, no pretrained weights; data and text bank still come from the
  configured folders.
  """
  c.model.backbone.update(_RUNLOCAL_BACKBONE[c.model.backbone_kind])
  c.model.heads.update(
    {"latent_dim": 32, "se_layers": 1, "decoder_layers": 1, "num_heads": 2}
  )
  c.model.dtype = "float32"
  c.data.num_frames = 8
  c.data.crop_size = 32
  c.data.num_workers = 0
  c.batch_size = 8
  c.total_steps = 4
  c.log_every_steps = 1
  c.eval_every_steps = 4
  c.ckpt.every_steps = 2
  c.init_from.path = None
