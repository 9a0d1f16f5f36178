"""UniFormerV2: parameter counts, layouts, train mode, dtypes, sharding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from art_jax import weights
from art_jax.models import uniformerv2 as uv2

TINY = dict(
  input_resolution=32,
  patch_size=8,
  width=48,
  layers=4,
  heads=3,
  return_list=(1, 3),
  n_layers=2,
  n_dim=48,
  n_head=3,
  mlp_dropout=(0.5, 0.2),
  num_classes=7,
)


def _video(b=2, t=8, r=32, seed=0):
  return jax.random.normal(jax.random.key(seed), (b, t, r, r, 3))


def _noisy_init(model, video, seed=0):
  """Random variables of the model's shapes (no zero-init hides bugs).

  Filled with numpy rather than model.init: the tiny model's jitted init
  takes seconds to compile, its forward under a second.
  """
  shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), video))
  rng = np.random.default_rng(seed)

  def fill(path, x):
    if path[-1].key == "var":
      return rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
    return (0.3 * rng.normal(size=x.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.mark.parametrize(
  "preset,expected", [("b16", 134_491_491), ("l14", 422_349_763)]
)
def test_param_count_matches_official(preset, expected):
  model = uv2.UniFormerV2(**uv2.preset_kwargs(preset, num_classes=99))
  r = model.input_resolution
  shapes = jax.eval_shape(
    model.init,
    jax.random.key(0),
    jax.ShapeDtypeStruct((1, 16, r, r, 3), jnp.float32),
  )
  count = sum(x.size for x in jax.tree.leaves(nn.meta.unbox(shapes["params"])))
  assert count == expected


def test_presets_and_overrides():
  kw = uv2.preset_kwargs("l14_336", num_classes=5)
  assert (kw["input_resolution"], kw["width"], kw["num_classes"]) == (
    336,
    1024,
    5,
  )
  with pytest.raises(ValueError, match="widht"):
    uv2.preset_kwargs("b16", widht=3)
  assert uv2.layer_segments(6, (1, 2, 5)) == [
    (0, 1, False),
    (1, 3, True),
    (3, 5, False),
    (5, 6, True),
  ]


def test_output_shapes_and_input_errors():
  model = uv2.UniFormerV2(**TINY)
  video = _video()
  v = jax.jit(model.init)(jax.random.key(0), video)
  out = jax.jit(model.apply)(v, video)
  assert out["tokens"].shape == (2, 4, 16, 48)
  assert out["global"].shape == (2, 48)
  assert out["logits"].shape == (2, 7)
  params = nn.meta.unbox(v["params"])
  assert set(params) >= {
    "resblocks_scan_0",
    "uniblocks_scan_1",
    "resblocks_scan_2",
    "uniblocks_scan_3",
  }
  # Zero-inits of the official model: a fresh model is CLIP per frame.
  for zero in (
    params["resblocks_scan_0"]["lmhra1"]["pos_embed_3"]["kernel"],
    params["resblocks_scan_2"]["lmhra2"]["pos_embed_3"]["bias"],
    params["uniblocks_scan_1"]["dec"]["attn"]["out"]["kernel"],
    params["uniblocks_scan_3"]["dec"]["mlp"]["c_proj"]["kernel"],
    params["uniblocks_scan_3"]["dpe"]["bias"],
    params["balance"],
    params["temporal_cls_token"],
  ):
    np.testing.assert_array_equal(zero, 0)
  # Layers of one stack are initialised differently (split rngs).
  kernels = params["resblocks_scan_2"]["attn"]["query"]["kernel"]
  assert kernels.shape == (1, 48, 3, 16)
  c_fc = params["uniblocks_scan_1"]["resblock"]["mlp"]["c_fc"]["kernel"]
  assert not np.allclose(
    c_fc[0], params["resblocks_scan_0"]["mlp"]["c_fc"]["kernel"][0]
  )
  with pytest.raises(ValueError, match="must be even"):
    model.apply(v, _video(t=7))
  with pytest.raises(ValueError, match="input_resolution"):
    model.apply(v, _video(r=40))
  with pytest.raises(ValueError, match="n_layers"):
    uv2.UniFormerV2(**dict(TINY, n_layers=3)).init(jax.random.key(0), video)


@pytest.mark.parametrize("remat_policy", ["none", "nothing_saveable"])
def test_scan_equals_loop(remat_policy):
  video = _video()
  scan = uv2.UniFormerV2(**TINY, remat_policy=remat_policy)
  v = _noisy_init(scan, video)
  loop = scan.clone(scan=False)
  v_loop = weights.convert_layout(v, scan, to_scan=False)
  assert "resblocks_3" in v_loop["params"] and "dec_1" in v_loop["params"]
  a = jax.jit(scan.apply)(v, video)
  b = jax.jit(loop.apply)(v_loop, video)
  # Same math; XLA fuses a scanned body and unrolled layers differently,
  # so only float32 rounding differs.
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5)
  back = weights.convert_layout(v_loop, scan, to_scan=True)
  jax.tree.map(np.testing.assert_array_equal, back, v)


def test_train_mode_updates_batch_stats_and_needs_dropout_rng():
  small = dict(TINY, layers=2, return_list=(1,), n_layers=1, mlp_dropout=(0.5,))
  model = uv2.UniFormerV2(
    **small, drop_path_rate=0.2, backbone_drop_path_rate=0.1
  )
  video = _video()
  v = _noisy_init(model, video)
  with pytest.raises(Exception, match="dropout"):
    jax.eval_shape(
      lambda: model.apply(v, video, train=True, mutable=["batch_stats"])
    )

  def loss(params, rng):
    out, upd = model.apply(
      {"params": params, "batch_stats": v["batch_stats"]},
      video,
      train=True,
      rngs={"dropout": rng},
      mutable=["batch_stats"],
    )
    return out["logits"].sum(), (out, upd)

  step = jax.jit(jax.grad(loss, has_aux=True))
  g1, (o1, upd) = step(v["params"], jax.random.key(1))
  _, (o2, _) = step(v["params"], jax.random.key(2))
  assert not np.allclose(o1["logits"], o2["logits"])
  old = v["batch_stats"]["resblocks_scan_0"]["lmhra1"]["pos_embed_0"]["mean"]
  new = upd["batch_stats"]["resblocks_scan_0"]["lmhra1"]["pos_embed_0"]["mean"]
  assert old.shape == new.shape == (1, 48)
  assert not np.allclose(old, new)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(g1))
  apply = jax.jit(model.apply)
  np.testing.assert_array_equal(
    apply(v, video)["logits"], apply(v, video)["logits"]
  )


def test_local_mhra_token_mask_equals_running_on_the_kept_tokens():
  """The blocks run Local MHRA on all tokens with the class token masked out
  of the BatchNorm statistics (no slice / concatenate): outputs on the patch
  tokens, batch-stat updates and gradients equal the official
  patch-tokens-only computation, in train mode."""
  x = jax.random.normal(jax.random.key(0), (2, 4, 5, 12)) * 2.0 + 0.5
  mhra = uv2.LocalMHRA(train=True)
  v = _noisy_init(mhra, x[:, :, 1:])
  patches = jnp.arange(5) > 0

  def run(v, full):
    if full:
      y, new = mhra.apply(v, x, token_mask=patches, mutable=["batch_stats"])
      return y[:, :, 1:], new
    return mhra.apply(v, x[:, :, 1:], mutable=["batch_stats"])

  (want, want_stats), (got, got_stats) = run(v, False), run(v, True)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(got_stats), jax.tree.leaves(want_stats)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Without the mask the class token shifts the statistics: not equal.
  plain, _ = mhra.apply(v, x, mutable=["batch_stats"])
  assert not np.allclose(plain[:, :, 1:], want, atol=1e-3)
  loss = lambda p, full: jnp.sum(jnp.sin(run({**v, "params": p}, full)[0]))
  g_want, g_got = (jax.grad(loss)(v["params"], f) for f in (False, True))
  for a, b in zip(jax.tree.leaves(g_got), jax.tree.leaves(g_want)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bf16_compute_with_f32_params():
  video = _video()
  f32 = uv2.UniFormerV2(**TINY)
  v = _noisy_init(f32, video)
  bf16 = f32.clone(dtype=jnp.bfloat16, remat_policy="dots_saveable")
  out = jax.jit(bf16.apply)(v, video)
  ref = jax.jit(f32.apply)(v, video)
  assert out["tokens"].dtype == jnp.bfloat16
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(v))
  assert np.isfinite(np.asarray(out["logits"], np.float32)).all()
  err = np.abs(np.asarray(out["logits"]) - ref["logits"]).max()
  assert err < 0.05 * np.abs(ref["logits"]).max()


def test_every_param_has_logical_names():
  model = uv2.UniFormerV2(**TINY)
  boxed = jax.eval_shape(model.init, jax.random.key(0), _video())["params"]
  leaves = jax.tree.leaves(
    boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)
  )
  assert leaves
  for leaf in leaves:
    assert isinstance(leaf, nn.LogicallyPartitioned), leaf
    assert len(leaf.names) == leaf.value.ndim
  specs = nn.get_partition_spec(boxed)
  q = specs["resblocks_scan_0"]["attn"]["query"]["kernel"]
  assert tuple(q) == ("layers", "embed", "heads", "kv")
  assert tuple(specs["uniblocks_scan_1"]["dpe"]["kernel"])[0] == "layers"
  assert tuple(specs["proj_2"]["kernel"]) == ("embed", "classes")


@pytest.mark.parametrize("lq,lk", [(5, 6), (5, 7), (6, 7), (4, 6)])
def test_fused_attention_matches_einsum_path(lq, lk):
  """jax.nn.dot_product_attention over extra leading axes, with and without
  a mask; odd lengths (padded to even for cuDNN) give the same values and
  gradients as the einsum path."""
  from art_jax.models import layers

  ks = jax.random.split(jax.random.key(3), 4)
  q = jax.random.normal(ks[0], (2, 3, lq, 4, 8))  # (B, T, Lq, H, K)
  k = jax.random.normal(ks[1], (2, 3, lk, 4, 8))
  v = jax.random.normal(ks[2], (2, 3, lk, 4, 8))
  mask = (
    jax.random.bernoulli(ks[3], 0.7, (2, 1, 1, lq, lk)).at[..., 0].set(True)
  )

  def einsum_path(q, k, v, m):
    return jnp.einsum(
      "...hql,...lhk->...qhk", layers.attention_weights(q, k, m), v
    )

  def fused(q, k, v, m):
    return layers.fused_attention(q, k, v, m, implementation="xla")

  for m in (mask, None):
    got, want = fused(q, k, v, m), einsum_path(q, k, v, m)
    assert got.shape == q.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    g_got, g_want = (
      jax.grad(
        lambda q, k, v, f=f, m=m: jnp.sum(jnp.sin(f(q, k, v, m))), (0, 1, 2)
      )(q, k, v)
      for f in (fused, einsum_path)
    )
    for a, b in zip(g_got, g_want):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
  "lq,lk", [(5, None), (6, None), (5, 7), (5, 6), (4, 7)]
)
def test_cudnn_path_pads_odd_tokens_once_before_the_projections(
  monkeypatch, lq, lk
):
  """With attention_impl="cudnn", odd lengths are padded on the tokens
  before the q/k/v projections (so fused_attention sees even lengths and
  pads nothing), the padded key masked out and the padded query row dropped:
  values and gradients equal the einsum path. lk None: self-attention."""
  from art_jax.models import layers

  seen = []
  real = layers.fused_attention

  def xla_fused(q, k, v, mask=None, implementation="cudnn", **kw):
    seen.append((q.shape[-3], k.shape[-3], kw.get("kv_length")))
    return real(q, k, v, mask, implementation="xla", **kw)

  monkeypatch.setattr(layers, "fused_attention", xla_fused)
  ks = jax.random.split(jax.random.key(4), 2)
  x = jax.random.normal(ks[0], (2, 3, lq, 16))
  ctx = None if lk is None else jax.random.normal(ks[1], (2, 3, lk, 16))
  mha = layers.MultiHeadAttention(4, attention_impl="xla")
  v = (
    _noisy_init(mha, x)
    if ctx is None
    else nn.meta.unbox(mha.init(jax.random.key(1), x, ctx))
  )
  fused = mha.clone(attention_impl="cudnn")

  def loss(p, model, x):
    return jnp.sum(jnp.sin(model.apply({"params": p}, x, ctx)[0]))

  want, got = (m.apply(v, x, ctx)[0] for m in (mha, fused))
  assert got.shape == want.shape == (2, 3, lq, 16)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  g_want, g_got = (
    jax.grad(loss, argnums=(0, 2))(v["params"], m, x) for m in (mha, fused)
  )
  for a, b in zip(jax.tree.leaves(g_got), jax.tree.leaves(g_want)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  lk_ = lq if lk is None else lk
  odd = lq % 2 or lk_ % 2
  assert set(seen) == {(lq + lq % 2, lk_ + lk_ % 2, lk_ if odd else None)}


def test_cudnn_attention_setting_reaches_every_backbone_block(monkeypatch):
  """attention_impl="cudnn" routes the backbone's self-attention through
  fused_attention (run here with XLA's kernel: cuDNN needs a GPU) and
  gives the same outputs; weights-returning calls keep the einsum path."""
  from art_jax.models import layers

  calls = []
  real = layers.fused_attention

  def xla_fused(q, k, v, mask=None, implementation="cudnn", **kw):
    calls.append(implementation)
    return real(q, k, v, mask, implementation="xla", **kw)

  monkeypatch.setattr(layers, "fused_attention", xla_fused)
  video = _video()
  model = uv2.UniFormerV2(**TINY, scan=False)
  v = _noisy_init(model, video)
  want = model.apply(v, video)
  got = model.clone(attention_impl="cudnn").apply(v, video)
  assert calls == ["cudnn"] * TINY["layers"]
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="attention_impl"):
    model.clone(attention_impl="flash").apply(v, video)


@pytest.mark.parametrize("kt,st,pt", [(3, 2, 1), (1, 1, 0)])
def test_patch_embedding_equals_conv3d(kt, st, pt):
  """conv1 as slices + one matmul == the strided Conv3d it replaces."""
  x = jax.random.normal(jax.random.key(0), (2, 8, 24, 24, 3))
  fast = uv2.PatchEmbedding(
    16, (kt, 8, 8), temporal_stride=st, temporal_padding=pt
  )
  v = nn.meta.unbox(fast.init(jax.random.key(1), x))
  conv = nn.Conv(
    16,
    (kt, 8, 8),
    strides=(st, 8, 8),
    padding=((pt, pt), (0, 0), (0, 0)),
    use_bias=False,
  )
  want = conv.apply(v, x)
  assert want.shape == (2, 8 // st, 3, 3, 16)
  np.testing.assert_allclose(fast.apply(v, x), want, rtol=1e-5, atol=1e-5)
