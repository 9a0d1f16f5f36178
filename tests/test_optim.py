"""Optimiser: schedules, weight-decay mask, backbone lr multiplier."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from art_jax import config_lib, optim


def _optim(**changes):
  c = config_lib.base_config().optim
  c.update(changes)
  return c


def _params():
  return {
    "backbone": {
      "conv1": {"kernel": jnp.ones((2, 3))},
      "ln_pre": {"ln": {"scale": jnp.ones((3,))}},
      "positional_embedding": jnp.ones((4, 3)),
    },
    "heads": {
      "classifier": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones((2,))},
      "agent_bank": jnp.ones((2, 2, 3)),
      "prototypes": jnp.ones((2, 3)),
    },
  }


def test_weight_decay_mask_only_matrices():
  mask = optim.weight_decay_mask(_params())
  assert mask["backbone"]["conv1"]["kernel"]
  assert mask["heads"]["classifier"]["kernel"]
  assert not mask["heads"]["classifier"]["bias"]
  assert not mask["backbone"]["ln_pre"]["ln"]["scale"]
  assert not mask["backbone"]["positional_embedding"]
  assert not mask["heads"]["agent_bank"]
  assert not mask["heads"]["prototypes"]


@pytest.mark.parametrize("scan", [False, True])
def test_weight_decay_mask_on_the_art_model(scan):
  """Only kernels decay, scanned or not: no (layers, C) bias or norm scale,
  no (H, K) q/k/v bias, no prompt, bank or prototype."""
  from test_config import load_config

  from art_jax.models import build

  c = load_config("demo")
  c.unlock()
  c.model.scan = scan
  model = build.build_model(c)
  video = jnp.zeros((1, 8, 48, 48, 3))
  bank = jnp.zeros((12, 4, 64))
  params = jax.eval_shape(model.init, jax.random.key(0), video, bank)
  params = nn.meta.unbox(params["params"])
  mask = optim.weight_decay_mask(params)
  decayed, kept = set(), set()
  for (path, _), (_, on) in zip(
    jax.tree_util.tree_leaves_with_path(params),
    jax.tree_util.tree_leaves_with_path(mask),
  ):
    name = optim.path_str(path)
    (decayed if on else kept).add(name)
    assert on == name.endswith("/kernel"), name
  assert "heads/query_prompts" in kept and "heads/agent_bank" in kept
  assert any("attn/query/bias" in n for n in kept)
  assert any(n.endswith("attn/query/kernel") for n in decayed)
  if scan:  # stacked (layers, C) biases and scales stay undecayed
    stacked = [
      n for n in kept if "scan" in n and n.endswith(("/bias", "/scale"))
    ]
    assert stacked


def test_adamw_warmup_then_cosine():
  s = optim.learning_rate_schedule(_optim(lr=1.0, min_lr=0.0), 110, 10, 1)
  assert float(s(0)) == 0.0
  assert float(s(10)) == pytest.approx(1.0)
  assert float(s(60)) == pytest.approx(0.5, abs=1e-6)
  assert float(s(110)) == pytest.approx(0.0, abs=1e-6)


def test_sgd_step_decay_matches_paper_recipe():
  # lr 0.01, x0.1 every 20 "epochs" of 10 steps.
  s = optim.learning_rate_schedule(
    _optim(name="sgd", lr=0.01, decay_factor=0.1), 500, 0, 200
  )
  assert float(s(0)) == pytest.approx(0.01)
  assert float(s(199)) == pytest.approx(0.01)
  assert float(s(200)) == pytest.approx(0.001)
  assert float(s(400)) == pytest.approx(0.0001)


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_backbone_moves_at_its_multiplier(name):
  o = _optim(
    name=name,
    lr=0.1,
    weight_decay=0.0,
    backbone_lr_mult=0.1,
    clip_grad_norm=0.0,
  )
  tx = optim.make_optimizer(o, lambda step: o.lr)
  params = _params()
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  bb = float(updates["backbone"]["conv1"]["kernel"][0, 0])
  hd = float(updates["heads"]["classifier"]["kernel"][0, 0])
  np.testing.assert_allclose(bb / hd, 0.1, rtol=1e-5)


def test_gradient_clipping_bounds_the_update():
  o = _optim(
    name="sgd",
    lr=1.0,
    weight_decay=0.0,
    momentum=0.0,
    backbone_lr_mult=1.0,
    clip_grad_norm=1.0,
  )
  tx = optim.make_optimizer(o, lambda step: o.lr)
  params = _params()
  grads = jax.tree.map(lambda x: 100.0 * jnp.ones_like(x), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  assert float(optim.global_norm(updates)) == pytest.approx(1.0, rel=1e-5)


def test_weight_decay_applies_to_masked_leaves_only():
  o = _optim(
    name="adamw",
    lr=1.0,
    weight_decay=0.5,
    clip_grad_norm=0.0,
    backbone_lr_mult=1.0,
  )
  tx = optim.make_optimizer(o, lambda step: o.lr)
  params = _params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  assert float(updates["heads"]["classifier"]["kernel"][0, 0]) == -0.5
  assert float(updates["heads"]["agent_bank"][0, 0, 0]) == 0.0


def test_weight_decay_mask_on_art_r50():
  """TEA's BatchNorm scales and biases and ART's learned class vectors
  never decay; conv kernels (MTA's temporal ones too) and fc do."""
  from test_config import load_config

  from art_jax import text_bank
  from art_jax.models import build

  c = load_config("finegym", "r50,runlocal")
  model = build.build_model(c)
  video = jnp.zeros((1, 8, 32, 32, 3))
  bank = jnp.asarray(text_bank.blank_bank(99))
  params = jax.eval_shape(model.init, jax.random.key(0), video, bank)
  params = nn.meta.unbox(params["params"])
  mask = optim.weight_decay_mask(params)
  flat = {
    optim.path_str(p): on for p, on in jax.tree_util.tree_leaves_with_path(mask)
  }
  for name in (
    "backbone/bn1/scale",
    "backbone/layer1_0/bns_0/bias",
    "backbone/layer2_0/me/bn3/scale",
    "backbone/fc/bias",
    "heads/class_embed",
  ):
    assert not flat[name], name
  for name in (
    "backbone/conv1/kernel",
    "backbone/layer1_0/shifts_0/kernel",
    "backbone/layer2_0/me/conv2/kernel",
    "backbone/fc/kernel",
  ):
    assert flat[name], name
