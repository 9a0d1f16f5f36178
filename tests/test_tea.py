"""TEA-R50: official parity, weight import, shapes, dtypes, sharding names."""

import json
import os
import zlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from art_jax import weights
from art_jax.models import tea

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def random_state(shapes: dict, seed: int) -> dict[str, np.ndarray]:
  """The fixture's weights, re-created from key names and shapes.

  Must stay identical to `random_state` in the script that made the
  fixtures (docs/method.md, "TEA backbone"): each tensor is
  default_rng([seed, crc32(key)]).random(shape) scaled per kind.
  """
  out = {}
  for key, shape in shapes.items():
    u = np.random.default_rng([seed, zlib.crc32(key.encode())]).random(shape)
    s = 2.0 * u - 1.0
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "weight" and len(shape) >= 2:
      fan_in = int(np.prod(shape[1:]))
      if ".shifts." in key:
        w = 0.6 * s
      elif key.startswith(("fc.", "new_fc.")):
        w = s * np.sqrt(3.0 / fan_in)
      else:
        w = s * np.sqrt(3.0) * np.sqrt(2.0 / fan_in)
    elif key.endswith(".bn3.weight") and ".me." not in key:
      w = 0.2 + 0.2 * u  # residual branch gamma: bounded growth over depth
    elif leaf in ("weight", "running_var"):  # BatchNorm gamma / variance
      w = 0.5 + u
    else:  # BatchNorm beta, running_mean, fc bias
      w = 0.2 * s
    out[key] = w.astype(np.float32)
  return out


def _fixture(name):
  """(config, official state dict, video, reference outputs)."""
  with np.load(os.path.join(FIXTURES, f"tea_official_{name}.npz")) as f:
    cfg = json.loads(str(f["config"]))
    shapes = {k: tuple(s) for k, s in json.loads(str(f["keys"]))}
    index = tuple(slice(*s) for s in json.loads(str(f["token_index"])))
    ref = {
      "tokens": f["tokens_sub"],
      "global": f["global_"],
      "logits": f["logits"],
    }
  state = random_state(shapes, cfg["seed"])
  shape = (cfg["b"], cfg["t"], cfg["r"], cfg["r"], 3)
  video = np.random.default_rng(cfg["seed"] + 1).random(shape)
  video = (2.0 * video - 1.0).astype(np.float32)
  return cfg, state, video, ref, index


def _rel_err(a, b):
  return float(np.abs(np.asarray(a, np.float32) - b).max() / np.abs(b).max())


def _model(cfg, **kw):
  return tea.TEA(
    layers=tuple(cfg["layers"]),
    num_segments=cfg["t"],
    num_classes=cfg["num_classes"],
    **kw,
  )


def _check_parity(name):
  cfg, state, video, ref, index = _fixture(name)
  model = _model(cfg)
  variables, report = tea.tea_from_torch(state, model)
  assert report.source == "tea" and not report.initialised
  out = jax.jit(model.apply)(variables, video)
  errors = {
    "tokens": _rel_err(out["tokens"][index], ref["tokens"]),
    "global": _rel_err(out["global"], ref["global"]),
    "logits": _rel_err(out["logits"], ref["logits"]),
  }
  assert max(errors.values()) < 1e-4, errors
  return out, variables


def test_official_parity_reduced_depth():
  """layers (2, 1, 1, 1) at full width, 2 clips x 16 frames at 64x64,
  against the official module in float64 (eval mode)."""
  out, _ = _check_parity("tiny")
  assert out["tokens"].shape == (2, 16, 4, 2048)
  assert out["global"].shape == (2, 2048)
  assert out["logits"].shape == (2, 7)
  assert out["tokens"].dtype == jnp.float32


@pytest.mark.slow
def test_official_parity_full_depth_16x224():
  out, variables = _check_parity("full")
  assert out["tokens"].shape == (1, 16, 49, 2048)
  count = sum(x.size for x in jax.tree.leaves(variables["params"]))
  # As the official module: Res2Net-50 26w_4s without fc (23.65 M; 25.70 M
  # with its 1000-class fc) + ME + MTA + a 10-class fc.
  assert count == 24_120_244


def test_official_naming_variants_load_the_same():
  """TSN-wrapped TEA (`module.base_model.…`, `module.new_fc.…`) and torch
  tensors give the same variables as the bare keys."""
  import torch

  cfg, state, _, _, _ = _fixture("tiny")
  model = _model(cfg)
  bare, _ = tea.tea_from_torch(state, model)
  tsn = {
    ("module.new_fc." + k[3:])
    if k.startswith("fc.")
    else "module.base_model." + k: torch.from_numpy(v)
    for k, v in state.items()
  }
  tsn["module.base_model.bn1.num_batches_tracked"] = torch.tensor(3)
  wrapped, report = tea.tea_from_torch({"state_dict": tsn}, model)
  jax.tree.map(np.testing.assert_array_equal, wrapped, bare)
  assert len(report.loaded) == len(state)


