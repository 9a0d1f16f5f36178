"""Training and evaluation of ART, in the order things run.

1. Read the data metadata and the text bank; validate the config.
2. Build the mesh, the model, the optimiser; shape the state abstractly
   and derive every sharding from the logical axis names.
3. Resume: newest checkpoint in the workdir, else `init_from`, else
   scratch (the state is born sharded: jit with out_shardings).
4. Compile the train step (state donated) and log its memory and FLOPs.
5. Loop: step, log, evaluate, checkpoint; stop cleanly on SIGTERM.
6. Final checkpoint and evaluation.
"""

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from art_jax import (
  checkpointing,
  config_lib,
  evaluate,
  inputs,
  losses,
  optim,
  reporting,
  text_bank,
  viz,
)
from art_jax import sharding as sh
from art_jax.data import pipeline
from art_jax.models import art as art_model
from art_jax.models import backbones

PyTree = Any
Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]

DTYPES = {
  "float32": jnp.float32,
  "bfloat16": jnp.bfloat16,
  "float16": jnp.float16,
}


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes; a pytree of global arrays."""

  step: jax.Array  # int32 scalar: completed optimiser steps
  params: PyTree  # includes the agent bank S' and the prototypes
  batch_stats: PyTree  # the backbone's BatchNorm statistics
  opt_state: PyTree
  text_bank: jax.Array  # (K, M, D) EMA bank S; never seen by the optimiser
  rng: jax.Array  # typed key; folded with `step` for per-step randomness


# --- model -------------------------------------------------------------------


def build_model(config: ml_collections.ConfigDict) -> art_model.ART:
  """ART with the preset backbone of `config.model.backbone_kind`,
  overridden by `config.model.backbone`."""
  m = config.model
  dtype, param_dtype = DTYPES[m.dtype], DTYPES[m.param_dtype]
  backbone = dict(
    backbones.kwargs_from_config(config), dtype=dtype, param_dtype=param_dtype
  )
  heads = dict(
    m.heads.to_dict(),
    num_classes=config.data.num_classes,
    scan=m.scan,
    remat_policy=m.remat_policy,
    attention_impl=m.attention_impl,
  )
  return art_model.ART(
    backbone=backbone,
    heads=heads,
    backbone_kind=m.backbone_kind,
    dtype=dtype,
    param_dtype=param_dtype,
  )


PixelStats = tuple[Sequence[float], Sequence[float]]
CLIP_STATS: PixelStats = (config_lib.CLIP_MEAN, config_lib.CLIP_STD)


def normalize_video(
  video: jax.Array, dtype: Any, pixel_stats: PixelStats = CLIP_STATS
) -> jax.Array:
  """uint8 (B, T, H, W, 3) -> (x - mean) / std as `dtype` (on device);
  `pixel_stats` = (mean, std) per RGB channel in 0..255 units."""
  mean = jnp.asarray(pixel_stats[0], jnp.float32)
  std = jnp.asarray(pixel_stats[1], jnp.float32)
  return ((video.astype(jnp.float32) - mean) / std).astype(dtype)


def loss_options(config: ml_collections.ConfigDict) -> losses.LossConfig:
  """The loss weights and switches of Eq 18 from `config.loss` (as given;
  `config_lib.validate` rejects switches the model cannot serve)."""
  return losses.LossConfig(**config.loss.to_dict())


# --- state and shardings -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StateSetup:
  """How to create, shard and restore the train state on one mesh."""

  init_fn: Callable[[jax.Array, jax.Array], TrainState]
  abstract: TrainState  # ShapeDtypeStructs carrying shardings
  shardings: TrainState  # NamedSharding per leaf


def setup_state(
  model: nn.Module,
  tx: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
  rules: sh.LogicalRules,
  video_shape: tuple[int, ...],
  bank_shape: tuple[int, ...],
) -> StateSetup:
  """Derives the state's shardings from the model's logical axis names."""
  dummy = jnp.zeros((1, *video_shape[1:]), jnp.float32)

  def init_boxed(rng, bank):
    p_rng, d_rng, s_rng = jax.random.split(rng, 3)
    variables = model.init(
      {"params": p_rng, "dropout": d_rng}, dummy, bank, train=False
    )
    params = variables["params"]
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables.get("batch_stats", {}),
      opt_state=tx.init(params),
      text_bank=bank,
      rng=s_rng,
    )

  def init_fn(rng, bank):
    return nn.meta.unbox(init_boxed(rng, bank))

  rng_shape = jax.eval_shape(lambda: jax.random.key(0))
  bank_struct = jax.ShapeDtypeStruct(bank_shape, jnp.float32)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    boxed = _drop_empty_boxes(
      jax.eval_shape(init_boxed, rng_shape, bank_struct)
    )
    specs = nn.get_partition_spec(boxed)
    shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
  # Leaves without logical names (step, rng, bank, BatchNorm stats):
  # replicated.
  replicated = NamedSharding(mesh, P())
  shardings = jax.tree.map(
    lambda s: replicated if s is None else s,
    shardings,
    is_leaf=lambda x: x is None or isinstance(x, NamedSharding),
  )
  abstract = jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
    nn.meta.unbox(boxed),
    shardings,
  )
  return StateSetup(init_fn, abstract, shardings)


def _drop_empty_boxes(tree: PyTree) -> PyTree:
  """Unboxes partitioning boxes that hold no array.

  optax.partition/masked put an empty `MaskedNode` where a parameter is not
  in their group; computed over boxed params that node sits *inside* the
  parameter's box, which would otherwise become a sharding where the
  unboxed state has no leaf.
  """

  def fix(x):
    value = getattr(x, "value", None)
    if isinstance(x, nn.meta.AxisMetadata) and not hasattr(value, "shape"):
      return value
    return x

  return jax.tree.map(
    fix, tree, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata)
  )


def create_state(
  setup: StateSetup, mesh, rules, seed: int, bank: np.ndarray
) -> TrainState:
  """A fresh state, born sharded (never whole on one host)."""
  replicated = NamedSharding(mesh, P())
  bank = jax.device_put(np.asarray(bank, np.float32), replicated)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    init = jax.jit(
      setup.init_fn,
      in_shardings=(replicated, replicated),
      out_shardings=setup.shardings,
    )
    return init(jax.random.key(seed), bank)


# --- the train step ----------------------------------------------------------


def _find_leaf(tree: PyTree, name: str) -> jax.Array:
  found = [
    x
    for p, x in jax.tree_util.tree_leaves_with_path(tree)
    if optim.path_str(p).split("/")[-1] == name
  ]
  if len(found) != 1:
    raise KeyError(f"expected one parameter named {name!r}, found {len(found)}")
  return found[0]


def _micro_batches(batch: Batch, accum: int) -> Batch:
  """(B, ...) -> (accum, B / accum, ...), micro-batch i = rows i::accum.

  Interleaving keeps every micro-batch spread over all data-parallel
  devices (each device holds a contiguous block of rows).
  """

  def split(x):
    x = x.reshape(x.shape[0] // accum, accum, *x.shape[1:])
    return jnp.swapaxes(x, 0, 1)

  return jax.tree.map(split, batch)


def make_train_step(
  model: nn.Module,
  tx: optax.GradientTransformation,
  loss_config: losses.LossConfig,
  schedule: optax.Schedule,
  *,
  ema_momentum: float,
  accum_steps: int,
  dtype: Any,
  pixel_stats: PixelStats = CLIP_STATS,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
  """Builds the pure `train_step(state, batch) -> (state, metrics)`."""

  def loss_and_grads(params, batch_stats, bank, batch, rng, step):
    def loss_fn(params):
      video = normalize_video(batch["video"], dtype, pixel_stats)
      out, mutated = model.apply(
        {"params": params, "batch_stats": batch_stats},
        video,
        bank,
        train=True,
        rngs={"dropout": rng},
        mutable=["batch_stats"],
      )
      total, terms = losses.total_loss(out, batch["label"], loss_config, step)
      correct = jnp.mean(
        (jnp.argmax(out["logits"], -1) == batch["label"]).astype(jnp.float32)
      )
      return total, (terms, mutated["batch_stats"], correct)

    (total, (terms, new_stats, acc)), grads = jax.value_and_grad(
      loss_fn, has_aux=True
    )(params)
    metrics = {**terms, "loss": total, "accuracy": acc}
    return grads, new_stats, metrics

  def train_step(state: TrainState, batch: Batch):
    rng = jax.random.fold_in(state.rng, state.step)
    if accum_steps == 1:
      grads, new_stats, metrics = loss_and_grads(
        state.params, state.batch_stats, state.text_bank, batch, rng, state.step
      )
    else:

      def body(carry, xs):
        grad_sum, stats, metric_sum = carry
        micro, i = xs
        grads, stats, metrics = loss_and_grads(
          state.params,
          stats,
          state.text_bank,
          micro,
          jax.random.fold_in(rng, i),
          state.step,
        )
        add = lambda a, b: jax.tree.map(jnp.add, a, b)
        return (add(grad_sum, grads), stats, add(metric_sum, metrics)), None

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      metric_shapes = jax.eval_shape(
        lambda: loss_and_grads(
          state.params,
          state.batch_stats,
          state.text_bank,
          jax.tree.map(lambda x: x[0], _micro_batches(batch, accum_steps)),
          rng,
          state.step,
        )[2]
      )
      metric_zeros = jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes
      )
      (grads, new_stats, metrics), _ = jax.lax.scan(
        body,
        (zeros, state.batch_stats, metric_zeros),
        (_micro_batches(batch, accum_steps), jnp.arange(accum_steps)),
      )
      grads = jax.tree.map(lambda g: g / accum_steps, grads)
      metrics = jax.tree.map(lambda m: m / accum_steps, metrics)

    grad_norm = optim.global_norm(grads)
    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    new_bank = losses.ema_update(
      state.text_bank, _find_leaf(new_params, "agent_bank"), ema_momentum
    )
    # A non-finite loss or gradient skips the update (params, statistics,
    # optimiser and bank all stay); the host counts skipped steps.
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(
      lambda a, b: jnp.where(finite, a, b), new, old
    )
    state = state.replace(
      step=state.step + 1,
      params=keep(new_params, state.params),
      batch_stats=keep(new_stats, state.batch_stats),
      opt_state=keep(new_opt_state, state.opt_state),
      text_bank=keep(new_bank, state.text_bank),
    )
    metrics = {f"train/{k}": v.astype(jnp.float32) for k, v in metrics.items()}
    metrics["train/grad_norm"] = grad_norm
    metrics["train/lr"] = jnp.asarray(schedule(state.step - 1), jnp.float32)
    metrics["train/finite"] = finite.astype(jnp.float32)
    if loss_config.use_mtc and loss_config.mtc_warmup_steps > 0:
      metrics["train/lambda_mtc"] = losses.mtc_weight(
        loss_config, state.step - 1
      )
    return state, metrics

  return train_step


def make_predict_fn(
  model: nn.Module, dtype: Any, pixel_stats: PixelStats = CLIP_STATS
):
  """`predict(state, video) -> softmax probs (B, K)` in float32."""

  def predict(state: TrainState, video: jax.Array) -> jax.Array:
    out = model.apply(
      {"params": state.params, "batch_stats": state.batch_stats},
      normalize_video(video, dtype, pixel_stats),
      state.text_bank,
      train=False,
    )
    return jax.nn.softmax(out["logits"].astype(jnp.float32), axis=-1)

  return predict


def batch_shardings(mesh, rules) -> dict[str, NamedSharding]:
  """Video (B, T, H, W, 3) and labels (B,) split over the batch axes."""
  return {
    "video": sh.logical_sharding(
      mesh, (sh.BATCH, None, None, None, None), rules
    ),
    "label": sh.logical_sharding(mesh, (sh.BATCH,), rules),
  }


def compile_train_step(
  train_step: Callable,
  setup: StateSetup,
  mesh,
  rules,
  video_shape: tuple[int, ...],
) -> tuple[Any, float]:
  """jit with explicit shardings, the state donated; AOT-compiled.

  Returns (compiled step, compile seconds).
  """
  shardings = batch_shardings(mesh, rules)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    jitted = jax.jit(
      train_step,
      in_shardings=(setup.shardings, shardings),
      out_shardings=(setup.shardings, NamedSharding(mesh, P())),
      donate_argnums=(0,),
    )
    batch_struct = {
      "video": jax.ShapeDtypeStruct(
        video_shape, jnp.uint8, sharding=shardings["video"]
      ),
      "label": jax.ShapeDtypeStruct(
        video_shape[:1], jnp.int32, sharding=shardings["label"]
      ),
    }
    t0 = time.perf_counter()
    compiled = jitted.lower(setup.abstract, batch_struct).compile()
  return compiled, time.perf_counter() - t0


def make_explain_fn(
  model: nn.Module, dtype: Any, pixel_stats: PixelStats = CLIP_STATS
):
  """`explain(state, video)` -> probs, response maps, backbone tokens."""

  def explain(state: TrainState, video: jax.Array) -> dict[str, jax.Array]:
    out = model.apply(
      {"params": state.params, "batch_stats": state.batch_stats},
      normalize_video(video, dtype, pixel_stats),
      state.text_bank,
      train=False,
    )
    keep = {
      k: out[k].astype(jnp.float32)
      for k in ("response_maps", "tokens")
      if k in out
    }
    keep["probs"] = jax.nn.softmax(out["logits"].astype(jnp.float32), -1)
    return keep

  return explain


def write_tracklet_pictures(
  explained: Mapping[str, np.ndarray],
  frames: np.ndarray,
  class_weights: np.ndarray,
  class_names,
  grid: tuple[int, int],
  out_dir: str,
  step: int,
  writer: "reporting.MetricWriter | None" = None,
  max_clips: int = 4,
  labels: np.ndarray | None = None,
) -> list[str]:
  """Tracklet + CAM pictures of `max_clips` clips of a batch (PNG + TB),
  titled with the prediction and, given `labels` (B,), the true class.

  The clips are spread evenly over the batch (first and last included), as
  evaluation sets are often sorted by class; files and TensorBoard tags
  carry the clip's index in the batch (`step{step}_clip{i}.png`).
  """
  paths = []
  maps = explained.get("response_maps")  # absent in the baseline
  name_of = lambda k: class_names[k] if class_names else str(k)
  b = frames.shape[0]
  picks = np.linspace(0, b - 1, min(max_clips, b)).round().astype(int)
  for i in np.unique(picks):
    probs = explained["probs"][i]
    pred = int(np.argmax(probs))
    title = f"pred: {name_of(pred)} ({probs[pred]:.2f})"
    if labels is not None:
      title = f"true: {name_of(int(labels[i]))}\n{title}"
    image = viz.clip_picture(
      frames[i],
      None if maps is None else maps[i],
      explained["tokens"][i],
      class_weights[:, pred],
      grid,
      title=title,
      scale=2,
    )
    paths.append(
      viz.save_png(image, os.path.join(out_dir, f"step{step}_clip{i}.png"))
    )
    if writer is not None:
      writer.image(step, f"tracklets/clip{i}", image)
  return paths


# --- host <-> device ---------------------------------------------------------


def to_global(batch: Mapping[str, np.ndarray], mesh, rules) -> Batch:
  """Host-local numpy batch -> global arrays sharded over the batch axes."""

  def put(x):
    spec = (sh.BATCH,) + (None,) * (x.ndim - 1)
    return jax.make_array_from_process_local_data(
      sh.logical_sharding(mesh, spec, rules), x
    )

  return {k: put(np.asarray(v)) for k, v in batch.items()}


def make_train_iterator(config: ml_collections.ConfigDict):
  """This host's slice of the shuffled, augmented, repeated train split."""
  d = config.data
  return pipeline.make_train_iterator(
    d.dir,
    d.train_split,
    batch_size=config.batch_size // jax.process_count(),
    num_frames=d.num_frames,
    sampling=d.sampling,
    frame_stride=d.frame_stride,
    crop_size=d.crop_size,
    crop=d.crop,
    scales=tuple(d.crop_scales),
    area_range=(d.min_area, d.max_area),
    flip=d.flip,
    seed=config.seed,
    num_workers=d.num_workers,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    num_classes=d.num_classes,
  )


