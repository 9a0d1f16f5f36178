"""The backbone choice (art_jax/models/backbones.py): ART on TEA, token
grids, class weights, sharding, and ImageNet Res2Net weights through
convert_weights into the trainer's init_from."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_config import load_config

from art_jax import optim, text_bank, weights
from art_jax import sharding as sh
from art_jax import state as state_lib
from art_jax.models import backbones, build
from art_jax.tools import convert_weights


def _tea_config(num_classes=4):
  c = load_config("finegym", "r50,runlocal")
  c.data.num_classes = num_classes
  c.model.heads.top_k = num_classes
  return c


def _tokens_shape(kind, kwargs, frames, crop):
  module = backbones.build(kind, kwargs)
  video = jax.ShapeDtypeStruct((1, frames, crop, crop, 3), jnp.float32)
  variables = jax.eval_shape(module.init, jax.random.key(0), video)
  return jax.eval_shape(module.apply, variables, video)["tokens"].shape


@pytest.mark.parametrize(
  "config,arg,length",
  [("finegym", "runlocal", 16), ("finegym", "r50,runlocal", 16),
   ("demo", "r50", 9), ("demo", None, 16)],
)  # fmt: skip
def test_token_grid_is_the_side_of_the_tokens(config, arg, length):
  c = load_config(config, arg)
  model = build.build_model(c)
  kind, crop = model.backbone_kind, c.data.crop_size
  grid = backbones.token_grid(kind, model.backbone, crop)
  shape = _tokens_shape(kind, model.backbone, c.data.num_frames, crop)
  assert grid**2 == shape[2] == length


def test_r50_at_224_has_seven_by_seven_tokens_of_2048():
  kw = backbones.preset_kwargs("tea", "r50", num_segments=2)
  assert backbones.token_grid("tea", kw, 224) == 7
  assert _tokens_shape("tea", kw, 2, 224) == (1, 2, 49, 2048)


def test_art_on_tea_reads_per_frame_tokens_and_fc_logits():
  c = _tea_config()
  model = build.build_model(c)
  video = jnp.zeros((2, 8, 32, 32, 3))
  bank = jnp.asarray(text_bank.blank_bank(4))
  variables = jax.eval_shape(model.init, jax.random.key(0), video, bank)
  assert "fc" in variables["params"]["backbone"]
  assert "class_embed" in variables["params"]["heads"]
  assert "layer2_0" in variables["batch_stats"]["backbone"]
  out = jax.eval_shape(
    lambda v: model.apply(
      v,
      video,
      bank,
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": jax.random.key(1)},
    )[0],
    variables,
  )
  d = c.model.heads.latent_dim
  assert out["tokens"].shape == (2, 8, 16, 128)  # T' = T: no downsampling
  assert out["responses"].shape == (2, 8, 2, d)
  assert out["response_maps"].shape == (2, 8, 2, 16)
  assert out["logits"].shape == out["logits_global"].shape == (2, 4)
  assert out["global"].shape == (2, 128)
  kernel = backbones.classifier_kernel("tea", variables["params"]["backbone"])
  assert kernel.value.shape == (128, 4)  # CAM weights: fc, (C, K)
  assert backbones.classifier_prefix("tea") == "fc/"
  assert backbones.classifier_prefix("uniformerv2") == "proj_2/"


def test_tea_state_shards_over_fsdp_where_widths_allow():
  """Residual-stream kernels split over fsdp, split widths and BatchNorm
  vectors replicated; the heads as on UniFormerV2."""
  c = _tea_config()
  model = build.build_model(c)
  mesh = sh.make_mesh({"data": 4, "fsdp": 2, "tensor": 1})
  tx = optim.make_optimizer(c.optim, lambda _: 0.0)
  setup = state_lib.setup_state(
    model, tx, mesh, sh.LOGICAL_RULES, (8, 8, 32, 32, 3), (4, 1, 1)
  )

  def spec(tree, *path):
    for key in path:
      tree = tree[key]
    return tuple(x for x in tree.sharding.spec if x is not None)

  p = setup.abstract.params["backbone"]
  assert spec(p, "layer1_0", "conv3", "kernel") == ("fsdp",)
  assert tuple(p["layer1_0"]["conv3"]["kernel"].sharding.spec)[-1] == "fsdp"
  assert spec(p, "layer2_0", "conv1", "kernel") == ("fsdp",)
  assert spec(p, "layer1_0", "convs_0", "kernel") == ()
  assert spec(p, "layer1_0", "me", "conv1", "kernel") == ()
  assert spec(p, "bn1", "scale") == ()
  assert spec(setup.abstract.batch_stats["backbone"], "bn1", "mean") == ()
  heads = setup.abstract.params["heads"]
  assert spec(heads, "class_embed") == ("tensor", "fsdp")  # (K, d)


def res2net_state_dict(kwargs, seed=0):
  """A random ImageNet Res2Net state dict in the official (gasvn / timm)
  key layout, made with torch for the TEA of `kwargs`: no ME or MTA, a
  1000-class fc, BatchNorm step counters."""
  import torch  # noqa: PLC0415 - test-only, reference layout

  module = backbones.build("tea", kwargs)
  video = jnp.zeros((1, kwargs["num_segments"], 32, 32, 3))
  shapes = nn.meta.unbox(jax.eval_shape(module.init, jax.random.key(0), video))
  g = torch.Generator().manual_seed(seed)
  state = {}
  bn_leaf = {
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
  }
  for col in ("params", "batch_stats"):
    for path, leaf in jax.tree_util.tree_leaves_with_path(shapes[col]):
      names = [str(k.key) for k in path]
      if "me" in names or names[-2].startswith("shifts_"):
        continue  # TEA's own modules: not in an ImageNet Res2Net
      module_key = ".".join(names[:-1]).replace("_", ".")
      if names[-1] == "kernel" and names[-2] != "fc":  # (kh, kw, I, O)
        kh, kw, i, o = leaf.shape
        key, shape = f"{module_key}.weight", (o, i, kh, kw)
      elif names[-2] == "fc":
        key = f"fc.{'weight' if names[-1] == 'kernel' else 'bias'}"
        shape = (1000, leaf.shape[0]) if names[-1] == "kernel" else (1000,)
      else:
        key, shape = f"{module_key}.{bn_leaf[names[-1]]}", leaf.shape
      t = torch.rand(shape, generator=g) * 2 - 1
      if key.endswith("running_var"):
        t = t.abs() + 0.5
        steps = key.replace("running_var", "num_batches_tracked")
        state[steps] = torch.tensor(7)
      state[key] = t
  return state


def test_imagenet_res2net_through_convert_weights_into_init_from(tmp_path):
  """A torch Res2Net .pth (official key layout) -> convert_weights (TEA
  found from the keys) -> weights.load_pretrained: backbone arrays
  and BatchNorm statistics arrive, ME / MTA keep their init and are
  reported, the 1000-class fc is dropped and fc re-initialised."""
  import torch  # noqa: PLC0415

  c = _tea_config()
  model = build.build_model(c)
  fields = {k: model.backbone[k] for k in ("layers", "planes", "stem_width")}
  src = str(tmp_path / "res2net50_26w_4s.pth")
  state_dict = res2net_state_dict(model.backbone)
  torch.save(state_dict, src)
  dst = str(tmp_path / "res2net.msgpack")
  report = convert_weights.convert(src, dst, num_classes=7, overrides=fields)
  assert report.source == "res2net"
  assert sorted(report.ignored) == ["fc.bias", "fc.weight"]
  _, meta = weights.read_params_file(dst)
  assert meta["format"] == "art_jax.tea/1" and meta["layout"] == "loop"
  assert "params/layer1_0/me/conv1/kernel" in meta["initialised"]

  bank = text_bank.blank_bank(4)
  variables = nn.meta.unbox(
    jax.jit(model.init)(
      jax.random.key(0), jnp.zeros((1, 8, 32, 32, 3)), jnp.asarray(bank)
    )
  )
  state = state_lib.TrainState(
    step=jnp.zeros((), jnp.int32),
    params=variables["params"],
    batch_stats=variables["batch_stats"],
    opt_state=(),
    text_bank=jnp.asarray(bank),
    rng=jax.random.key(0),
  )
  loaded, report = weights.load_pretrained(
    state,
    dst,
    backbones.build("tea", model.backbone),
    classifier=backbones.classifier_prefix("tea"),
  )
  rep = report.as_json()
  p, s = loaded.params["backbone"], loaded.batch_stats["backbone"]
  np.testing.assert_array_equal(
    p["layer2_0"]["convs_1"]["kernel"],
    state_dict["layer2.0.convs.1.weight"].numpy().transpose(2, 3, 1, 0),
  )
  np.testing.assert_array_equal(
    p["layer1_0"]["downsample_1"]["scale"],
    state_dict["layer1.0.downsample.1.weight"].numpy(),
  )
  np.testing.assert_array_equal(
    s["layer2_0"]["bns_2"]["var"],
    state_dict["layer2.0.bns.2.running_var"].numpy(),
  )
  # fc: 7 classes in the file, 4 here (the classifier may differ).
  assert {k for k in rep["reinitialised"] if k.startswith("params/")} == {
    "params/backbone/fc/bias",
    "params/backbone/fc/kernel",
  }
  np.testing.assert_array_equal(
    p["fc"]["kernel"], variables["params"]["backbone"]["fc"]["kernel"]
  )
  fresh = set(rep["initialised_in_file"])
  assert "params/backbone/layer2_0/me/conv2/kernel" in fresh
  assert "batch_stats/backbone/layer1_0/me/bn1/mean" in fresh
  assert "params/backbone/layer1_0/shifts_3/kernel" in fresh
  assert not any("convs_" in k or "/fc/" in k for k in fresh)
  # MTA from the file is the official init: the last split's part shift.
  shift = np.asarray(p["layer1_0"]["shifts_3"]["kernel"])
  assert shift.sum() == shift.shape[1] and shift[2, 0] == 1

  # The wrong backbone kind is named, not loaded as "nothing matched".
  uv2 = build.build_model(load_config("finegym", "runlocal"))
  with pytest.raises(ValueError, match="holds a tea params file"):
    backbones.load_variables("uniformerv2", dst, uv2.backbone)