def _res2net_keys(state):
  """An ImageNet Res2Net-50 26w_4s state dict from a TEA one: no ME / MTA,
  a 1000-class fc (gasvn/Res2Net and timm share these module names)."""
  keep = {
    k: v for k, v in state.items() if ".me." not in k and ".shifts." not in k
  }
  keep["fc.weight"] = np.zeros((1000, 2048), np.float32)
  keep["fc.bias"] = np.zeros((1000,), np.float32)
  return keep


@pytest.mark.parametrize("layout", ["official", "timm"])
def test_imagenet_res2net_load_report(layout, tmp_path):
  cfg, state, _, _, _ = _fixture("tiny")
  model = _model(cfg)
  src = _res2net_keys(state)
  n_arrays = len(src)
  if layout == "official":  # gasvn/Res2Net .pth: BN step counters included
    src.update(
      {
        k.replace("running_var", "num_batches_tracked"): np.asarray(1)
        for k in src
        if k.endswith("running_var")
      }
    )
  else:  # timm on the Hugging Face hub: model.safetensors, same names
    from safetensors.numpy import save_file

    path = os.path.join(tmp_path, "model.safetensors")
    save_file(src, path)
    src = weights.read_source(path)
  variables, report = tea.tea_from_torch(src, model, rng=1)
  assert report.source == "res2net"
  assert sorted(report.ignored) == ["fc.bias", "fc.weight"]
  fresh = report.initialised
  assert "params/fc/kernel" in fresh and "params/fc/bias" in fresh
  assert "params/layer1_1/me/conv2/kernel" in fresh
  assert "batch_stats/layer4_0/me/bn3/var" in fresh
  assert "params/layer2_0/shifts_3/kernel" in fresh
  assert all(
    p.startswith("params/fc/") or "/me/" in p or "/shifts_" in p for p in fresh
  )
  assert len(report.loaded) == n_arrays - 2
  # Backbone arrays loaded, converted to Flax layouts.
  p = variables["params"]
  np.testing.assert_array_equal(
    p["layer1_1"]["convs_2"]["kernel"],
    state["layer1.1.convs.2.weight"].transpose(2, 3, 1, 0),
  )
  np.testing.assert_array_equal(
    variables["batch_stats"]["layer3_0"]["downsample_1"]["var"],
    state["layer3.0.downsample.1.running_var"],
  )
  # MTA at the official init: identity, the last split the part shift.
  np.testing.assert_array_equal(p["layer1_0"]["shifts_0"]["kernel"][1], 1)
  shift = p["layer1_0"]["shifts_3"]["kernel"]  # (3, 26)
  np.testing.assert_array_equal(shift[2, :13], 1)
  np.testing.assert_array_equal(shift[0, 13:], 1)
  assert shift.sum() == 26
  np.testing.assert_array_equal(p["fc"]["bias"], 0)
  assert "fc" in str(report) and "res2net" in str(report)


def test_bad_state_dicts_are_listed():
  cfg, state, _, _, _ = _fixture("tiny")
  model = _model(cfg)
  bad = dict(state)
  bad["layer1.0.me.extra.weight"] = np.zeros(3)
  bad["layer1.0.bn3.weight"] = np.zeros(5)
  with pytest.raises(ValueError) as e:
    tea.tea_from_torch(bad, model)
  assert "layer1.0.me.extra.weight" in str(e.value)
  assert "layer1.0.bn3.weight: (5,)" in str(e.value)
  partial = {k: v for k, v in state.items() if not k.startswith("layer2.")}
  with pytest.raises(ValueError, match="layer2_0/convs_0/kernel"):
    tea.tea_from_torch(partial, model)
  src = {k: v for k, v in _res2net_keys(state).items() if "convs.1" not in k}
  with pytest.raises(ValueError, match="convs_1"):
    tea.tea_from_torch(src, model)


SMALL = dict(
  layers=(2,), planes=(32,), stem_width=16, num_segments=4, num_classes=5
)


def _video(b=2, t=4, r=16, seed=0):
  return jax.random.normal(jax.random.key(seed), (b, t, r, r, 3))


def test_shapes_input_checks_and_init():
  model = tea.TEA(**SMALL)
  video = _video()
  v = jax.jit(model.init)(jax.random.key(0), video)
  out = jax.jit(model.apply)(v, video)
  assert out["tokens"].shape == (2, 4, 4 * 4, 128)  # 16 / 4: one stage
  assert out["global"].shape == (2, 128)
  assert out["logits"].shape == (2, 5)
  params = nn.meta.unbox(v["params"])
  assert set(v["batch_stats"]["layer1_0"]["me"]) == {"bn1", "bn3"}
  assert params["layer1_1"]["shifts_2"]["kernel"].shape == (3, 13)
  assert params["layer1_1"]["me"]["conv1"]["kernel"].shape == (1, 1, 52, 3)
  assert "downsample_0" in params["layer1_0"]  # 16 -> 128 channels
  assert "downsample_0" not in params["layer1_1"]
  # fresh_initializer (what a partial load fills in) gives what init gives.
  for path, x in weights._flatten(nn.meta.unbox(dict(v))).items():
    y = tea.fresh_initializer(path, 4)(jax.random.key(1), x.shape)
    assert y.shape == x.shape and y.dtype == x.dtype
    if path[-1] == "kernel" and "shifts" not in path[-2]:
      np.testing.assert_allclose(np.std(y), np.std(x), rtol=0.5)
    else:
      np.testing.assert_array_equal(y, x)
  with pytest.raises(ValueError, match="num_segments"):
    model.apply(v, _video(t=6))
  with pytest.raises(ValueError, match="scale"):
    tea.TEA(**SMALL, scale=1).init(jax.random.key(0), video)