def make_eval_iterator(config: ml_collections.ConfigDict, batch_size: int):
  """Every view of this host's slice of the eval split, padded batches."""
  d = config.data
  return pipeline.make_eval_iterator(
    d.dir,
    d.eval_split,
    batch_size=batch_size // jax.process_count(),
    num_frames=d.num_frames,
    sampling=d.sampling,
    frame_stride=d.frame_stride,
    crop_size=d.crop_size,
    num_test_clips=d.num_test_clips,
    num_spatial_crops=d.num_spatial_crops,
    num_workers=d.num_workers,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    num_classes=d.num_classes,
  )


# --- pretrained weights ------------------------------------------------------


def load_pretrained(
  state: TrainState,
  path: str,
  backbone: Mapping[str, Any],
  allow_reinit: bool = False,
  kind: str = "uniformerv2",
) -> tuple[TrainState, dict[str, list[str]]]:
  """Loads a converted params file into the backbone (`backbone`: its
  module kwargs, `kind`: a key of backbones.KINDS).

  Leaves whose name and shape match are loaded; checkpoint entries the
  model lacks are ignored; leaves the file lacks keep their initialisation.
  A leaf the file has with another shape is an error (a checkpoint
  converted for another layout would otherwise train with, e.g., a random
  patch embedding), except the backbone's classifier
  (`backbones.classifier_prefix`: another class count, or a pose head),
  which keeps its initialisation; `allow_reinit` (config
  init_from.allow_reinit) re-initialises every such leaf instead. Returns
  the report; its 'initialised_in_file' lists the loaded arrays the file
  marks as not pretrained (convert_weights marks them in TEA files: ME,
  MTA and fc from an ImageNet Res2Net keep their init there).
  """
  # In this model's layer layout (scanned or not), whatever the file's.
  loaded_vars, meta = backbones.load_variables(kind, path, backbone)
  classifier = backbones.classifier_prefix(kind)
  pre_params = flax.traverse_util.flatten_dict(
    loaded_vars.get("params", loaded_vars), sep="/"
  )
  pre_stats = flax.traverse_util.flatten_dict(
    loaded_vars.get("batch_stats", {}), sep="/"
  )
  report = {"loaded": [], "reinitialised": [], "ignored": []}
  mismatched = []

  def merge(tree, pretrained, prefix):
    flat = flax.traverse_util.flatten_dict(tree, sep="/")
    used = set()
    for key, value in flat.items():
      if not key.startswith("backbone/"):
        continue
      name = key[len("backbone/") :]
      src = pretrained.get(name)
      wrong_shape = src is not None and src.shape != value.shape
      if wrong_shape and not (allow_reinit or name.startswith(classifier)):
        mismatched.append(
          f"{prefix}{key}: file {tuple(src.shape)}, model {tuple(value.shape)}"
        )
      if src is None or tuple(src.shape) != tuple(value.shape):
        report["reinitialised"].append(prefix + key)
        continue
      used.add(name)
      flat[key] = jax.device_put(np.asarray(src, value.dtype), value.sharding)
      report["loaded"].append(prefix + key)
    report["ignored"].extend(prefix + k for k in pretrained if k not in used)
    return flax.traverse_util.unflatten_dict(flat, sep="/")

  params = merge(state.params, pre_params, "params/")
  batch_stats = merge(state.batch_stats, pre_stats, "batch_stats/")
  fresh = set(meta.get("initialised", ()))
  report["initialised_in_file"] = [
    k for k in report["loaded"] if k.replace("/backbone/", "/", 1) in fresh
  ]
  if mismatched:
    raise ValueError(
      f"init_from.path={path}: {len(mismatched)} backbone leaves have "
      "another shape than the model's:\n  "
      + "\n  ".join(mismatched[:20])
      + "\nThe file was converted for another layout (e.g. a Kinetics "
      "checkpoint without `convert_weights --preset`, or another "
      "model.backbone); convert it for this config, or set "
      "init_from.allow_reinit=True to train those leaves from scratch."
    )
  state = state.replace(params=params, batch_stats=batch_stats)
  logging.info(
    "init_from %s: loaded %d (%d of them initialised, not pretrained, in "
    "the file), re-initialised %d, ignored %d",
    path,
    len(report["loaded"]),
    len(report["initialised_in_file"]),
    len(report["reinitialised"]),
    len(report["ignored"]),
  )
  for what in ("reinitialised", "ignored"):
    for key in report[what]:
      logging.info("init_from: %s %s", what, key)
  return state, report


