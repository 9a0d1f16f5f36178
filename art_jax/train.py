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

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from art_jax import (
  checkpointing,
  config_lib,
  evaluate,
  losses,
  optim,
  reporting,
  text_bank,
  weights,
)
from art_jax import sharding as sh
from art_jax import state as state_lib
from art_jax.data import pipeline
from art_jax.models import backbones, build

PyTree = Any
Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]
TrainStep = Callable[
  [state_lib.TrainState, Batch], tuple[state_lib.TrainState, Metrics]
]


def loss_options(config: ml_collections.ConfigDict) -> losses.LossConfig:
  """The loss weights and switches of Eq 18 from `config.loss` (as given;
  `config_lib.validate` rejects switches the model cannot serve)."""
  return losses.LossConfig(**config.loss.to_dict())


# --- inputs ------------------------------------------------------------------


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
  pixel_stats: build.PixelStats = build.CLIP_STATS,
) -> TrainStep:
  """Builds the pure `train_step(state, batch) -> (state, metrics)`."""

  def loss_and_grads(params, batch_stats, bank, batch, rng, step):
    def loss_fn(params):
      video = build.normalize_video(batch["video"], dtype, pixel_stats)
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

  def train_step(state: state_lib.TrainState, batch: Batch):
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


def compile_train_step(
  train_step: Callable,
  setup: state_lib.StateSetup,
  mesh: jax.sharding.Mesh,
  rules: sh.LogicalRules,
  video_shape: tuple[int, ...],
) -> tuple[Any, float]:
  """jit with explicit shardings, the state donated; AOT-compiled.

  Returns (compiled step, compile seconds).
  """
  shardings = state_lib.batch_shardings(mesh, rules)
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
  # 1. Metadata, bank, validation (inputs built on first use, such as the
  # demo's, are built before: `art_jax.main`).
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
  model = build.build_model(config)
  schedule = optim.learning_rate_schedule(
    config.optim, total_steps, steps["warmup_steps"], steps["decay_steps"]
  )
  tx = optim.make_optimizer(config.optim, schedule)
  crop = config.data.crop_size
  video_shape = (config.batch_size, config.data.num_frames, crop, crop, 3)
  setup = state_lib.setup_state(
    model, tx, mesh, rules, video_shape, tuple(bank.shape)
  )

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
    state = state_lib.create_state(setup, mesh, rules, config.seed, bank)
    if config.init_from.path:
      kind = model.backbone_kind
      state, report = weights.load_pretrained(
        state,
        config.init_from.path,
        backbones.build(kind, model.backbone),
        allow_reinit=config.init_from.allow_reinit,
        classifier=backbones.classifier_prefix(kind),
      )
      if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "init_from_report.json"), "w") as f:
          json.dump(report.as_json(), f, indent=1)
  start_step = int(jax.device_get(state.step))

  writer = reporting.MetricWriter(workdir)
  evaluator = evaluate.Evaluator(
    config,
    model,
    setup.shardings,
    mesh,
    rules,
    workdir=workdir,
    writer=writer,
    class_names=class_names,
  )
  if mode == "eval":
    metrics = evaluator.run(state, start_step)
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
    dtype=build.DTYPES[config.model.dtype],
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
    flops = reporting.model_train_flops(config, config.batch_size)
    flops /= len(devices)
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
    batch = state_lib.to_global(next(train_iter), mesh, rules)
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
      last_eval = evaluator.run(state, step)
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
    last_eval = evaluator.run(state, step)

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