def test_frame_order_matters_only_through_me_and_mta():
  """Per-frame features mix across time only in ME and MTA: with their
  temporal parts neutralised (ME's motion branch scaled to zero, every
  MTA kernel the identity), reversing the frames reverses the tokens."""
  model = tea.TEA(**SMALL)
  video = _video()
  v = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), video))
  out = model.apply(v, video)
  rev = model.apply(v, video[:, ::-1])
  assert not np.allclose(out["tokens"][:, ::-1], rev["tokens"], atol=1e-4)

  def neutral(path, x):
    names = [p.key for p in path]
    if names[-2].startswith("shifts_"):
      return jnp.zeros_like(x).at[1].set(1.0)
    if "me" in names and names[-2:] in (
      ["conv3", "kernel"],
      ["bn3", "bias"],
      ["bn3", "mean"],
    ):
      return jnp.zeros_like(x)  # ME's gate sigmoid(0) - 0.5 = 0
    return x

  v2 = jax.tree_util.tree_map_with_path(neutral, v)
  a = model.apply(v2, video)["tokens"]
  b = model.apply(v2, video[:, ::-1])["tokens"]
  np.testing.assert_allclose(a[:, ::-1], b, rtol=1e-5, atol=1e-5)


def test_train_mode_updates_batch_stats_and_uses_dropout():
  model = tea.TEA(**SMALL)
  video = _video()
  v = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), video))

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
  g, (o1, upd) = step(v["params"], jax.random.key(1))
  _, (o2, _) = step(v["params"], jax.random.key(2))
  assert not np.allclose(o1["logits"], o2["logits"])
  old = v["batch_stats"]["layer1_0"]["me"]["bn1"]["mean"]
  new = upd["batch_stats"]["layer1_0"]["me"]["bn1"]["mean"]
  assert not np.allclose(old, new)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(g))
  # MTA kernels and ME are trained.
  assert np.abs(g["layer1_1"]["shifts_1"]["kernel"]).sum() > 0
  assert np.abs(g["layer1_0"]["downsample_0"]["kernel"]).sum() > 0
  assert np.abs(g["layer1_1"]["me"]["conv2"]["kernel"]).sum() > 0


def test_bf16_compute_with_f32_params_and_remat():
  video = _video()
  f32 = tea.TEA(**SMALL)
  v = nn.meta.unbox(jax.jit(f32.init)(jax.random.key(0), video))
  bf16 = f32.clone(dtype=jnp.bfloat16, remat_policy="dots_saveable")
  out = jax.jit(bf16.apply)(v, video)
  ref = jax.jit(f32.apply)(v, video)
  assert out["tokens"].dtype == jnp.bfloat16
  assert out["logits"].dtype == out["global"].dtype == jnp.float32
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(v))
  err = np.abs(np.asarray(out["global"]) - ref["global"]).max()
  assert err < 0.05 * np.abs(ref["global"]).max()
  g = jax.jit(
    jax.grad(lambda p: bf16.apply({**v, "params": p}, video)["logits"].sum())
  )(v["params"])
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(g))


def test_every_param_has_logical_names():
  model = tea.TEA(**SMALL)
  boxed = jax.eval_shape(model.init, jax.random.key(0), _video())
  for col in ("params",):
    leaves = jax.tree.leaves(
      boxed[col], is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)
    )
    assert leaves
    for leaf in leaves:
      assert isinstance(leaf, nn.LogicallyPartitioned), leaf
      assert len(leaf.names) == leaf.value.ndim
  specs = nn.get_partition_spec(boxed["params"])
  assert tuple(specs["conv1"]["kernel"]) == ("conv_h", "conv_w", None, "embed")
  block = specs["layer1_1"]
  assert tuple(block["conv1"]["kernel"]) == ("conv_h", "conv_w", "embed", None)
  assert tuple(block["conv3"]["kernel"]) == ("conv_h", "conv_w", None, "embed")
  assert tuple(block["shifts_0"]["kernel"]) == ("conv_t", None)
  assert tuple(block["bn1"]["scale"]) == ("norm",)
  assert tuple(specs["fc"]["kernel"]) == ("embed", "classes")
