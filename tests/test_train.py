"""The training system end to end on CPU: the real trainer, data and model.

A 2-layer, 64-wide ART (configs/finegym.py:runlocal) on tiny JPEG shards.
"""

import json
import os
import shutil
import signal
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_data
from test_config import load_config, override

from art_jax import evaluate, train
from art_jax import state as state_lib
from art_jax.models import build


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  return tiny_data.make(str(tmp_path_factory.mktemp("tiny")))


def make_config(data, **changes):
  c = load_config("finegym", "runlocal")
  c.data.dir = data["data"]
  c.text_bank.dir = data["bank"]
  c.data.num_classes = 4
  c.model.heads.num_queries = 2
  c.model.heads.top_k = 4
  return override(c, changes)


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


HEAD_ONLY = {"params/backbone/proj_2/kernel", "params/backbone/proj_2/bias"}


def read_init_report(workdir):
  """init_from_report.json plus 'reinitialised_params' (a set)."""
  with open(os.path.join(workdir, "init_from_report.json")) as f:
    report = json.load(f)
  report["reinitialised_params"] = {
    k for k in report["reinitialised"] if k.startswith("params/")
  }
  return report


def read_losses(workdir):
  rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def test_train_evaluate_checkpoint_and_reports(data, tmp_path):
  workdir = str(tmp_path / "run")
  c = make_config(data, total_steps=4, eval_every_steps=2)
  result = train.train_and_evaluate(c, workdir)
  assert result["steps"] == 4 and result["skipped_steps"] == 0
  assert all(np.isfinite(result["losses"]))
  assert 0.0 <= result["top1"] <= 1.0
  rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  logged = set().union(*rows)
  for term in (
    "ce_global",
    "ce_final",
    "spa",
    "tem",
    "trk",
    "vc",
    "pc",
    "loss",
    "grad_norm",
    "lr",
    "accuracy",
  ):
    assert f"train/{term}" in logged, term
  assert {"eval/top1", "eval/top5", "eval/mean_class_accuracy"} <= logged
  assert [r["eval/num_videos"] for r in rows if "eval/num_videos" in r] == [
    8,
    8,
  ]
  for name in ("eval_step4.json", "confusion_step4.png"):
    assert os.path.exists(os.path.join(workdir, "eval", name))
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    train.train_and_evaluate(c, str(tmp_path / "empty"), mode="eval")
  # --mode=eval on the checkpoint reproduces the last evaluation.
  again = train.train_and_evaluate(c, workdir, mode="eval")
  assert again["top1"] == result["top1"]
  # Starting the finished run again trains nothing and still reports the
  # final evaluation (tools/ablate reads it).
  rerun = train.train_and_evaluate(c, workdir)
  assert rerun["steps"] == 4 and rerun["losses"] == []
  for k in ("top1", "top5", "mean_class_accuracy"):
    assert rerun[k] == result[k], k


def test_sigterm_then_resume_gives_the_same_losses_bit_for_bit(data, tmp_path):
  c = make_config(data, total_steps=20, eval_every_steps=1000)
  straight = str(tmp_path / "straight")
  train.train_and_evaluate(c, straight, mode="train")

  def preempt_at_10(step):
    if step == 10:
      os.kill(os.getpid(), signal.SIGTERM)

  resumed = str(tmp_path / "resumed")
  first = train.train_and_evaluate(
    c, resumed, mode="train", step_hook=preempt_at_10
  )
  assert first["preempted"] and first["steps"] == 10
  second = train.train_and_evaluate(c, resumed, mode="train")
  assert second["steps"] == 20 and not second["preempted"]
  want, got = read_losses(straight), read_losses(resumed)
  assert sorted(want) == sorted(got) == list(range(1, 21))
  assert [want[s] for s in range(1, 21)] == [got[s] for s in range(1, 21)]


