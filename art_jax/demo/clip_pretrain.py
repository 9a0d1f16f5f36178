r"""A tiny CLIP for the demo: contrastive video-text pretraining on
captioned random motions of the synthetic figure.

Real ART runs build the text bank with CLIP, whose text space was learned
from paired image-text data that never saw the downstream labels. The demo
cannot download CLIP; with `text_bank.clip = "tiny_pretrained"` it makes a
tiny one here on first use:

* data: clips of the figure doing one or two random local motions (any
  limb, any motion, any order; `art_jax.demo.motion_captions`), each with a
  caption generated from what it shows and re-phrased every time it is
  drawn. The demo's class list is never sampled and its names are never
  captions; the clips are rendered at the demo's input size and frame times.
* video tower: the config's UniFormerV2 backbone (`model.backbone`, as
  `art_jax.demo.pose_pretrain` builds it) whose head projects to the joint space
  D; from scratch or from a params file (`text_bank.pretrain.init_backbone`,
  e.g. the pose-pretrained backbone). With `text_bank.pretrain.lock_video`
  (locked-image tuning, as LiT) the backbone stays as loaded: its patch
  tokens are computed once per clip and only a small head
  (`LockedVideoHead`) and the text tower train, in seconds instead of
  minutes.
* text tower: `art_jax.models.clip_text` at tiny size, starting from the
  random checkpoint `art_jax.demo.tiny_clip` writes (so the tokenizer is that
  checkpoint's; its vocabulary holds every caption, template and class-name
  word as one token).
* loss: CLIP's symmetric InfoNCE with a learned temperature; clips of a
  batch that show the same events share the target mass (their captions
  describe the same thing).

Written (atomically, the summary last, as the "done" marker):
  <text_bank.dir>/tiny_clip_pretrained/   the text tower, in exactly the
      layout `tiny_clip` writes (`text_bank.build_text_bank` reads it like
      any Hugging Face CLIP checkpoint);
  text_bank.pretrain.video_backbone (default
      <text_bank.dir>/video_backbone.msgpack): the video tower, a params
      file (`weights.save_params_file`, as pose pretraining writes) that
      `init_from.path` loads (the D-wide head is re-initialised there);
      with lock_video, <text_bank.dir>/video_head.msgpack instead: the
      head's params (the backbone is init_backbone, unchanged);
  <text_bank.dir>/clip_pretrain.json: the knobs and the summary.

Built on first use by the demo's input building (`art_jax.demo.inputs`,
also a command: `python -m art_jax.demo.inputs --config=configs/demo.py
[--config.text_bank.pretrain.steps=...]`).
"""

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from art_jax import config_lib, optim, weights
from art_jax.demo import motion_captions, pose_pretrain, tiny_clip
from art_jax.models import build, clip_text, layers, uniformerv2

CLIP_NAME = "tiny_pretrained"
TEXT_DIR = "tiny_clip_pretrained"
SUMMARY_FILE = "clip_pretrain.json"
HEAD_FILE = "video_head.msgpack"  # lock_video: the head on the locked tower
TRAIN_TOKENS = 32  # caption length in training (captions take <= 29)
MAX_LOGIT_SCALE = float(np.log(100.0))  # CLIP's clamp


def text_dir(config: ml_collections.ConfigDict) -> str:
  """The text tower's checkpoint directory."""
  return os.path.join(config.text_bank.dir, TEXT_DIR)


def video_backbone_path(config: ml_collections.ConfigDict) -> str:
  """The video tower's params file."""
  tp = config.text_bank.pretrain
  return tp.video_backbone or os.path.join(
    config.text_bank.dir, "video_backbone.msgpack"
  )


