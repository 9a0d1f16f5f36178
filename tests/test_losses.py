"""Tests of art_jax/losses.py against hand-computed values."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from art_jax import ablations, losses


def _unit(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_cross_entropy_with_label_smoothing():
  logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
  labels = np.array([0, 1])
  log_p = _log_softmax(logits)
  want = -np.mean(log_p[[0, 1], labels])
  np.testing.assert_allclose(
    losses.cross_entropy(logits, labels), want, rtol=1e-6
  )
  eps = 0.3
  targets = np.eye(3)[labels] * (1 - eps) + eps / 3
  want = -np.mean((targets * log_p).sum(-1))
  np.testing.assert_allclose(
    losses.cross_entropy(logits, labels, eps), want, rtol=1e-6
  )


def test_spatial_loss():
  # Orthogonal responses in every frame: nothing to repel.
  eye = np.eye(4)[:3]  # N = 3 orthonormal responses
  resp = np.broadcast_to(eye, (2, 5, 3, 4))
  assert float(losses.spatial_loss(resp)) == 0.0
  # Two responses at 60 degrees: cos = 0.5 for both ordered pairs.
  pair = np.array([[1.0, 0.0], [0.5, np.sqrt(3) / 2]]) * 3.0
  np.testing.assert_allclose(
    losses.spatial_loss(pair[None, None]), 0.5, rtol=1e-6
  )
  # Opposite responses are already repelled: relu clips cos = -1.
  assert float(losses.spatial_loss(np.array([[[[1.0, 0], [-1, 0]]]]))) == 0.0
  assert float(losses.spatial_loss(np.ones((1, 2, 1, 4)))) == 0.0  # N = 1


def test_temporal_loss():
  rng = np.random.default_rng(0)
  frame = rng.normal(size=(1, 1, 2, 8))
  same = np.broadcast_to(frame, (1, 4, 2, 8))  # identical adjacent frames
  assert float(losses.temporal_loss(same)) == 0.0
  # Orthogonal adjacent responses pay the full margin; cos = 0.8 pays none.
  ortho = np.array([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # (1, 2, 1, 2)
  np.testing.assert_allclose(losses.temporal_loss(ortho), 0.6, rtol=1e-6)
  np.testing.assert_allclose(
    losses.temporal_loss(ortho, margin=0.25), 0.25, rtol=1e-6
  )
  close = np.array([[[[1.0, 0.0]], [[0.8, 0.6]]]])
  assert float(losses.temporal_loss(close)) == 0.0
  # cos = 0.5: relu(0.6 - 0.5) = 0.1.
  half = np.array([[[[1.0, 0.0]], [[0.5, np.sqrt(3) / 2]]]])
  np.testing.assert_allclose(losses.temporal_loss(half), 0.1, rtol=1e-5)


def test_tracklet_loss_hand_computed():
  # T' = 2, N = 2, d = 2: r_{t,n} on the unit circle at these angles.
  angles = np.array([[0.0, 0.3], [0.1, 0.5]])
  r = np.stack([np.cos(angles), np.sin(angles)], -1)  # (T', N, 2)
  centres = _unit(r.mean(0))  # (N, 2)
  logits = np.einsum("tnd,md->tnm", r, centres) / 0.1
  want = -np.mean(
    [_log_softmax(logits[t, n])[n] for t in (0, 1) for n in (0, 1)]
  )
  got = losses.tracklet_loss(3.0 * r[None])  # norms do not matter
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Batch of two: the mean of the two per-video losses.
  other = np.stack([np.cos(angles.T), np.sin(angles.T)], -1)
  both = losses.tracklet_loss(np.stack([r, other]))
  np.testing.assert_allclose(
    both, (got + losses.tracklet_loss(other[None])) / 2, rtol=1e-5
  )


def test_mtc_loss_weights_and_switches():
  resp = jax.random.normal(jax.random.key(0), (2, 3, 2, 8))
  spa = losses.spatial_loss(resp)
  tem = losses.temporal_loss(resp)
  trk = losses.tracklet_loss(resp)
  mtc = jax.jit(losses.mtc_loss, static_argnames=("use_spa", "use_trk"))
  total, terms = mtc(resp, w_spa=2.0, w_tem=0.5, w_trk=3.0)
  np.testing.assert_allclose(total, 2 * spa + 0.5 * tem + 3 * trk, rtol=1e-6)
  assert set(terms) == {"spa", "tem", "trk"}
  total, terms = mtc(resp, use_spa=False, use_trk=False)
  assert set(terms) == {"tem"}
  np.testing.assert_allclose(total, tem, rtol=1e-6)


def test_video_consistency_is_winner_take_all():
  v = np.array([[1.0, 0.0, 0.0]])
  agent = np.array(
    [  # class 0's best template is its second; class 1's its first
      [[0.0, 1.0, 0.0], [0.9, 0.1, 0.0]],
      [[0.5, 0.5, 0.0], [-1.0, 0.0, 0.0]],
    ]
  )
  scores = np.array([_unit(agent[0, 1])[0], _unit(agent[1, 0])[0]])
  want = -_log_softmax(scores / 0.07)[0]
  got = losses.video_consistency_loss(v, agent, np.array([0]))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Only the winning template matters: moving a losing one changes nothing.
  moved = agent.copy()
  moved[0, 0] = [0.0, 0.0, 1.0]
  np.testing.assert_allclose(
    losses.video_consistency_loss(v, moved, np.array([0])), want, rtol=1e-5
  )


def test_prototype_consistency_hand_computed():
  rng = np.random.default_rng(1)
  protos = rng.normal(size=(3, 4))
  agent = rng.normal(size=(3, 2, 4))
  v = rng.normal(size=(2, 4))
  labels = np.array([2, 0])
  sim = _unit(protos) @ _unit(agent.mean(1)).T / 0.07
  text = -np.mean(np.diag(_log_softmax(sim)))
  vid = _log_softmax(_unit(v) @ _unit(protos).T / 0.07)
  want = text - np.mean(vid[[0, 1], labels])
  got = losses.prototype_consistency_loss(protos, agent, v, labels)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_ema_update_numbers():
  bank = np.array([[[1.0, 0.0]]])
  agent = np.array([[[0.0, 2.0]]])
  literal = losses.ema_update(bank, agent, 0.9, renormalize=False)
  np.testing.assert_allclose(literal, [[[0.9, 0.2]]], rtol=1e-6)
  # Default: S' is normalised, and the mix projected back to the sphere.
  mixed = np.array([0.9, 0.1]) / np.linalg.norm([0.9, 0.1])
  np.testing.assert_allclose(
    losses.ema_update(bank, agent, 0.9), [[mixed]], rtol=1e-6
  )
  np.testing.assert_array_equal(losses.ema_update(bank, agent, 1.0), bank)
  out = losses.ema_update(jnp.asarray(bank, jnp.bfloat16), agent, 0.999)
  assert out.dtype == jnp.bfloat16
  grad = jax.grad(lambda a: losses.ema_update(bank, a, 0.5).sum())(agent)
  np.testing.assert_array_equal(grad, 0.0)


def _outputs(dtype=jnp.float32):
  k = jax.random.split(jax.random.key(0), 7)
  b, t, n, d, nc, m, dt = 2, 3, 2, 8, 4, 3, 6
  shapes = {
    "logits_global": (b, nc),
    "logits": (b, nc),
    "region_content": (b, t, n, d),
    "video_embed": (b, dt),
    "agent_bank": (nc, m, dt),
    "prototypes": (nc, dt),
    "class_text": (nc, dt),
  }
  return {
    name: jax.random.normal(key, shape).astype(dtype)
    for key, (name, shape) in zip(k, shapes.items())
  }


def test_total_loss_is_the_weighted_sum():
  out, labels = _outputs(), jnp.array([1, 3])
  cfg = losses.LossConfig(
    lambda_mtc=0.5, lambda_ft=2.0, w_tem=3.0, label_smoothing=0.1
  )
  total, terms = jax.jit(losses.total_loss, static_argnums=2)(out, labels, cfg)
  ce = lambda x: losses.cross_entropy(x, labels, 0.1)
  vc = losses.video_consistency_loss(
    out["video_embed"], out["agent_bank"], labels
  )
  pc = losses.prototype_consistency_loss(
    out["prototypes"], out["agent_bank"], out["video_embed"], labels
  )
  mtc, _ = losses.mtc_loss(out["region_content"], w_tem=3.0)
  want = ce(out["logits_global"]) + ce(out["logits"]) + 0.5 * mtc
  want += 2.0 * (vc + pc)
  np.testing.assert_allclose(total, want, rtol=1e-5)
  np.testing.assert_allclose(terms["ft"], vc + pc, rtol=1e-5)
  assert set(terms) == {
    "ce_global", "ce_final", "spa", "tem", "trk", "mtc", "vc", "pc", "ft",
    "total",
  }  # fmt: skip


def test_mtc_warmup_ramps_lambda_mtc_in_the_jitted_loss():
  out, labels = _outputs(), jnp.array([1, 3])
  cfg = losses.LossConfig(lambda_mtc=0.5, mtc_warmup_steps=10, use_ft=False)
  loss = jax.jit(losses.total_loss, static_argnums=2)
  mtc, _ = losses.mtc_loss(out["region_content"])
  ce = losses.cross_entropy(out["logits_global"], labels)
  ce += losses.cross_entropy(out["logits"], labels)
  for step, weight in ((0, 0.0), (4, 0.2), (10, 0.5), (1000, 0.5)):
    total, _ = loss(out, labels, cfg, jnp.asarray(step))
    np.testing.assert_allclose(total, ce + weight * mtc, rtol=1e-5)
  # No warm-up: the paper's constant weight whatever the step.
  constant = dataclasses.replace(cfg, mtc_warmup_steps=0)
  total, _ = loss(out, labels, constant, jnp.asarray(0))
  np.testing.assert_allclose(total, ce + 0.5 * mtc, rtol=1e-5)


@pytest.mark.parametrize(
  ("setting", "keys"),
  [
    ("baseline", {"ce_global"}),
    ("rssa", {"ce_global", "ce_final"}),
    ("rssa_ta_mtc", {"ce_global", "ce_final", "spa", "tem", "trk", "mtc"}),
    ("mtc_spa_trk", {"ce_global", "ce_final", "spa", "trk", "mtc"}),
    ("ft_vc", {"ce_global", "ce_final", "spa", "tem", "trk", "mtc", "vc",
               "ft"}),
    ("ft_pc", {"ce_global", "ce_final", "spa", "tem", "trk", "mtc", "pc",
               "ft"}),
  ],
)  # fmt: skip
def test_ablation_settings_switch_terms(setting, keys):
  cfg = losses.LossConfig(**ablations.SETTINGS[setting].loss)
  _, terms = losses.total_loss(_outputs(), jnp.array([0, 1]), cfg)
  assert set(terms) == keys | {"total"}
  on = [v for name, v in terms.items() if name in ("ce_global", "ce_final")]
  if setting in ("baseline", "rssa"):
    np.testing.assert_allclose(terms["total"], sum(on), rtol=1e-6)


def test_table_v_switches():
  base = losses.LossConfig(**ablations.SETTINGS["rssa_ta_mtc"].loss)
  for term in ("spa", "tem", "trk"):
    cfg = dataclasses.replace(base, **{f"use_{term}": False})
    _, terms = losses.total_loss(_outputs(), jnp.array([0, 1]), cfg)
    assert term not in terms and len({"spa", "tem", "trk"} & set(terms)) == 2


def test_alignment_loss_and_map_overlap_terms():
  out, labels = _outputs(), jnp.array([1, 3])
  cfg = losses.LossConfig(use_mtc=False, use_ft=False, use_align=True)
  maps = jax.nn.softmax(jax.random.normal(jax.random.key(9), (2, 3, 2, 5)))
  total, terms = losses.total_loss({**out, "response_maps": maps}, labels, cfg)
  align = losses.video_text_alignment_loss(
    out["video_embed"], out["class_text"], labels
  )
  ce = losses.cross_entropy(out["logits_global"], labels)
  ce += losses.cross_entropy(out["logits"], labels)
  np.testing.assert_allclose(total, ce + align, rtol=1e-5)  # overlap not in
  np.testing.assert_allclose(terms["map_overlap"], losses.map_overlap(maps))
  # The bank's class text gets no gradient from L_align.
  g = jax.grad(
    lambda t: losses.video_text_alignment_loss(out["video_embed"], t, labels)
  )(out["class_text"])
  np.testing.assert_array_equal(g, 0.0)


def test_map_overlap_is_zero_for_disjoint_and_one_for_equal_maps():
  disjoint = jnp.zeros((1, 2, 2, 4)).at[:, :, 0, :2].set(0.5)
  disjoint = disjoint.at[:, :, 1, 2:].set(0.5)
  np.testing.assert_allclose(losses.map_overlap(disjoint), 0.0)
  same = jnp.full((1, 2, 3, 4), 0.25)
  np.testing.assert_allclose(losses.map_overlap(same), 1.0, rtol=1e-6)
  half = jnp.array([[[[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]]]])
  np.testing.assert_allclose(losses.map_overlap(half), 0.5, rtol=1e-6)


def test_mtc_on_content_of_disjoint_regions():
  """Hand-built region content: each query attends (maps A) to its own
  region of orthogonal token values V, o = A V. Disjoint regions: L_spa = 0;
  the same region for both queries: L_spa = 1. A query that keeps its
  region across frames: L_tem = 0; L_trk tells the tracklets apart."""
  t, n, length = 4, 2, 6
  values = jnp.eye(length)  # orthogonal token contents (L, d=L)
  maps = jnp.zeros((1, t, n, length))
  maps = maps.at[:, :, 0, :3].set(1 / 3).at[:, :, 1, 3:].set(1 / 3)
  content = jnp.einsum("btnl,ld->btnd", maps, values)
  np.testing.assert_allclose(losses.spatial_loss(content), 0.0, atol=1e-7)
  np.testing.assert_allclose(losses.temporal_loss(content), 0.0, atol=1e-7)
  same = jnp.broadcast_to(maps[:, :, :1], maps.shape)
  shared = jnp.einsum("btnl,ld->btnd", same, values)
  np.testing.assert_allclose(losses.spatial_loss(shared), 1.0, rtol=1e-6)
  assert float(losses.tracklet_loss(content)) < float(
    losses.tracklet_loss(shared)
  )


def test_baseline_outputs_reject_mtc():
  out = {k: v for k, v in _outputs().items() if k != "region_content"}
  with pytest.raises(ValueError, match="region_content"):
    losses.total_loss(out, jnp.array([0, 1]), losses.LossConfig())


def test_bf16_inputs_give_float32_losses():
  out32, out16 = _outputs(), _outputs(jnp.bfloat16)
  labels = jnp.array([2, 0])
  total16, terms16 = losses.total_loss(out16, labels)
  total32, _ = losses.total_loss(out32, labels)
  assert all(v.dtype == jnp.float32 for v in terms16.values())
  np.testing.assert_allclose(total16, total32, rtol=0.05)


def test_loss_gradients_reach_agent_bank_and_prototypes():
  out, labels = _outputs(), jnp.array([1, 2])

  def loss(agent, protos, resp):
    o = {**out, "agent_bank": agent, "prototypes": protos}
    o["region_content"] = resp
    return losses.total_loss(o, labels)[0]

  grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(
    out["agent_bank"], out["prototypes"], out["region_content"]
  )
  for g in grads:
    assert np.all(np.isfinite(g)) and float(jnp.abs(g).sum()) > 0