@pytest.mark.slow
def test_eight_devices_data_fsdp_match_one_device(data, tmp_path):
  c8 = make_config(
    data,
    total_steps=3,
    eval_every_steps=1000,
    **{"mesh.data": 4, "mesh.fsdp": 2},
  )
  c1 = make_config(data, total_steps=3, eval_every_steps=1000)
  train.train_and_evaluate(c8, str(tmp_path / "d8"), mode="train")
  train.train_and_evaluate(
    c1, str(tmp_path / "d1"), mode="train", devices=jax.devices()[:1]
  )
  l8, l1 = read_losses(str(tmp_path / "d8")), read_losses(str(tmp_path / "d1"))
  np.testing.assert_allclose(
    [l8[s] for s in (1, 2, 3)], [l1[s] for s in (1, 2, 3)], rtol=2e-5
  )


@pytest.mark.slow
def test_restore_onto_a_smaller_mesh(data, tmp_path):
  """Saved on 8 devices (data 4 x fsdp 2), resumed on 4 (data 2 x fsdp 2)."""
  workdir = str(tmp_path / "run")
  c8 = make_config(
    data,
    total_steps=4,
    eval_every_steps=1000,
    **{"mesh.data": 4, "mesh.fsdp": 2},
  )
  c4 = make_config(
    data,
    total_steps=4,
    eval_every_steps=1000,
    **{"mesh.data": 2, "mesh.fsdp": 2},
  )

  def preempt_at_2(step):
    if step == 2:
      os.kill(os.getpid(), signal.SIGTERM)

  first = train.train_and_evaluate(
    c8, workdir, mode="train", step_hook=preempt_at_2
  )
  assert first["steps"] == 2
  out = train.train_and_evaluate(
    c4, workdir, mode="train", devices=jax.devices()[:4]
  )
  assert out["steps"] == 4
  straight = str(tmp_path / "straight")
  train.train_and_evaluate(
    c4, straight, mode="train", devices=jax.devices()[:4]
  )
  got, want = read_losses(workdir), read_losses(straight)
  np.testing.assert_allclose(
    [got[s] for s in (1, 2, 3, 4)], [want[s] for s in (1, 2, 3, 4)], rtol=2e-5
  )


def test_non_finite_steps_are_skipped_then_stop(data, tmp_path):
  c = make_config(
    data,
    total_steps=12,
    eval_every_steps=1000,
    max_nonfinite_steps=3,
    **{"optim.lr": 1e30, "optim.clip_grad_norm": 0.0, "ckpt.every_steps": 1},
  )
  with pytest.raises(FloatingPointError, match="non-finite steps in a row"):
    train.train_and_evaluate(c, str(tmp_path / "run"), mode="train")
  losses = read_losses(str(tmp_path / "run"))
  assert np.isfinite(losses[1])


NO_DROPOUT = {
  "model.heads.dropout_rate": 0.0,
  "model.backbone.cls_dropout": 0.0,
  "model.backbone.mlp_dropout": (0.0, 0.0),
}