def config_problems(config: ml_collections.ConfigDict) -> list[str]:
  """What is wrong with text_bank.pretrain (empty when unused or fine)."""
  tb = config.text_bank
  if tb.clip != CLIP_NAME:
    return []
  if "pretrain" not in tb:
    return [
      f"text_bank.clip={CLIP_NAME!r} is the demo's: its knobs "
      "(text_bank.pretrain, art_jax.demo.config) come with configs/demo.py"
    ]
  tp, p = tb.pretrain, "text_bank.pretrain"
  problems = []
  kind = config.model.backbone_kind
  if kind != "uniformerv2":
    problems.append(
      f"text_bank.clip={CLIP_NAME!r}: the tiny CLIP's video tower is the "
      f"config's UniFormerV2, but model.backbone_kind={kind!r}; build the "
      "bank with a UniFormerV2 config (configs/demo.py) and point "
      "text_bank.dir at it, with text_bank.clip unset"
    )
  if not tb.dir:
    problems.append(f"text_bank.clip={CLIP_NAME!r} needs text_bank.dir")
  if tp.steps < 1:
    problems.append(f"{p}.steps={tp.steps} must be >= 1")
  if not 2 <= tp.batch_size <= tp.num_clips:
    problems.append(
      f"{p}.batch_size={tp.batch_size} must be in [2, num_clips="
      f"{tp.num_clips}] (a contrastive batch needs negatives)"
    )
  if tp.lr <= 0:
    problems.append(f"{p}.lr={tp.lr} must be > 0")
  if tp.weight_decay < 0:
    problems.append(f"{p}.weight_decay={tp.weight_decay} must be >= 0")
  if not 0 < tp.temperature <= 1:
    problems.append(f"{p}.temperature={tp.temperature} must be in (0, 1]")
  if not 0 <= tp.pair_fraction <= 1:
    problems.append(f"{p}.pair_fraction={tp.pair_fraction} must be in [0, 1]")
  if not 0 <= tp.min_difficulty <= tp.max_difficulty:
    problems.append(
      f"{p}.min_difficulty={tp.min_difficulty}, max_difficulty="
      f"{tp.max_difficulty}: need 0 <= min_difficulty <= max_difficulty"
    )
  if min(tp.width, tp.layers, tp.heads, tp.projection_dim) < 1:
    problems.append(f"{p}.width, layers, heads, projection_dim must be >= 1")
  elif tp.width % tp.heads:
    problems.append(
      f"{p}.width={tp.width} is not divisible by heads={tp.heads}"
    )
  if tp.lock_video and not tp.init_backbone:
    problems.append(
      f"{p}.lock_video=True locks the video tower as loaded: set "
      f"{p}.init_backbone (e.g. the pose-pretrained backbone)"
    )
  try:
    frame_times(config, np.random.default_rng(0))
  except ValueError as e:
    problems.append(f"{p}: {e}")
  video_out = video_backbone_path(config) if tb.dir else None
  if tp.init_backbone and tp.init_backbone == video_out:
    problems.append(
      f"{p}.init_backbone and video_backbone are the same file {video_out!r}"
    )
  pose_steps = config.init_from.pose_pretrain.steps
  missing = tp.init_backbone and not os.path.exists(tp.init_backbone)
  if missing and pose_steps <= 0:
    problems.append(
      f"{p}.init_backbone={tp.init_backbone!r} does not exist: build it "
      "(init_from.pose_pretrain.steps > 0 pose-pretrains into it) or unset "
      "it to start the video tower from scratch"
    )
  if (
    video_out
    and not tp.lock_video
    and config.init_from.path == video_out
    and pose_steps > 0
    and not tp.init_backbone
  ):
    problems.append(
      f"init_from.path is the tiny CLIP's video backbone {video_out!r}, so "
      "pose pretraining (init_from.pose_pretrain.steps > 0) would never run: "
      "set init_from.pose_pretrain.steps=0 (CLIP replaces pose pretraining) "
      f"or {p}.init_backbone to another file (CLIP follows it)"
    )
  return problems


def frame_times(
  config: ml_collections.ConfigDict, rng: np.random.Generator
) -> np.ndarray:
  """Times of the frames the demo's pipeline feeds the model: data.num_frames
  of data.synthetic.frames rendered, every frame_stride (dense) or evenly
  spread (segment), from a random start. -> (T,)."""
  d = config.data
  source = d.synthetic.frames
  stride = d.frame_stride if d.sampling == "dense" else source // d.num_frames
  return motion_captions.clip_times(rng, source, d.num_frames, max(1, stride))


