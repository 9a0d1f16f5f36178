"""Tests of ARTHeads and ART (art_jax/models/art.py) at tiny sizes."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from art_jax import losses
from art_jax import sharding as sh
from art_jax.models import art

B, T, L, C = 2, 3, 6, 24  # batch, time steps, tokens per step, backbone width
K, M, D = 5, 3, 16  # classes, templates, text width
SMALL = dict(
  num_classes=K,
  latent_dim=16,
  num_queries=2,
  top_k=4,
  se_layers=2,
  decoder_layers=2,
  num_heads=2,
  mlp_ratio=2,
)


def _inputs(dtype=jnp.float32):
  """(tokens X, global feature g, global logits, bank S)."""
  k = jax.random.split(jax.random.key(0), 4)
  tokens = jax.random.normal(k[0], (B, T, L, C), dtype)
  feat = jax.random.normal(k[1], (B, C))  # UniFormerV2's g is float32
  logits = 3.0 * jax.random.normal(k[3], (B, K))
  bank = art.l2_normalize(jax.random.normal(k[2], (K, M, D)))
  return tokens, feat, logits, bank


def _class_text(bank):
  mean = np.asarray(bank).mean(1)
  return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


@functools.cache
def _params():
  """Initialised once: every variant below reads (a subset of) these."""
  model = art.ARTHeads(**SMALL)
  return nn.meta.unbox(jax.jit(model.init)(jax.random.key(1), *_inputs()))


@functools.cache
def _outputs(**overrides):
  """Eval-mode outputs of ARTHeads(**SMALL, **overrides), jitted.

  Also returns, under '_memory', the tokens the RSSA decoder attends to.
  """
  model = art.ARTHeads(**{**SMALL, **overrides})
  dtype = overrides.get("dtype", jnp.float32)

  def record(next_fun, args, kwargs, context):
    if context.module.name == "decoder" and context.method_name == "__call__":
      seen["_memory"] = args[1]
    return next_fun(*args, **kwargs)

  seen = {}

  def run(params, *inputs):
    with nn.intercept_methods(record):
      out = model.apply(params, *inputs)
    return {**out, **seen}

  return jax.jit(run)(_params(), *_inputs(dtype))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_shapes_and_dtypes_under_jit(dtype):
  out = dict(_outputs(dtype=dtype))
  out.pop("_memory")
  n, k, d = SMALL["num_queries"], SMALL["top_k"], SMALL["latent_dim"]
  expected = {
    "logits": ((B, K), jnp.float32),
    "responses": ((B, T, n, d), dtype),
    "region_content": ((B, T, n, d), jnp.float32),
    "response_maps": ((B, T, n, L), jnp.float32),
    "video_embed": ((B, D), jnp.float32),
    "class_text": ((K, D), jnp.float32),
    "topk": ((B, k), jnp.int32),
    "topk_scores": ((B, k), jnp.float32),
    "agent_bank": ((K, M, D), jnp.float32),
    "prototypes": ((K, D), jnp.float32),
    "text_tokens": ((B, T, k, d), dtype),
    "saliency": ((B, T, n), jnp.float32),
    "tracklets": ((B, n, d), jnp.float32),
  }
  assert {name: (v.shape, v.dtype) for name, v in out.items()} == expected
  for v in out.values():
    assert np.all(np.isfinite(np.asarray(v, np.float32)))
  # Response maps are softmax attention averaged over heads.
  np.testing.assert_allclose(out["response_maps"].sum(-1), 1.0, atol=1e-5)
  if dtype == jnp.bfloat16:  # text selection runs in float32: unchanged
    ref = _outputs()
    np.testing.assert_array_equal(out["topk"], ref["topk"])
    np.testing.assert_allclose(out["video_embed"], ref["video_embed"])


def test_global_head_selection_is_the_top_classes_of_logits_g():
  """Default selection (spec §3 a): the k classes of largest logits_g, in
  order, their softmax probabilities as scores; the text tokens are the
  projected class-level text S̄ of those classes."""
  out = _outputs()
  _, _, logits, bank = _inputs()
  want = np.argsort(-np.asarray(logits), axis=-1)[:, : SMALL["top_k"]]
  np.testing.assert_array_equal(out["topk"], want)
  probs = np.asarray(jax.nn.softmax(logits, -1))
  np.testing.assert_allclose(
    out["topk_scores"], np.take_along_axis(probs, want, -1), atol=1e-6
  )
  np.testing.assert_allclose(out["class_text"], _class_text(bank), atol=1e-6)
  # Changing logits_g changes the selection, and with it the outputs.
  tokens, feat, _, _ = _inputs()
  flipped = jax.jit(art.ARTHeads(**SMALL).apply)(
    _params(), tokens, feat, -logits, bank
  )
  assert not np.array_equal(flipped["topk"], out["topk"])
  assert not np.allclose(flipped["logits"], out["logits"], atol=1e-4)


def test_video_text_selection_ranks_classes_by_cos_v_class_text():
  out = _outputs(text_selection="video_text")
  _, _, _, bank = _inputs()
  scores = np.asarray(out["video_embed"]) @ _class_text(bank).T
  want = np.argsort(-scores, axis=-1)[:, : SMALL["top_k"]]
  np.testing.assert_array_equal(out["topk"], want)
  np.testing.assert_allclose(
    out["topk_scores"], np.take_along_axis(scores, want, -1), atol=1e-5
  )
  assert np.all(np.diff(np.asarray(out["topk_scores"]), axis=-1) <= 0)


def test_agent_bank_and_prototype_init():
  bank = _inputs()[-1]
  p = _params()["params"]
  np.testing.assert_array_equal(p["agent_bank"], bank)
  centres = bank.mean(1) / np.linalg.norm(bank.mean(1), axis=-1, keepdims=True)
  np.testing.assert_allclose(p["prototypes"], centres, atol=1e-6)


def test_model_never_reads_agent_bank_or_prototypes():
  params = _params()
  p = dict(params["params"])
  p["agent_bank"] = p["agent_bank"] * 3.0 + 1.0
  p["prototypes"] = -p["prototypes"]
  model = art.ARTHeads(**SMALL)
  out = jax.jit(model.apply)({"params": p}, *_inputs())
  for name in ("logits", "responses", "topk", "response_maps"):
    np.testing.assert_array_equal(out[name], _outputs()[name])


def test_selection_is_class_level_and_distinct():
  """k different classes, never k paraphrases of one class."""
  for selection in art.TEXT_SELECTIONS:
    topk = np.asarray(_outputs(text_selection=selection)["topk"])
    assert topk.max() < K
    for row in topk:
      assert len(set(row.tolist())) == SMALL["top_k"]


def _structure(**overrides):
  model = art.ARTHeads(**{**SMALL, **overrides})
  shapes = jax.eval_shape(model.init, jax.random.key(0), *_inputs())
  return set(shapes["params"])


def test_se_off_is_identity():
  assert {"se", "se_norm"} <= _structure()
  assert not {"se", "se_norm"} & _structure(use_se=False)
  out = _outputs(use_se=False)
  tokens, _, _, bank = _inputs()
  p = _params()["params"]
  proj = lambda x, q: x @ q["kernel"] + q["bias"]
  want_x = proj(tokens, p["token_proj"]).reshape(B * T, L, -1)
  np.testing.assert_allclose(out["_memory"], want_x, atol=1e-5)
  text = proj(_class_text(bank)[np.asarray(out["topk"])], p["text_proj"])
  want_text = jnp.broadcast_to(text[:, None], out["text_tokens"].shape)
  np.testing.assert_allclose(out["text_tokens"], want_text, atol=1e-5)
  # With SE on, the decoder attends to the enhanced tokens instead.
  assert not np.allclose(_outputs()["_memory"], want_x, atol=1e-3)


def test_ta_off_is_plain_sum():
  out = _outputs(use_ta=False)
  np.testing.assert_array_equal(out["saliency"], 1.0)
  np.testing.assert_allclose(
    out["tracklets"], out["responses"].sum(axis=1), atol=1e-5
  )


def test_ta_matches_hand_computation():
  out = _outputs()
  r, e = np.asarray(out["responses"]), np.asarray(out["text_tokens"])
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  sim = np.einsum("btnd,btjd->btnj", unit(r), unit(e)) / 0.1
  soft = np.exp(sim - sim.max(1, keepdims=True))
  soft /= soft.sum(1, keepdims=True)  # softmax over time
  a = soft.mean(-1)
  np.testing.assert_allclose(out["saliency"], a, atol=1e-5)
  np.testing.assert_allclose(out["saliency"].sum(1), 1.0, atol=1e-5)
  np.testing.assert_allclose(
    out["tracklets"], np.einsum("btn,btnd->bnd", a, r), atol=1e-5
  )


def test_baseline_has_only_text_branch():
  assert _structure(use_rssa=False) == {
    "agent_bank",
    "prototypes",
    "video_proj",
  }
  model = art.ARTHeads(**SMALL, use_rssa=False)
  out = jax.eval_shape(model.apply, _params(), *_inputs())
  assert set(out) == {
    "video_embed",
    "class_text",
    "topk",
    "topk_scores",
    "agent_bank",
    "prototypes",
  }


def test_ablation_switches_change_outputs():
  base = _outputs()
  for overrides in ({"use_se": False}, {"use_ta": False}):
    out = _outputs(**overrides)
    assert not np.allclose(out["logits"], base["logits"], atol=1e-4)
    np.testing.assert_array_equal(out["topk"], base["topk"])


def test_invalid_sizes_raise():
  inputs = _inputs()
  bad = art.ARTHeads(**{**SMALL, "num_queries": 5, "top_k": 4})
  with pytest.raises(ValueError, match="num_queries=5 must be <= top_k=4"):
    jax.eval_shape(bad.init, jax.random.key(0), *inputs)
  wrong_k = art.ARTHeads(**{**SMALL, "num_classes": K + 1})
  with pytest.raises(ValueError, match="num_classes"):
    jax.eval_shape(wrong_k.init, jax.random.key(0), *inputs)
  too_many = art.ARTHeads(**{**SMALL, "top_k": K + 1})
  with pytest.raises(ValueError, match="classes"):
    jax.eval_shape(too_many.init, jax.random.key(0), *inputs)
  unknown = art.ARTHeads(**{**SMALL, "text_selection": "random"})
  with pytest.raises(ValueError, match="text_selection"):
    jax.eval_shape(unknown.init, jax.random.key(0), *inputs)


def test_every_param_has_logical_axes():
  model = art.ARTHeads(**SMALL)
  boxed = jax.eval_shape(model.init, jax.random.key(0), *_inputs())
  leaves = jax.tree.leaves(
    boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)
  )
  assert leaves
  for leaf in leaves:
    assert isinstance(leaf, nn.LogicallyPartitioned), leaf
    assert len(leaf.names) == leaf.value.ndim
    assert all(isinstance(n, str) for n in leaf.names), leaf.names
  specs = nn.get_partition_spec(boxed)["params"]
  assert specs["agent_bank"] == jax.sharding.PartitionSpec(
    sh.CLASSES, sh.TEMPLATES, sh.TEXT_EMBED
  )
  assert specs["se"]["layers"]["mlp"]["c_fc"]["kernel"] == (
    jax.sharding.PartitionSpec(sh.LAYERS, sh.EMBED, sh.MLP)
  )
  # Every name resolves under the project's rules table.
  nn.logical_to_mesh(specs, sh.LOGICAL_RULES)


def test_scan_matches_loop():
  looped = art.ARTHeads(**SMALL, scan=False, remat_policy="nothing_saveable")
  p = dict(_params()["params"])
  for stack, depth in (
    ("se", SMALL["se_layers"]),
    ("decoder", SMALL["decoder_layers"]),
  ):
    layers = p.pop(stack)["layers"]
    p[stack] = {
      f"layers_{i}": jax.tree.map(lambda x, i=i: x[i], layers)
      for i in range(depth)
    }
  want = _outputs()
  got = jax.jit(looped.apply)({"params": p}, *_inputs())
  for name in ("logits", "responses", "response_maps"):
    np.testing.assert_allclose(got[name], want[name], atol=1e-5)


def test_cudnn_attention_setting_reaches_se_and_decoder(monkeypatch):
  """attention_impl="cudnn" routes SE's and the decoder's self-attention
  through fused_attention (run here with XLA's kernel: cuDNN needs a GPU)
  with the same outputs; the cross-attention keeps the einsum path, whose
  maps are the response maps."""
  from art_jax.models import layers

  calls = []
  real = layers.fused_attention

  def xla_fused(q, k, v, mask=None, implementation="cudnn", **kw):
    calls.append((implementation, q.shape[-3], k.shape[-3]))
    return real(q, k, v, mask, implementation="xla", **kw)

  monkeypatch.setattr(layers, "fused_attention", xla_fused)
  want = _outputs()
  model = art.ARTHeads(**SMALL, attention_impl="cudnn")
  got = model.apply(_params(), *_inputs())
  # The scanned layer bodies (traced more than once by nn.scan): SE over
  # L + k tokens per step, the decoder's self-attention over the N queries.
  n, k = SMALL["num_queries"], SMALL["top_k"]
  assert set(calls) == {("cudnn", n, n), ("cudnn", L + k, L + k)}
  for name in ("logits", "responses", "response_maps", "tracklets"):
    np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)


def test_gradients():
  model, params = art.ARTHeads(**SMALL), _params()
  tokens, feat, logits, bank = _inputs()
  labels = jnp.array([0, 3])
  cfg = losses.LossConfig(use_global=False)

  @jax.jit
  def grad_fn(params, bank, key):
    def loss_fn(params, bank):
      out = model.apply(
        params, tokens, feat, logits, bank, train=True, rngs={"dropout": key}
      )
      return losses.total_loss(out, labels, cfg)[0]

    return jax.value_and_grad(loss_fn, argnums=(0, 1))(params, bank)

  loss, (grads, bank_grad) = grad_fn(params, bank, jax.random.key(2))
  g = grads["params"]
  for leaf in jax.tree.leaves(g):
    assert np.all(np.isfinite(leaf))
  np.testing.assert_array_equal(bank_grad, 0.0)  # the EMA bank: no gradient
  for name in (
    "agent_bank",
    "prototypes",
    "video_proj",
    "query_prompts",
    "text_proj",
    "token_proj",
    "global_proj",
    "head",
  ):
    norm = sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(g[name]))
    assert norm > 0, name
  for stack in ("se", "decoder"):  # every scanned layer learns
    per_layer = sum(
      np.abs(x).reshape(x.shape[0], -1).sum(-1)
      for x in jax.tree.leaves(g[stack])
    )
    assert per_layer.shape == (2,) and np.all(per_layer > 0), stack
  # Dropout (before the classifier) is on in train mode only.
  loss2, _ = grad_fn(params, bank, jax.random.key(3))
  assert float(loss) != float(loss2)


BACKBONE = dict(
  input_resolution=32,
  patch_size=16,
  width=32,
  layers=2,
  heads=2,
  t_size=4,
  return_list=(1,),
  n_layers=1,
  n_dim=32,
  n_head=2,
  mlp_dropout=(0.5,),
  num_classes=K,
)
HEADS = {k: v for k, v in SMALL.items() if k != "num_classes"}


def _art_inputs():
  video = jax.random.normal(jax.random.key(0), (B, 4, 32, 32, 3))
  return video, _inputs()[-1]


@pytest.mark.parametrize("use_rssa", [True, False])
def test_art_composes_backbone_and_heads(use_rssa):
  model = art.ART(backbone=BACKBONE, heads={**HEADS, "use_rssa": use_rssa})
  video, bank = _art_inputs()
  variables = jax.eval_shape(model.init, jax.random.key(0), video, bank)
  assert set(variables["params"]) == {"backbone", "heads"}
  out = jax.eval_shape(
    functools.partial(
      model.apply,
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": jax.random.key(1)},
    ),
    variables,
    video,
    bank,
  )[0]
  shapes = {name: v.shape for name, v in out.items()}
  assert shapes["logits"] == shapes["logits_global"] == (B, K)
  assert shapes["global"] == (B, 32)
  if use_rssa:  # T' = 4 / 2 time steps, L = (32 / 16)^2 tokens
    assert shapes["responses"] == (B, 2, 2, SMALL["latent_dim"])
    assert shapes["response_maps"] == (B, 2, 2, 4)
  else:
    assert "responses" not in shapes


@pytest.mark.slow
def test_art_train_step_end_to_end():
  video, bank = _art_inputs()
  labels = jnp.array([1, 4])
  for use_rssa, cfg in (
    (True, losses.LossConfig()),
    (False, losses.LossConfig(use_final=False, use_mtc=False, use_ft=False)),
  ):
    model = art.ART(backbone=BACKBONE, heads={**HEADS, "use_rssa": use_rssa})
    variables = nn.meta.unbox(
      jax.jit(model.init)(jax.random.key(0), video, bank)
    )

    @jax.jit
    def step(params, model=model, variables=variables, cfg=cfg):
      def loss_fn(params):
        out, _ = model.apply(
          {**variables, "params": params},
          video,
          bank,
          train=True,
          mutable=["batch_stats"],
          rngs={"dropout": jax.random.key(1)},
        )
        return losses.total_loss(out, labels, cfg)[0], out

      return jax.value_and_grad(loss_fn, has_aux=True)(params)

    (loss, out), grads = step(variables["params"])
    assert np.isfinite(loss)
    grad_norm = lambda t: sum(
      float(jnp.abs(x).sum()) for x in jax.tree.leaves(t)
    )
    assert grad_norm(grads["backbone"]) > 0
    if use_rssa:
      assert grad_norm(grads["heads"]["head"]) > 0
    else:
      np.testing.assert_array_equal(out["logits"], out["logits_global"])


def _with_prompts(scale: float):
  """Params whose N query prompts are orthogonal, times `scale`."""
  p = jax.tree.map(lambda x: x, _params()["params"])
  n, d = SMALL["num_queries"], SMALL["latent_dim"]
  p["query_prompts"] = scale * jnp.eye(n, d)
  return {"params": p}


def test_mtc_reads_region_content_and_prompts_cannot_zero_it():
  """Spec §7: large orthogonal prompts carried through the residual stream
  make MTC on the responses R vanish whatever the video shows; on the
  region content o (the response maps over the tokens) they do not."""
  model = art.ARTHeads(**SMALL)
  apply = jax.jit(model.apply)
  mtc = lambda x: float(losses.mtc_loss(x, use_tem=False)[0])
  small = apply(_with_prompts(1.0), *_inputs())
  big = apply(_with_prompts(100.0), *_inputs())
  # On R, the prompts alone nearly solve the spatial and tracklet terms.
  assert mtc(big["responses"]) < 0.05 < mtc(small["responses"])
  # On o they stay what the video makes them: same order of magnitude.
  on_small, on_big = mtc(small["region_content"]), mtc(big["region_content"])
  assert on_big > 0.3 and 0.5 < on_big / on_small < 2.0, (on_small, on_big)
  # The default loss reads the content, not the responses.
  labels = jnp.array([0, 3])
  cfg = losses.LossConfig(use_global=False, use_final=False, use_ft=False)
  terms = losses.total_loss(big, labels, cfg)[1]
  want, _ = losses.mtc_loss(big["region_content"])
  np.testing.assert_allclose(terms["mtc"], want, rtol=1e-6)
  assert 0.0 <= float(terms["map_overlap"]) <= 1.0


def test_region_content_is_the_response_map_over_the_enhanced_tokens():
  """o_{t,n} = sum_l A_{t,n,l} X̃_{t,l}: the head-mean response map of the
  last decoder layer over the decoder's memory; not the response R."""
  out = _outputs()
  memory = np.asarray(out["_memory"])  # (B*T', L, d)
  maps = np.asarray(out["response_maps"]).reshape(B * T, -1, L)
  want = np.einsum("bnl,bld->bnd", maps, memory)
  np.testing.assert_allclose(
    out["region_content"].reshape(want.shape), want, rtol=1e-5, atol=1e-6
  )
  assert not np.allclose(out["region_content"], out["responses"], atol=1e-2)


def test_region_content_follows_the_maps_not_per_head_splits():
  """Queries whose head-mean maps coincide have the same content (cosine
  1, L_spa at its maximum), however their heads split the attention: the
  per-head specialisation that let MTC on the cross-attention output reach
  zero with 80% map overlap (docs/method.md §7) cannot do it here."""
  out = _outputs()
  maps = np.asarray(out["response_maps"])
  same = np.broadcast_to(maps[:, :, :1], maps.shape)
  memory = np.asarray(out["_memory"]).reshape(B, T, L, -1)
  content = np.einsum("btnl,btld->btnd", same, memory)
  np.testing.assert_allclose(losses.spatial_loss(content), 1.0, rtol=1e-5)
  np.testing.assert_allclose(losses.map_overlap(same), 1.0, rtol=1e-5)


def test_mtc_gradient_reaches_backbone_tokens_and_prompts():
  model, params = art.ARTHeads(**SMALL), _params()
  tokens, feat, logits, bank = _inputs()

  def mtc_of(params, tokens):
    out = model.apply(params, tokens, feat, logits, bank)
    return losses.mtc_loss(out["region_content"])[0]

  g_params, g_tokens = jax.jit(jax.grad(mtc_of, argnums=(0, 1)))(params, tokens)
  assert float(jnp.abs(g_tokens).sum()) > 0
  assert float(jnp.abs(g_params["params"]["query_prompts"]).sum()) > 0
  assert float(jnp.abs(g_params["params"]["token_proj"]["kernel"]).sum()) > 0


def test_detach_backbone_keeps_the_heads_losses_off_the_backbone():
  """detach_backbone: MTC and the final CE train the heads, never X or g."""
  tokens, feat, logits, bank = _inputs()
  params = _params()
  labels = jnp.zeros((tokens.shape[0],), jnp.int32)

  def heads_loss(params, tokens, feat, detach):
    model = art.ARTHeads(**SMALL, detach_backbone=detach)
    out = model.apply(params, tokens, feat, logits, bank)
    ce = losses.cross_entropy(out["logits"], labels)
    return ce + losses.mtc_loss(out["region_content"])[0]

  grad = jax.jit(jax.grad(heads_loss, argnums=(0, 1, 2)), static_argnums=3)
  g_params, g_tokens, g_feat = grad(params, tokens, feat, True)
  assert float(jnp.abs(g_tokens).max()) == 0.0 == float(jnp.abs(g_feat).max())
  assert float(jnp.abs(g_params["params"]["token_proj"]["kernel"]).sum()) > 0
  _, g_tokens, g_feat = grad(params, tokens, feat, False)
  assert float(jnp.abs(g_tokens).max()) > 0 and float(jnp.abs(g_feat).max()) > 0


def test_selection_projection_is_trained_with_fine_tuning_off():
  """text_selection='video_text' with L_ft off: L_align gives W_v a
  gradient (without it, the choice of text would be fixed noise)."""
  model = art.ARTHeads(**SMALL, text_selection="video_text")
  params, inputs = _params(), _inputs()
  labels = jnp.array([0, 3])

  def grad_of_w_v(cfg):
    def loss_fn(params):
      out = model.apply(params, *inputs)
      return losses.total_loss(out, labels, cfg)[0]

    g = jax.jit(jax.grad(loss_fn))(params)["params"]["video_proj"]
    return sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(g))

  no_ft = dict(use_global=False, use_mtc=False, use_ft=False)
  assert grad_of_w_v(losses.LossConfig(**no_ft)) == 0.0
  assert grad_of_w_v(losses.LossConfig(**no_ft, use_align=True)) > 0.0