def _run_two_processes(data, workdir, total_steps, port):
  """Two processes x two CPU devices on 127.0.0.1 (gloo), via main."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  args = [
    "--config=configs/finegym.py:runlocal",
    f"--workdir={workdir}",
    "--mode=train_and_eval",
    f"--config.data.dir={data['data']}",
    f"--config.text_bank.dir={data['bank']}",
    "--config.data.num_classes=4",
    "--config.model.heads.top_k=4",
    f"--config.total_steps={total_steps}",
    # An evaluation at step 4 on both hosts (gathers for the tracklet
    # pictures are collectives: a host that skipped them would hang).
    "--config.eval_every_steps=4",
    "--config.ckpt.every_steps=2",
    "--compilation_cache=",
    # Dropout masks follow row order, which differs between one host and
    # two (each host's rows come first); without dropout the loss is a
    # function of the set of examples only.
    *(f"--config.{k}={v!s}" for k, v in NO_DROPOUT.items()),
    f"--coordinator_address=127.0.0.1:{port}",
    "--num_processes=2",
  ]
  env = dict(
    os.environ,
    XLA_FLAGS="--xla_force_host_platform_device_count=2",
    JAX_PLATFORMS="cpu",
  )
  procs = [
    subprocess.Popen(
      [sys.executable, "-m", "art_jax.main", *args, f"--process_id={i}"],
      cwd=repo,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=900)[0] for p in procs]
  for p, out in zip(procs, outs, strict=True):
    assert p.returncode == 0, out[-3000:]


@pytest.mark.slow
def test_two_processes_match_one_process_and_restore(data, tmp_path):
  import portpicker  # noqa: PLC0415 - test-only

  workdir = str(tmp_path / "two")
  _run_two_processes(data, workdir, 4, portpicker.pick_unused_port())
  assert os.path.exists(os.path.join(workdir, "eval", "eval_step4.json"))
  assert "step4_clip0.png" in os.listdir(os.path.join(workdir, "tracklets"))
  single = str(tmp_path / "one")
  train.train_and_evaluate(
    make_config(
      data,
      total_steps=4,
      eval_every_steps=1000,
      **{"ckpt.every_steps": 2},
      **NO_DROPOUT,
    ),
    single,
    mode="train",
    devices=jax.devices()[:4],
  )
  two, one = read_losses(workdir), read_losses(single)
  np.testing.assert_allclose(
    [two[s] for s in (1, 2, 3, 4)], [one[s] for s in (1, 2, 3, 4)], rtol=2e-5
  )
  # Restore: drop the last checkpoint; both hosts resume from step 2 (state
  # and each host's own iterator) and redo steps 3-4 identically.
  shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))
  os.remove(os.path.join(workdir, "metrics.jsonl"))
  _run_two_processes(data, workdir, 4, portpicker.pick_unused_port())
  again = read_losses(workdir)
  assert sorted(again) == [3, 4]
  np.testing.assert_allclose([again[3], again[4]], [two[3], two[4]], rtol=1e-6)


def test_init_from_loads_the_backbone_and_reports(data, tmp_path):
  from art_jax import weights  # noqa: PLC0415
  from art_jax.models import uniformerv2  # noqa: PLC0415

  c = make_config(data, total_steps=1, eval_every_steps=1000)
  # A converted UniFormerV2 of the same size but another class count, saved
  # in the unscanned layout: layers are converted, the head re-initialised.
  kwargs = dict(build.build_model(c).backbone, num_classes=7, scan=False)
  source = uniformerv2.UniFormerV2(**kwargs)
  variables = weights.init_variables(source, jax.random.key(3))
  path = str(tmp_path / "uv2.msgpack")
  weights.save_params_file(path, variables, source)
  c.init_from.path = path
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(c, workdir, mode="train")
  report = read_init_report(workdir)
  assert report["reinitialised_params"] == HEAD_ONLY
  assert len(report["loaded"]) > 20
  assert any("uniblocks_scan_0/resblock" in k for k in report["loaded"])
  assert sorted(report["ignored"]) == [
    "params/proj_2/bias",
    "params/proj_2/kernel",
  ]


@pytest.mark.slow
def test_gradient_accumulation_equals_the_full_batch(data, tmp_path):
  # No BatchNorm (Local MHRA off) and no dropout: micro-batches of 4 then
  # give the same mean gradient as the batch of 8.
  common = {"model.backbone.no_lmhra": True, **NO_DROPOUT}
  one = make_config(data, total_steps=3, eval_every_steps=1000, **common)
  two = make_config(
    data,
    total_steps=3,
    eval_every_steps=1000,
    **{"optim.accum_steps": 2},
    **common,
  )
  train.train_and_evaluate(
    one, str(tmp_path / "a1"), mode="train", devices=jax.devices()[:2]
  )
  train.train_and_evaluate(
    two, str(tmp_path / "a2"), mode="train", devices=jax.devices()[:2]
  )
  l1, l2 = read_losses(str(tmp_path / "a1")), read_losses(str(tmp_path / "a2"))
  np.testing.assert_allclose(
    [l2[s] for s in (1, 2, 3)], [l1[s] for s in (1, 2, 3)], rtol=1e-4
  )


def test_init_from_with_a_wrong_shaped_leaf_fails_unless_allowed(tmp_path):
  """A file converted for another layout (here a patch embedding with one
  time tap, as a Kinetics checkpoint converted without --preset) must not
  silently leave conv1 at its random init."""
  from art_jax import weights  # noqa: PLC0415
  from art_jax.models import uniformerv2  # noqa: PLC0415

  c = make_config({"data": "unused", "bank": "unused"})
  model = build.build_model(c)
  video = jnp.zeros(
    (1, c.data.num_frames, c.data.crop_size, c.data.crop_size, 3)
  )
  variables = nn.meta.unbox(
    jax.jit(model.init)(jax.random.key(0), video, jnp.zeros((4, 2, 8)))
  )
  state = state_lib.TrainState(
    step=jnp.zeros((), jnp.int32),
    params=variables["params"],
    batch_stats=variables.get("batch_stats", {}),
    opt_state=(),
    text_bank=jnp.zeros((4, 2, 8)),
    rng=jax.random.key(0),
  )
  kwargs = dict(model.backbone, num_classes=7, scan=False, kernel_size=1)
  source = uniformerv2.UniFormerV2(**kwargs)
  path = str(tmp_path / "k400_no_preset.msgpack")
  weights.save_params_file(
    path, weights.init_variables(source, jax.random.key(3)), source
  )
  with pytest.raises(ValueError, match="conv1") as err:
    weights.load_pretrained(state, path, model.backbone)
  assert "allow_reinit" in str(err.value) and "proj_2" not in str(err.value)
  _, report = weights.load_pretrained(
    state, path, model.backbone, allow_reinit=True
  )
  reinit = {k for k in report.initialised if k.startswith("params/")}
  assert any("conv1" in k for k in reinit) and reinit >= HEAD_ONLY


def test_the_step_and_predict_normalise_with_the_given_pixel_stats():
  """(x - mean) / std with the config's statistics, not always CLIP's: a
  Kinetics checkpoint was fine-tuned on 0.45 / 0.225 input."""
  from art_jax import config_lib, optim
  from art_jax import sharding as sh

  c = load_config("finegym", "runlocal")
  c.data.num_classes, c.model.heads.num_queries, c.model.heads.top_k = 4, 2, 4
  model = build.build_model(c)
  tx = optim.make_optimizer(c.optim, lambda _: 0.0)
  shape = (2, 8, 32, 32, 3)
  mesh = sh.make_mesh({"data": 1}, devices=jax.devices()[:1])

  setup = state_lib.setup_state(
    model, tx, mesh, sh.LOGICAL_RULES, shape, (4, 2, 16)
  )
  bank = np.random.default_rng(0).normal(size=(4, 2, 16)).astype(np.float32)
  state = state_lib.create_state(setup, mesh, sh.LOGICAL_RULES, 0, bank)
  video = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
  kinetics = (config_lib.KINETICS_MEAN, config_lib.KINETICS_STD)

  with jax.set_mesh(mesh), nn.logical_axis_rules(sh.LOGICAL_RULES):
    probs = evaluate.make_predict_fn(model, jnp.float32, kinetics)(state, video)
    by_hand = model.apply(
      {"params": state.params, "batch_stats": state.batch_stats},
      (video.astype(np.float32) - 114.75) / 57.375,
      state.text_bank,
      train=False,
    )
    clip_probs = evaluate.make_predict_fn(model, jnp.float32)(state, video)
  np.testing.assert_allclose(
    probs, jax.nn.softmax(by_hand["logits"], -1), rtol=1e-5, atol=1e-6
  )
  assert np.abs(np.asarray(probs) - np.asarray(clip_probs)).max() > 1e-4

  def step_loss(stats):
    step = train.make_train_step(
      model, tx, train.loss_options(c), lambda _: 0.0, ema_momentum=0.9,
      accum_steps=1, dtype=jnp.float32, pixel_stats=stats,
    )  # fmt: skip
    fresh = state_lib.create_state(setup, mesh, sh.LOGICAL_RULES, 0, bank)
    batch = {"video": video, "label": np.array([0, 1], np.int32)}
    with jax.set_mesh(mesh), nn.logical_axis_rules(sh.LOGICAL_RULES):
      return float(jax.jit(step)(fresh, batch)[1]["train/loss"])

  assert step_loss(kinetics) != step_loss(build.CLIP_STATS)


def test_art_r50_trains_with_batch_norm_and_evaluates_on_running_stats(
  data, tmp_path
):
  """configs/finegym.py:gym99,r50,runlocal through the trainer: TEA from a
  converted Res2Net file, no text bank (none is read), BatchNorm statistics
  updated by the step, evaluation with the running ones, tracklet pictures
  on TEA's token grid with fc's class weights."""
  import torch  # noqa: PLC0415
  from test_backbones import res2net_state_dict  # noqa: PLC0415

  from art_jax import checkpointing, optim, text_bank  # noqa: PLC0415
  from art_jax import sharding as sh  # noqa: PLC0415
  from art_jax.models import backbones  # noqa: PLC0415
  from art_jax.tools import convert_weights  # noqa: PLC0415

  c = load_config("finegym", "gym99,r50,runlocal")
  c.data.dir = data["data"]
  c.text_bank.dir = None
  c.data.num_classes = 4
  c.model.heads.top_k = 4
  c.total_steps = 2
  c.eval_every_steps = 2
  model = build.build_model(c)
  src, dst = str(tmp_path / "res2net.pth"), str(tmp_path / "res2net.msgpack")
  torch.save(res2net_state_dict(model.backbone), src)
  fields = {k: model.backbone[k] for k in ("layers", "planes", "stem_width")}
  convert_weights.convert(src, dst, num_classes=4, overrides=fields)
  c.init_from.path = dst
  workdir = str(tmp_path / "run")
  result = train.train_and_evaluate(c, workdir)
  assert result["steps"] == 2 and all(np.isfinite(result["losses"]))
  assert 0.0 <= result["top1"] <= 1.0
  report = read_init_report(workdir)
  assert not report["reinitialised_params"]  # 4 classes in the file too
  assert any("/me/" in k for k in report["initialised_in_file"])
  rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  logged = set().union(*rows)
  assert "train/ce_final" in logged and "train/vc" not in logged
  assert "step2_clip0.png" in os.listdir(os.path.join(workdir, "tracklets"))

  # The checkpoint's BatchNorm statistics moved away from the file's.
  mesh = sh.make_mesh({"data": 1}, devices=jax.devices()[:1])
  tx = optim.make_optimizer(c.optim, lambda _: 0.0)
  bank = text_bank.blank_bank(4)
  setup = state_lib.setup_state(
    model, tx, mesh, sh.LOGICAL_RULES, (8, 8, 32, 32, 3), bank.shape
  )
  manager = checkpointing.make_manager(
    os.path.join(workdir, "checkpoints"),
    keep=3,
    keep_best=False,
    best_metric="top1",
    async_save=False,
  )
  state, _ = checkpointing.restore(manager, 2, setup.abstract, None)
  manager.close()
  file_stats, _ = backbones.load_variables("tea", dst, model.backbone)
  moved = np.asarray(state.batch_stats["backbone"]["layer1_0"]["bn1"]["mean"])
  assert not np.allclose(
    moved, file_stats["batch_stats"]["layer1_0"]["bn1"]["mean"]
  )
  # Eval mode reads the running statistics: a clip's probabilities do not
  # depend on the other clips of its batch.
  predict = jax.jit(evaluate.make_predict_fn(model, jnp.float32))
  video = np.random.default_rng(0).integers(0, 256, (2, 8, 32, 32, 3))
  video = video.astype(np.uint8)
  with jax.set_mesh(mesh):
    both = predict(state, video)
    alone = predict(state, video[:1])
  np.testing.assert_allclose(both[0], alone[0], rtol=1e-5, atol=1e-6)