def render(
  config: ml_collections.ConfigDict, seed: int, count: int
) -> tuple[np.ndarray, list[motion_captions.Events]]:
  """`count` captioned random-motion clips at the demo's input size and
  frame times. -> (uint8 (count, T, S, S, 3), events per clip)."""
  tp, d = config.text_bank.pretrain, config.data
  source = d.synthetic.frames
  stride = d.frame_stride if d.sampling == "dense" else source // d.num_frames
  videos, events, _ = motion_captions.render_dataset(
    seed,
    count,
    size=d.crop_size,
    num_frames=d.num_frames,
    source_frames=source,
    stride=max(1, stride),
    difficulty=(tp.min_difficulty, tp.max_difficulty),
    pair_fraction=tp.pair_fraction,
  )
  return videos, events


def video_model(config: ml_collections.ConfigDict) -> uniformerv2.UniFormerV2:
  """The config's backbone with a head to the joint space D (the video
  tower), float32, no dropout or remat."""
  kw = build.backbone_kwargs(config)
  kw.update(
    num_classes=config.text_bank.pretrain.projection_dim,
    cls_dropout=0.0,
    remat_policy="none",
    dtype=jnp.float32,
    param_dtype=jnp.float32,
  )
  return uniformerv2.UniFormerV2(**kw)


class LockedVideoHead(nn.Module):
  """The trained part of a locked video tower: patch tokens -> (B, D).

  Per time step, `num_probes` learned queries attention-pool the L patch
  tokens; the (T', num_probes, C) pooled features are flattened in time
  order (so "A then B" and "B then A" differ) and an MLP maps them to D.
  tokens (B, T', L, C) -> (B, D) float32.
  """

  projection_dim: int
  num_probes: int = 2
  num_heads: int = 4
  hidden_dim: int = 256

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    b, t, length, c = tokens.shape
    x = nn.LayerNorm(name="ln")(tokens.astype(jnp.float32))
    probes = self.param(
      "probes", nn.initializers.normal(0.02), (self.num_probes, c)
    )
    q = jnp.broadcast_to(probes, (b * t, self.num_probes, c))
    pooled, _ = layers.MultiHeadAttention(self.num_heads, name="pool")(
      q, x.reshape(b * t, length, c)
    )
    y = pooled.reshape(b, t * self.num_probes * c)
    y = nn.gelu(nn.Dense(self.hidden_dim, name="fc1")(y))
    return nn.Dense(self.projection_dim, name="fc2")(y)


def video_tokens(
  video: uniformerv2.UniFormerV2,
  variables: Mapping[str, Any],
  videos: np.ndarray,
  batch_size: int = 64,
) -> np.ndarray:
  """The locked tower's eval-mode patch tokens of uint8 videos
  (N, T, H, W, 3), in batches. -> (N, T', L, C) float32."""

  @jax.jit
  def tokens(x):
    out = video.apply(variables, build.normalize_video(x, jnp.float32))
    return out["tokens"].astype(jnp.float32)

  parts = []
  for i in range(0, len(videos), batch_size):
    chunk = videos[i : i + batch_size]
    pad = batch_size - len(chunk)  # one compiled shape
    if pad:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
    parts.append(np.asarray(tokens(jnp.asarray(chunk)))[: batch_size - pad])
  return np.concatenate(parts)


def head_path(config: ml_collections.ConfigDict) -> str:
  """lock_video: the head's params file."""
  return os.path.join(config.text_bank.dir, HEAD_FILE)