# --- the loop ----------------------------------------------------------------


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  mode: str = "train_and_eval",
  *,
  devices: list[jax.Device] | None = None,
  step_hook: Callable[[int], None] | None = None,
) -> dict[str, Any]:
  """Runs `mode` ('train', 'eval', 'train_and_eval'); returns final metrics.

  Args:
    config: a validated-on-entry config (see config_lib.validate).
    workdir: checkpoints, metrics.jsonl, TensorBoard events, eval reports.
    mode: what to run.
    devices: the mesh's devices (default: all).
    step_hook: called with the step number after every train step (tests,
      notebooks).

  Returns:
    {'steps', 'preempted', 'losses' (per step), 'skipped_steps'} plus the
    last evaluation's top1/top5/mean_class_accuracy.
  """
  # 1. Inputs (synthetic data / text bank built if configured and absent),
  # metadata, bank, validation.
  inputs.ensure_inputs(config)
  train_meta = (
    pipeline.read_metadata(
      config.data.dir, config.data.train_split, config.data.num_classes
    )
    if mode != "eval"
    else None
  )
  eval_meta = pipeline.read_metadata(
    config.data.dir, config.data.eval_split, config.data.num_classes
  )
  bank, bank_meta = text_bank.load_for_config(config)
  devices = list(devices or jax.devices())
  config_lib.validate(
    config,
    num_devices=len(devices),
    shard_meta=train_meta or eval_meta,
    bank_shape=tuple(bank.shape),
    bank_class_names=bank_meta.get("class_names"),
  )
  num_train = (train_meta or eval_meta)["num_clips"]
  steps = config_lib.steps_from_config(config, num_train)
  total_steps = steps["total_steps"]
  class_names = eval_meta.get("class_names") or bank_meta.get("class_names")

  # 2. Mesh, model, optimiser, state shardings.
  rules = sh.LOGICAL_RULES
  mesh = sh.make_mesh(config.mesh.to_dict(), devices)
  logging.info(
    "mesh %s over %d devices (%d processes)",
    dict(mesh.shape),
    len(devices),
    jax.process_count(),
  )
  model = build_model(config)
  schedule = optim.learning_rate_schedule(
    config.optim, total_steps, steps["warmup_steps"], steps["decay_steps"]
  )
  tx = optim.make_optimizer(config.optim, schedule)
  crop = config.data.crop_size
  video_shape = (config.batch_size, config.data.num_frames, crop, crop, 3)
  setup = setup_state(model, tx, mesh, rules, video_shape, tuple(bank.shape))
  dtype = DTYPES[config.model.dtype]

  train_iter = None
  if mode != "eval":
    train_iter = make_train_iterator(config)

  # 3. Resume.
  manager = checkpointing.make_manager(
    os.path.join(os.path.abspath(workdir), "checkpoints"),
    keep=config.ckpt.keep,
    keep_best=config.ckpt.keep_best,
    best_metric=config.ckpt.best_metric,
  )
  resumed = checkpointing.restore_latest(manager, setup.abstract, train_iter)
  if resumed is not None:
    state, train_iter, _ = resumed
  elif mode == "eval":
    raise FileNotFoundError(
      f"--mode=eval: no checkpoint in {manager.directory}; train first or "
      "point --workdir at a trained run"
    )
  else:
    state = create_state(setup, mesh, rules, config.seed, bank)
    if config.init_from.path:
      state, report = load_pretrained(
        state,
        config.init_from.path,
        model.backbone,
        allow_reinit=config.init_from.allow_reinit,
        kind=model.backbone_kind,
      )
      if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "init_from_report.json"), "w") as f:
          json.dump(report, f, indent=1)
  start_step = int(jax.device_get(state.step))

  writer = reporting.MetricWriter(workdir)
  predict = jax.jit(
    make_predict_fn(model, dtype, config_lib.pixel_stats(config)),
    in_shardings=(setup.shardings, batch_shardings(mesh, rules)["video"]),
    out_shardings=NamedSharding(mesh, P()),
  )
  replicate = jax.jit(lambda x: x, out_shardings=NamedSharding(mesh, P()))
  explain = jax.jit(
    make_explain_fn(model, dtype, config_lib.pixel_stats(config)),
    in_shardings=(setup.shardings, batch_shardings(mesh, rules)["video"]),
    out_shardings=NamedSharding(mesh, P()),
  )
  grid = backbones.token_grid(model.backbone_kind, model.backbone, crop)
  eval_bs = config.data.eval_batch_size or config.batch_size

  def run_eval(step: int) -> dict[str, Any]:
    it = make_eval_iterator(config, eval_bs)

    def predict_batch(batch):
      g = to_global(batch, mesh, rules)
      with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        probs = predict(state, g["video"])
      rows = {
        k: np.asarray(jax.device_get(replicate(g[k])))
        for k in ("label", "video_index", "mask")
      }
      batch_rows.update(rows)
      return np.asarray(jax.device_get(probs))

    batch_rows: dict[str, np.ndarray] = {}
    scores = evaluate.VideoScores(config.data.num_classes)
    t0 = time.perf_counter()
    first = None
    for batch in it:
      first = batch if first is None else first
      probs = predict_batch(batch)
      scores.add(
        probs,
        batch_rows["label"],
        batch_rows["video_index"],
        batch_rows["mask"],
      )
    _, probs, labels = scores.arrays()
    metrics = evaluate.classification_metrics(
      probs, labels, config.data.num_classes
    )
    if jax.process_index() == 0:
      evaluate.write_report(
        metrics, class_names, os.path.join(workdir, "eval"), step
      )
    if first is not None:
      g = to_global(first, mesh, rules)
      with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        explained = jax.device_get(explain(state, g["video"]))
      # Gathers are collectives: every process runs them, process 0 draws.
      frames, labels, weights = jax.device_get(
        (
          replicate(g["video"]),
          replicate(g["label"]),
          replicate(
            backbones.classifier_kernel(
              model.backbone_kind, state.params["backbone"]
            )
          ),
        )
      )
      if jax.process_index() == 0:
        write_tracklet_pictures(
          explained,
          np.asarray(frames),
          np.asarray(weights, np.float32),
          class_names,
          (grid, grid),
          os.path.join(workdir, "tracklets"),
          step,
          writer,
          labels=np.asarray(labels),
        )
    scalars = {
      f"eval/{k}": metrics[k]
      for k in ("top1", "top5", "mean_class_accuracy", "num_videos")
    }
    scalars["eval/seconds"] = time.perf_counter() - t0
    writer.scalars(step, scalars)
    return metrics

  if mode == "eval":
    metrics = run_eval(start_step)
    writer.close()
    manager.close()
    return {k: metrics[k] for k in ("top1", "top5", "mean_class_accuracy")}

  # 4. Compile.
  train_step = make_train_step(
    model,
    tx,
    loss_options(config),
    schedule,
    ema_momentum=config.text_bank.momentum,
    accum_steps=config.optim.accum_steps,
    dtype=dtype,
    pixel_stats=config_lib.pixel_stats(config),
  )
  compiled, compile_s = compile_train_step(
    train_step, setup, mesh, rules, video_shape
  )
  mem = compiled.memory_analysis()
  logging.info(
    "train step compiled in %.1fs; temp memory %.1f MiB/device",
    compile_s,
    (getattr(mem, "temp_size_in_bytes", 0) or 0) / 2**20,
  )
  # MFU where the device's peak is known (accelerators): model FLOPs of the
  # unrolled forward x 3 per step (XLA counts a scanned layer once, so the
  # compiled step's own count is too low).
  peak = reporting.device_peak_flops()
  flops = None
  if peak:
    from art_jax.tools import bench_lib  # noqa: PLC0415

    flops = bench_lib.model_train_flops(config, config.batch_size) / len(
      devices
    )
    logging.info("model FLOPs: %.1f TFLOP/device/step", flops / 1e12)

  # 5. Loop.
  watcher = checkpointing.PreemptionWatcher(manager)
  throughput = reporting.Throughput(total_steps, config.batch_size, flops, peak)
  throughput.reset(start_step)
  nonfinite_streak, skipped_total = 0, 0
  pending = None  # metrics of the previous step, read one step late
  history: list[dict[str, float]] = []
  last_eval: dict[str, Any] = {}
  logging.info(
    "training steps %d..%d (%d per epoch)",
    start_step,
    total_steps,
    steps["steps_per_epoch"],
  )

  def check_finite(metrics):
    nonlocal nonfinite_streak, skipped_total
    host = jax.device_get(metrics)
    history.append({k: float(v) for k, v in host.items()})
    if host["train/finite"] < 1:
      nonfinite_streak += 1
      skipped_total += 1
      logging.warning(
        "non-finite loss at step %d: update skipped (%d in a row)",
        len(history),
        nonfinite_streak,
      )
      if nonfinite_streak >= config.max_nonfinite_steps:
        manager.wait_until_finished()
        raise FloatingPointError(
          f"{nonfinite_streak} non-finite steps in a row; stopping. The "
          f"last good checkpoint is step {manager.latest_step()} in "
          f"{manager.directory}"
        )
    else:
      nonfinite_streak = 0
    return host

  step = start_step
  preempted = False
  while step < total_steps:
    batch = to_global(next(train_iter), mesh, rules)
    with jax.transfer_guard_host_to_device("disallow"):
      state, metrics = compiled(state, batch)
    if pending is not None:
      check_finite(pending)
    pending = metrics
    step += 1
    if step_hook is not None:
      step_hook(step)
    if step % config.log_every_steps == 0 or step == total_steps:
      host = check_finite(pending)
      pending = None
      host["train/skipped_steps"] = skipped_total
      writer.scalars(step, {**host, **throughput.measure(step)})
    preempted = watcher.reached(step)
    is_eval = mode == "train_and_eval" and (
      step % steps["eval_every_steps"] == 0 or step == total_steps
    )
    if is_eval:
      if pending is not None:
        check_finite(pending)
        pending = None
      last_eval = run_eval(step)
      checkpointing.save(
        manager,
        step,
        state,
        train_iter,
        {config.ckpt.best_metric: float(last_eval[config.ckpt.best_metric])},
      )
      throughput.reset(step)
    elif (
      step % config.ckpt.every_steps == 0 or step == total_steps or preempted
    ):
      checkpointing.save(manager, step, state, train_iter)
    if preempted:
      logging.warning("preempted: saved step %d, exiting", step)
      break
  if pending is not None:
    check_finite(pending)
  if mode == "train_and_eval" and not last_eval and step == total_steps:
    # Resumed at the last step (a finished run started again): nothing was
    # trained, so evaluate here and return its numbers like a full run.
    last_eval = run_eval(step)

  # 6. Done.
  manager.wait_until_finished()
  manager.close()
  watcher.close()
  writer.close()
  if hasattr(train_iter, "close"):
    train_iter.close()
  result = {
    "steps": step,
    "preempted": preempted,
    "losses": [h.get("train/loss") for h in history],
    "skipped_steps": skipped_total,
  }
  for k in ("top1", "top5", "mean_class_accuracy"):
    if k in last_eval:
      result[k] = last_eval[k]
  return result
