r"""The embedded default: ART on synthetic fine-grained actions, on a CPU.

  python -m art_jax.main --config=configs/demo.py

Renders the synthetic dataset (12 classes of one stick figure that differ
only in a local limb motion or in the order of two motions) into
data/synthetic on first use, pose-pretrains a small UniFormerV2 on stills
of the figure (the stand-in for CLIP image weights), makes a tiny CLIP by
contrastive pretraining on captioned random motions and builds the text
bank with its text tower (nothing is downloaded; real runs use a released
CLIP), trains the backbone with ART's heads, evaluates, and writes
checkpoints, metrics, the confusion matrix and tracklet pictures to
runs/demo.
Measured wall time and Top-1 are in docs/demo.md.

  python -m art_jax.main --config=configs/demo.py:r50

runs the same demo on a small TEA (three Res2Net stages with ME and MTA,
3x3 tokens at 48x48, the UniFormerV2 demo's FLOPs) from scratch and
without text, as ART-R50 reads none (docs/method.md, "TEA backbone"): no
pose pretraining, no tiny CLIP.
"""

import ml_collections

from art_jax import config_lib
from art_jax.demo import config as demo_config


def get_config(arg: str | None = None):
  v = config_lib.parse_variant(
    arg, runlocal=(False, bool), ablation=(False, bool), r50=(False, bool)
  )
  # The shared base plus the demo's own knobs (data.synthetic,
  # text_bank.pretrain, init_from.pose_pretrain: art_jax/demo/config.py).
  c = demo_config.add_knobs(config_lib.base_config())
  c.name = "demo"
  c.data.dataset = "synthetic"
  c.data.dir = "data/synthetic"
  c.data.num_classes = 12
  c.data.num_frames = 8
  c.data.crop_size = 48
  # No scale jitter and no dropout (below): the demo model underfits in
  # its budget (train accuracy under validation accuracy at the end);
  # taking both out (not measured apart) took Top-1 from 75.6% to 92.1%
  # in the same 900 steps (docs/demo.md).
  c.data.crop_scales = (1.0,)
  c.data.flip = False  # the figure's left and right are different classes
  # 8 of the 16 rendered frames, evenly spaced (start 0 or 1): the local
  # motions last a few frames, and TSN's random frame per segment jitters
  # them (36.7% vs 20.8% Top-1 in a 600-step probe, docs/demo.md).
  c.data.sampling = "dense"
  c.data.frame_stride = 2
  c.data.num_workers = 0
  c.data.synthetic.num_train = 2400
  c.data.synthetic.num_val = 480
  # Half-scale nuisances (position, scale, colours, background, noise,
  # shake, base speed; the local motions are never scaled): at full scale
  # the from-scratch demo model stays at chance in this budget (docs/demo.md).
  c.data.synthetic.difficulty = 0.5
  # The text bank from a tiny CLIP made here (the stand-in for a released
  # CLIP; art_jax/demo/clip_pretrain.py, docs/data.md): contrastive
  # pretraining on captioned random motions of the figure (never the demo's
  # classes or labels), its video tower the pose-pretrained backbone below,
  # locked (LiT): only a small head on its tokens and the text tower train.
  c.text_bank.dir = "data/synthetic/text_bank_tiny_clip"
  c.text_bank.clip = "tiny_pretrained"
  c.text_bank.num_templates = 4
  c.text_bank.pretrain.update(
    {
      "init_backbone": "data/synthetic/pose_backbone.msgpack",
      "lock_video": True,
      "steps": 1000,
    }
  )

  c.model.preset = "b16"
  c.model.backbone.update(
    {
      "width": 96,
      "layers": 4,
      "heads": 4,
      "patch_size": 12,
      "return_list": (2, 3),
      "n_layers": 2,
      "n_dim": 96,
      "n_head": 4,
      "mlp_dropout": (0.0, 0.0),
      "cls_dropout": 0.0,
    }
  )
  c.model.heads.update(
    {
      "latent_dim": 64,
      "se_layers": 1,
      "decoder_layers": 1,
      "num_heads": 4,
      "top_k": 4,
      "dropout_rate": 0.0,
    }
  )
  c.model.dtype = "float32"
  c.model.remat_policy = "none"
  # Two layers per scanned run: unrolled is ~10% faster on a CPU
  # (docs/benchmarks.md).
  c.model.scan = False

  c.batch_size = 32
  c.num_epochs = 12.0
  # λ_mtc ramped in over the first half. Introduced when MTC read the
  # responses, which its trivial optimum (prompts alone) took over from
  # step 0 (52.9% vs 75.0% without MTC); MTC now reads the region content
  # (docs/method.md, section 7) and the ramp is kept.
  c.loss.mtc_warmup_steps = 450
  c.optim.lr = 1e-3
  c.optim.weight_decay = 0.05
  c.optim.warmup_epochs = 0.5
  c.optim.backbone_lr_mult = 1.0
  c.log_every_steps = 25
  c.eval_every_steps = 450
  c.ckpt.every_steps = 450
  # The demo's stand-in for CLIP: the backbone starts from a UniFormerV2
  # pose-pretrained on random-pose stills of the figure (no action classes,
  # no labels; art_jax/demo/pose_pretrain.py), built here on first use
  # (~2.5 min) and loaded through init_from like converted CLIP weights.
  c.init_from.path = "data/synthetic/pose_backbone.msgpack"
  c.init_from.pose_pretrain.update({"steps": 400, "num_images": 8192})
  if v["ablation"]:
    # The ablation benchmark (tools/ablate, docs/demo.md): the demo with a
    # fifth of its training clips, where the plain backbone (94.5% on the
    # full demo) does not saturate and the heads have room to show
    # something. Fixed before any ablation ran, never tuned toward a
    # result: 40 training clips per class (480; the baseline, seed 0, at
    # 81.1%; 720 clips gave 85.5%, above the 70-85% aimed at); the demo's
    # nuisances (difficulty 0.5), pretrained backbone and text bank; 960
    # validation clips (80 per class) for a finer Top-1; 600 steps (40
    # epochs) with one evaluation at the end.
    c.data.dir = "data/synthetic_ablation"
    c.data.synthetic.num_train = 480
    c.data.synthetic.num_val = 960
    c.total_steps = 600
    c.loss.mtc_warmup_steps = 300
    c.eval_every_steps = 600
    c.ckpt.every_steps = 200
  if v["runlocal"]:
    c.data.synthetic.num_train = 96
    c.data.synthetic.num_val = 24
    c.data.dir = "data/synthetic_small"
    c.text_bank.dir = "data/synthetic_small/text_bank_tiny_clip"
    c.text_bank.pretrain.update(
      {
        "init_backbone": "data/synthetic_small/pose_backbone.msgpack",
        "steps": 4,
        "batch_size": 8,
        "num_clips": 16,
      }
    )
    c.init_from.path = "data/synthetic_small/pose_backbone.msgpack"
    c.init_from.pose_pretrain.update(
      {"steps": 4, "batch_size": 16, "num_images": 64, "num_val_images": 16}
    )
    c.total_steps = 4
    c.log_every_steps = 1
    c.batch_size = 8
  if v["r50"]:
    set_r50_demo(c)
  c.lock()
  return c


def set_r50_demo(c: ml_collections.ConfigDict) -> None:
  """The demo on TEA: the demo's data, heads and AdamW schedule; a small
  TEA from scratch (nothing pretrained exists for it here), no text."""
  c.name = c.name.replace("demo", "demo-r50", 1)
  c.model.backbone_kind = "tea"
  c.model.preset = "r50"
  # 48 -> 24 (stem) -> 12 (pool) -> 12, 6, 3: 3x3 tokens of 4 x 64. Sized
  # to the UniFormerV2 demo's compute, not tuned: 11.3 vs 10.8 model
  # GFLOP per train step of 32 clips (reporting.model_train_flops).
  c.model.backbone = ml_collections.ConfigDict(
    {
      "layers": (2, 2, 2),
      "planes": (16, 32, 64),
      "stem_width": 16,
      "dropout": 0.0,
    }
  )
  c.model.heads.use_text = False
  c.loss.use_ft = False
  c.text_bank.clip = None  # no bank is read
  c.init_from.path = None
  c.init_from.pose_pretrain.steps = 0
  c.data.pixel_mean = config_lib.IMAGENET_MEAN
  c.data.pixel_std = config_lib.IMAGENET_STD