def normalize(x: jax.Array) -> jax.Array:
  """L2-normalises the last axis (float32)."""
  x = x.astype(jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def contrastive_loss(
  video_embeds: jax.Array,
  text_embeds: jax.Array,
  logit_scale: jax.Array,
  same: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Symmetric InfoNCE (CLIP) on (B, D) x (B, D) paired embeddings.

  logit_scale: () log of the inverse temperature (clamped at log 100).
  same: (B, B) 1 where clip i and caption j describe the same events (the
  diagonal included); row i's target is uniform over them. None: the
  identity. -> (loss, {"accuracy": video->text top-1 counted correct when
  it hits a same-events caption, "temperature"}).
  """
  v, t = normalize(video_embeds), normalize(text_embeds)
  scale = jnp.exp(jnp.minimum(logit_scale, MAX_LOGIT_SCALE))
  logits = scale * v @ t.T  # (B, B)
  if same is None:
    same = jnp.eye(v.shape[0], dtype=jnp.float32)
  target = same / same.sum(1, keepdims=True)
  target_t = same.T / same.T.sum(1, keepdims=True)
  loss_v = -(target * jax.nn.log_softmax(logits, 1)).sum(1).mean()
  loss_t = -(target_t * jax.nn.log_softmax(logits.T, 1)).sum(1).mean()
  hit = jnp.take_along_axis(same, jnp.argmax(logits, 1)[:, None], 1)
  return 0.5 * (loss_v + loss_t), {
    "accuracy": hit.mean(),
    "temperature": 1.0 / scale,
  }


def _merge(init: Any, loaded: Mapping[str, Any]) -> tuple[Any, int]:
  """init's leaves replaced by loaded leaves of the same path and shape.
  -> (tree, number replaced)."""
  flat = flax.traverse_util.flatten_dict(init, sep="/")
  src = flax.traverse_util.flatten_dict(dict(loaded), sep="/")
  n = 0
  for k, v in flat.items():
    if k in src and tuple(np.shape(src[k])) == tuple(v.shape):
      flat[k] = jnp.asarray(src[k], v.dtype)
      n += 1
  return flax.traverse_util.unflatten_dict(flat, sep="/"), n


def video_embedding(
  video: uniformerv2.UniFormerV2 | None,
  head: LockedVideoHead | None,
  params: Mapping[str, Any],
  stats: Any,
  x: jax.Array,
  train: bool = False,
  rng: jax.Array | None = None,
) -> tuple[jax.Array, Any]:
  """The video tower's (B, D) embedding and its new BatchNorm statistics.

  Unlocked (`head` None): x uint8 videos (B, T, H, W, 3) through the
  backbone `video` (params["video"]). Locked: x the backbone's patch tokens
  (B, T', L, C) (`video_tokens`) through `head` (params["head"]); the
  statistics are returned unchanged.
  """
  if head is not None:
    return head.apply({"params": params["head"]}, x), stats
  variables = {"params": params["video"], "batch_stats": stats}
  x = build.normalize_video(x, jnp.float32)
  if not train:
    return video.apply(variables, x)["logits"], stats
  out, new = video.apply(
    variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": rng}
  )
  return out["logits"], new["batch_stats"]


def embed(
  video: uniformerv2.UniFormerV2 | None,
  text_module: clip_text.CLIPTextTransformer,
  params: Mapping[str, Any],
  stats: Any,
  videos: jax.Array,
  ids: jax.Array,
  head: LockedVideoHead | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Eval-mode embeddings: videos (uint8 clips, or patch tokens with
  `head`) and token ids (B, L) -> (video (B, D), text (B, D)), not
  normalised."""
  v, _ = video_embedding(video, head, params, stats, videos)
  text = text_module.apply({"params": params["text"]}, ids)
  return v, text["text_embeds"]


def make_train_step(
  video: uniformerv2.UniFormerV2 | None,
  text_module: clip_text.CLIPTextTransformer,
  tx: optax.GradientTransformation,
  head: LockedVideoHead | None = None,
):
  """-> jitted (params, stats, opt_state, x, ids (B, L), same (B, B), rng)
  -> (params, stats, opt_state, metrics).

  params = {"video" (or "head" with a locked tower), "text",
  "logit_scale"}; stats the video tower's BatchNorm statistics; x as
  `video_embedding` reads it."""

  def loss_fn(p, s, x, ids, same, rng):
    v, s = video_embedding(video, head, p, s, x, train=True, rng=rng)
    text = text_module.apply({"params": p["text"]}, ids)["text_embeds"]
    loss, m = contrastive_loss(v, text, p["logit_scale"], same)
    return loss, (s, m)

  @jax.jit
  def train_step(p, s, o, x, ids, same, rng):
    (loss, (s, m)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      p, s, x, ids, same, rng
    )
    updates, o = tx.update(grads, o, p)
    return optax.apply_updates(p, updates), s, o, dict(m, loss=loss)

  return train_step


def tokenize(tokenizer: Any, texts: Sequence[str], length: int) -> np.ndarray:
  """Texts -> (N, length) int32 ids, EOS-padded (pooling reads the first
  EOS, and causal attention never looks past it, so the padding length does
  not change the embeddings)."""
  ids = tokenizer(
    list(texts),
    padding="max_length",
    truncation=True,
    max_length=length,
    return_tensors="np",
  )["input_ids"]
  return ids.astype(np.int32)


def text_words(
  class_names: Sequence[str], templates: Sequence[str]
) -> list[str]:
  """Everything the tokenizer must hold as whole words."""
  return motion_captions.vocabulary() + list(class_names) + list(templates)


def pretrain(
  config: ml_collections.ConfigDict,
  class_names: Sequence[str],
  templates: Sequence[str],
) -> dict[str, Any]:
  """Trains the tiny CLIP of `config.text_bank.pretrain` and writes its
  text tower (`text_dir`), video tower (`video_backbone_path`) and summary.

  `class_names` and `templates` only enter the tokenizer's vocabulary.
  Returns the summary: {'steps', 'seconds', 'render_seconds',
  'loss_first', 'loss_last', 'accuracy_last', 'temperature',
  'heldout_accuracy', 'heldout_accuracy_at_init', 'init_backbone_loaded'}.
  """
  tp = config.text_bank.pretrain
  problems = config_problems(config)
  if problems:
    raise config_lib.ConfigError("; ".join(problems))
  t0 = time.time()
  videos, events = render(config, tp.seed, tp.num_clips)
  n_val = min(256, max(tp.batch_size, tp.num_clips // 8))
  val_videos, val_events = render(config, tp.seed + 1, n_val)
  render_s = time.time() - t0
  logging.info(
    "tiny CLIP: rendered %d + %d captioned clips in %.0f s",
    len(videos),
    len(val_videos),
    render_s,
  )

  # Text tower: the random tiny checkpoint (and its tokenizer) to start from.
  out_text = text_dir(config)
  tmp_text = f"{out_text}.tmp-{os.getpid()}"
  words = text_words(class_names, templates)
  tiny_clip.write_tiny_clip_checkpoint(
    tmp_text,
    words=words,
    width=tp.width,
    layers=tp.layers,
    heads=tp.heads,
    projection_dim=tp.projection_dim,
    seed=tp.seed,
  )
  import transformers  # noqa: PLC0415 - heavy

  tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_text)
  text_module, text_params, _ = clip_text.load_clip_text(tmp_text, scan=False)
  length = min(TRAIN_TOKENS, text_module.max_position_embeddings)

  video = video_model(config)
  init_rng, data_rng = jax.random.split(jax.random.key(tp.seed))
  as_video = lambda x: build.normalize_video(x, jnp.float32)
  variables = nn.meta.unbox(
    jax.jit(lambda r, x: video.init(r, x, train=False))(
      init_rng, as_video(jnp.asarray(videos[:2]))
    )
  )
  video_params = variables["params"]
  stats = variables.get("batch_stats", {})
  loaded = 0
  if tp.init_backbone:
    pre = weights.load_params_file(tp.init_backbone, video)
    video_params, n1 = _merge(video_params, pre.get("params", {}))
    stats, n2 = _merge(stats, pre.get("batch_stats", {}))
    loaded = n1 + n2
    logging.info(
      "tiny CLIP: video tower from %s (%d leaves)", tp.init_backbone, loaded
    )
  head = None
  params = {
    "video": video_params,
    "text": text_params,
    "logit_scale": jnp.asarray(np.log(1.0 / tp.temperature), jnp.float32),
  }
  if tp.lock_video:
    # Locked-image tuning: the loaded backbone's tokens, once per clip.
    t_feat = time.time()
    locked = {"params": video_params, "batch_stats": stats}
    videos = video_tokens(video, locked, videos)
    val_videos = video_tokens(video, locked, val_videos)
    head = LockedVideoHead(tp.projection_dim)
    params["head"] = nn.meta.unbox(
      head.init(init_rng, jnp.asarray(videos[:2]))["params"]
    )
    del params["video"]
    logging.info(
      "tiny CLIP: locked video tower, tokens %s of %d clips in %.0f s",
      videos.shape[1:],
      len(videos) + len(val_videos),
      time.time() - t_feat,
    )
  schedule = optax.warmup_cosine_decay_schedule(
    0.0, tp.lr, max(1, tp.steps // 10), max(tp.steps, 2)
  )
  tx = optax.chain(
    optax.clip_by_global_norm(1.0),
    optax.adamw(
      schedule,
      weight_decay=tp.weight_decay,
      mask=optim.weight_decay_mask(params),
    ),
  )
  opt_state = tx.init(params)

  train_step = make_train_step(video, text_module, tx, head)

  @jax.jit
  def val_step(p, s, x, ids, same):
    v, t = embed(video, text_module, p, s, x, ids, head)
    return contrastive_loss(v, t, p["logit_scale"], same)[1]["accuracy"]

  def heldout_accuracy(p, s) -> float:
    """Video -> caption top-1 in batches of batch_size held-out clips."""
    rng = np.random.default_rng([tp.seed, 11])
    hits, n = 0.0, 0
    b = tp.batch_size
    for i in range(0, len(val_videos) - b + 1, b):
      ev = val_events[i : i + b]
      ids = tokenize(
        tokenizer, [motion_captions.caption(e, rng) for e in ev], length
      )
      same = motion_captions.same_events(ev)
      hits += float(val_step(p, s, val_videos[i : i + b], ids, same)) * b
      n += b
    return hits / max(n, 1)

  summary: dict[str, Any] = {
    "heldout_accuracy_at_init": heldout_accuracy(params, stats),
    "init_backbone_loaded": loaded,
  }
  batches = pose_pretrain.shuffled_batches(len(videos), tp.batch_size, tp.seed)
  recent, first = [], None
  t_train = time.time()
  for step, idx in zip(range(1, tp.steps + 1), batches):
    # A fresh phrasing of every caption each time its clip is drawn.
    rng = np.random.default_rng([tp.seed, 10, step])
    ev = [events[i] for i in idx]
    ids = tokenize(
      tokenizer, [motion_captions.caption(e, rng) for e in ev], length
    )
    params, stats, opt_state, m = train_step(
      params,
      stats,
      opt_state,
      videos[idx],
      ids,
      motion_captions.same_events(ev),
      jax.random.fold_in(data_rng, step),
    )
    recent.append(m)
    if first is None:
      first = float(m["loss"])
    if step % max(1, tp.steps // 10) == 0 or step == tp.steps:
      recent = jax.device_get(recent)
      means = {k: float(np.mean([r[k] for r in recent])) for k in recent[0]}
      recent = []
      logging.info(
        "tiny CLIP step %d/%d: loss %.3f, batch video->text top-1 %.2f, "
        "temperature %.3f, %.0f s",
        step,
        tp.steps,
        means["loss"],
        means["accuracy"],
        means["temperature"],
        time.time() - t_train,
      )
  summary.update(
    steps=tp.steps,
    render_seconds=render_s,
    loss_first=first,
    loss_last=means["loss"],
    accuracy_last=means["accuracy"],
    temperature=means["temperature"],
    heldout_accuracy=heldout_accuracy(params, stats),
  )
  summary["seconds"] = time.time() - t0
  logging.info(
    "tiny CLIP: held-out video->caption top-1 %.2f (%.2f at init), %.0f s",
    summary["heldout_accuracy"],
    summary["heldout_accuracy_at_init"],
    summary["seconds"],
  )
  write(config, params, stats, video, class_names, templates, summary)
  return summary


def write(
  config: ml_collections.ConfigDict,
  params: Mapping[str, Any],
  stats: Any,
  video: uniformerv2.UniFormerV2,
  class_names: Sequence[str],
  templates: Sequence[str],
  summary: Mapping[str, Any],
) -> None:
  """Writes the text checkpoint, the video params file and the summary."""
  tp = config.text_bank.pretrain
  out_text = text_dir(config)
  tmp_text = f"{out_text}.tmp-{os.getpid()}"
  vocab, merges = tiny_clip.build_vocab(text_words(class_names, templates))
  tiny_clip.write_checkpoint(
    tmp_text,
    clip_text.params_to_hf(params["text"]),
    vocab,
    merges,
    heads=tp.heads,
  )
  if os.path.exists(out_text):
    shutil.rmtree(out_text)
  os.replace(tmp_text, out_text)
  source = {"clip_pretrain": tp.to_dict(), **summary}
  if tp.lock_video:  # the backbone is init_backbone; only the head is new
    path = head_path(config)
    with open(f"{path}.tmp", "wb") as f:
      f.write(
        flax.serialization.msgpack_serialize(
          jax.tree.map(np.asarray, params["head"])
        )
      )
    os.replace(f"{path}.tmp", path)
  else:
    path = video_backbone_path(config)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    weights.save_params_file(
      tmp,
      {
        "params": jax.tree.map(np.asarray, params["video"]),
        "batch_stats": jax.tree.map(np.asarray, stats),
      },
      video,
      source=json.dumps(source),
    )
    os.replace(tmp, path)
  summary_path = os.path.join(config.text_bank.dir, SUMMARY_FILE)
  with open(f"{summary_path}.tmp", "w", encoding="utf-8") as f:
    json.dump(
      {**source, "logit_scale": float(params["logit_scale"])}, f, indent=1
    )
  os.replace(f"{summary_path}.tmp", summary_path)


def is_built(config: ml_collections.ConfigDict) -> bool:
  """Whether the text tower, the video tower (or locked tower's head) and
  the summary are there."""
  locked = config.text_bank.pretrain.lock_video
  return all(
    os.path.exists(p)
    for p in (
      os.path.join(text_dir(config), "model.safetensors"),
      head_path(config) if locked else video_backbone_path(config),
      os.path.join(config.text_bank.dir, SUMMARY_FILE),
    )
  )


def load_locked_tower(
  config: ml_collections.ConfigDict, video: uniformerv2.UniFormerV2
) -> dict[str, Any]:
  """init_backbone's variables in `video`'s shapes (its head, which the
  locked tower never reads, keeps the init when the file's differs)."""
  d = config.data
  shape = (1, d.num_frames, d.crop_size, d.crop_size, 3)
  variables = nn.meta.unbox(
    jax.jit(lambda r, x: video.init(r, x, train=False))(
      jax.random.key(0), build.normalize_video(jnp.zeros(shape), jnp.float32)
    )
  )
  pre = weights.load_params_file(config.text_bank.pretrain.init_backbone, video)
  params, _ = _merge(variables["params"], pre.get("params", {}))
  stats, _ = _merge(
    variables.get("batch_stats", {}), pre.get("batch_stats", {})
  )
  return {"params": params, "batch_stats": stats}


def load_video_embedder(config: ml_collections.ConfigDict):
  """The trained video tower as a jitted uint8 (B, T, H, W, 3) -> (B, D)
  function (a locked tower: init_backbone's tokens through the head)."""
  tp = config.text_bank.pretrain
  video = video_model(config)
  if not tp.lock_video:
    variables = weights.load_params_file(video_backbone_path(config), video)
    params = {"video": variables["params"]}
    stats = variables.get("batch_stats", {})
    return jax.jit(lambda x: video_embedding(video, None, params, stats, x)[0])
  locked = load_locked_tower(config, video)
  head = LockedVideoHead(tp.projection_dim)
  with open(head_path(config), "rb") as f:
    params = {"head": flax.serialization.msgpack_restore(f.read())}

  def embed_videos(x):
    out = video.apply(locked, build.normalize_video(x, jnp.float32))
    return video_embedding(None, head, params, None, out["tokens"])[0]

  return jax.jit(embed_videos)


def ensure_tiny_clip(
  config: ml_collections.ConfigDict,
  class_names: Sequence[str],
  templates: Sequence[str],
) -> str:
  """Pretrains the tiny CLIP unless built; -> the text checkpoint dir.

  Builds text_bank.pretrain.init_backbone first by pose pretraining
  (`init_from.pose_pretrain`) if it is set and absent.
  """
  problems = config_problems(config)
  if problems:
    raise config_lib.ConfigError("; ".join(problems))
  if not is_built(config):
    init = config.text_bank.pretrain.init_backbone
    if init and not os.path.exists(init):
      logging.info("pose-pretraining the tiny CLIP's video start %s", init)
      pose_pretrain.pretrain(config, init)
    logging.info("pretraining the tiny CLIP into %s", config.text_bank.dir)
    pretrain(config, class_names, templates)
  return text_dir(config)