def test_final_classifier_runs_in_float32_under_bf16():
  model = art.ARTHeads(**SMALL, dtype=jnp.bfloat16)
  seen = {}

  def record(next_fun, args, kwargs, context):
    result = next_fun(*args, **kwargs)
    if context.module.name == "head":
      seen["in"], seen["out"] = args[0].dtype, result.dtype
    return result

  with nn.intercept_methods(record):
    jax.eval_shape(model.apply, _params(), *_inputs(jnp.bfloat16))
  assert seen == {"in": jnp.float32, "out": jnp.float32}


def test_use_text_off_reads_learned_class_vectors_not_the_bank():
  """ART-R50's switch (docs/method.md, TEA backbone): the k selected
  classes' vectors are rows of the learned table, whatever the bank holds;
  with text (the default) the bank's values reach the logits."""
  tokens, feat, logits, bank = _inputs()
  other = art.l2_normalize(jax.random.normal(jax.random.key(9), bank.shape))
  no_text = art.ARTHeads(**SMALL, use_text=False, use_se=False)
  params = nn.meta.unbox(
    jax.jit(no_text.init)(jax.random.key(1), tokens, feat, logits, bank)
  )
  p = params["params"]
  assert p["class_embed"].shape == (K, SMALL["latent_dim"])
  assert "text_proj" not in p and "class_embed" not in _params()["params"]
  run = jax.jit(no_text.apply)
  a = run(params, tokens, feat, logits, bank)
  b = run(params, tokens, feat, logits, other)
  np.testing.assert_array_equal(a["logits"], b["logits"])
  np.testing.assert_array_equal(a["responses"], b["responses"])
  # Without SE the text tokens are the table rows of the selected classes.
  want = np.asarray(p["class_embed"])[np.asarray(a["topk"])]  # (B, k, d)
  for t in range(T):
    np.testing.assert_array_equal(a["text_tokens"][:, t], want)
  with_text = jax.jit(art.ARTHeads(**SMALL).apply)
  read = with_text(_params(), tokens, feat, logits, bank)["logits"]
  changed = with_text(_params(), tokens, feat, logits, other)["logits"]
  assert not np.allclose(changed, read, atol=1e-4)
  with pytest.raises(ValueError, match="global_head"):
    art.ARTHeads(**SMALL, use_text=False, text_selection="video_text").init(
      jax.random.key(1), tokens, feat, logits, bank
    )
