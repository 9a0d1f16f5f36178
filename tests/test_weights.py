"""Weight import: official parity, CLIP (OpenAI / Hugging Face), CLI, files."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from art_jax import weights
from art_jax.models import uniformerv2 as uv2

FIXTURE = os.path.join(
  os.path.dirname(__file__), "fixtures", "uniformerv2_official_tiny.npz"
)


def _fixture():
  """Official tiny model (made from OpenGVLab's code, random weights)."""
  with np.load(FIXTURE) as f:
    cfg = json.loads(str(f["config"]))
    state = {k[3:]: f[k].astype(np.float32) for k in f.files if k[:3] == "sd/"}
    return cfg, state, f["video"].astype(np.float32), f["logits"]


def _rel_err(a, b):
  return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


@pytest.mark.parametrize("scan", [True, False])
def test_official_logits_parity(scan):
  cfg, state, video, ref = _fixture()
  # pyslowfast checkpoints: {'model_state': {'backbone.…': …}}.
  wrapped = {"model_state": {"backbone." + k: v for k, v in state.items()}}
  model = uv2.UniFormerV2(**cfg, scan=scan)
  variables = weights.uniformerv2_from_torch(wrapped, model)
  assert set(variables) == {"params", "batch_stats"}
  out = model.apply(variables, video, train=False)
  assert _rel_err(out["logits"], ref) < 1e-4


@pytest.mark.filterwarnings("ignore:width 48. head count")
def test_official_inferred_architecture():
  cfg, state, video, ref = _fixture()
  kw = weights.infer_model_kwargs({"module." + k: v for k, v in state.items()})
  for name in (
    "width",
    "layers",
    "patch_size",
    "input_resolution",
    "return_list",
    "num_classes",
    "double_lmhra",
  ):
    assert tuple(np.atleast_1d(kw[name])) == tuple(np.atleast_1d(cfg[name]))


def test_inferred_heads_are_never_zero():
  """Width 48 (< 64): the head count used to be width // 64 = 0."""
  cfg, state, video, ref = _fixture()
  assert [weights.guess_heads(w) for w in (768, 1024, 48, 96, 64)] == [
    12,
    16,
    1,
    2,
    1,
  ]
  with pytest.warns(UserWarning, match="heads=n_head=1"):
    variables = weights.uniformerv2_from_torch(state)
  query = variables["params"]["uniblocks_scan_2"]["resblock"]["attn"]["query"]
  assert query["kernel"].shape == (2, 48, 1, 48)
  # The guess is a guess: with the real head count the logits match.
  with pytest.warns(UserWarning):
    kw = weights.infer_model_kwargs(state)
  model = uv2.UniFormerV2(**dict(kw, heads=3, n_head=3))
  out = model.apply(weights.uniformerv2_from_torch(state, model), video)
  assert _rel_err(out["logits"], ref) < 1e-4


def test_unknown_and_mismatched_keys_are_listed():
  cfg, state, _, _ = _fixture()
  model = uv2.UniFormerV2(**cfg)
  bad = dict(state)
  bad["transformer.resblocks.0.extra.weight"] = np.zeros(3)
  bad["transformer.balance"] = np.zeros(5)
  with pytest.raises(ValueError) as e:
    weights.uniformerv2_from_torch(bad, model)
  msg = str(e.value)
  assert "transformer.resblocks.0.extra.weight" in msg
  assert "transformer.balance: (5,)" in msg
  missing = {k: v for k, v in state.items() if "dec.1." not in k}
  with pytest.raises(ValueError, match="dec_1/attn/query/kernel"):
    weights.uniformerv2_from_torch(missing, model)


def _clip_model_kwargs():
  return dict(
    input_resolution=32,
    patch_size=8,
    width=48,
    layers=2,
    heads=3,
    return_list=(1,),
    n_layers=1,
    n_dim=48,
    n_head=3,
    mlp_dropout=(0.5,),
    num_classes=5,
  )


def test_hf_clip_tokens_equal_clip_on_centre_frames(tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  config = transformers.CLIPVisionConfig(
    hidden_size=48,
    intermediate_size=192,
    num_hidden_layers=2,
    num_attention_heads=3,
    image_size=32,
    patch_size=8,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
  )
  torch.manual_seed(0)
  hf = transformers.CLIPVisionModel(config).eval()
  with torch.no_grad():  # non-trivial LayerNorms and biases
    for p in hf.parameters():
      p.add_(0.05 * torch.randn_like(p))
  hf.save_pretrained(tmp_path, safe_serialization=True)

  model = uv2.UniFormerV2(**_clip_model_kwargs())
  state = weights.read_source(str(tmp_path))
  variables, report = weights.load_uniformerv2(state, model, rng=1)
  assert report.source == "hf_clip"
  assert "vision_model.post_layernorm.weight" in report.ignored
  assert any("lmhra1" in p for p in report.initialised)
  assert not any("resblocks_scan_0/attn" in p for p in report.initialised)

  video = np.random.default_rng(0).normal(size=(2, 4, 32, 32, 3))
  video = video.astype(np.float32)
  tokens = model.apply(variables, video, train=False)["tokens"]
  frames = torch.from_numpy(video[:, ::2]).flatten(0, 1).permute(0, 3, 1, 2)
  with torch.no_grad():
    ref = hf(pixel_values=frames).last_hidden_state[:, 1:].numpy()
  ref = ref.reshape(2, 2, *ref.shape[1:])
  assert tokens.shape == ref.shape
  assert _rel_err(tokens, ref) < 1e-4


def test_openai_clip_partial_load_report():
  cfg, state, video, _ = _fixture()
  # An OpenAI CLIP visual dict: 2-D patch kernel, no UniFormerV2 additions.
  clip = {
    "visual." + k: v
    for k, v in state.items()
    if not k.startswith(
      (
        "transformer.dec",
        "transformer.dpe",
        "transformer.proj",
        "transformer.balance",
        "transformer.temporal",
      )
    )
    and ".lmhra" not in k
  }
  clip["visual.conv1.weight"] = state["conv1.weight"][:, :, 1]
  clip["visual.ln_post.weight"] = np.ones(48, np.float32)
  clip["visual.proj"] = np.zeros((48, 16), np.float32)
  clip["token_embedding.weight"] = np.zeros((10, 16), np.float32)
  model = uv2.UniFormerV2(**cfg, scan=False)
  variables, report = weights.load_uniformerv2(clip, model)
  assert report.source == "openai_clip"
  assert sorted(report.ignored) == [
    "ln_post.weight",
    "proj",
    "token_embedding.weight",
  ]
  assert "params/dec_0/attn/out/kernel" in report.initialised
  assert "batch_stats/resblocks_0/lmhra1/pos_embed_0/var" in report.initialised
  assert "params/resblocks_3/mlp/c_fc/kernel" in report.loaded
  kernel = variables["params"]["conv1"]["kernel"]  # (t, p, p, 3, C)
  np.testing.assert_array_equal(kernel[0], 0)
  np.testing.assert_array_equal(kernel[2], 0)
  np.testing.assert_allclose(
    kernel[1], state["conv1.weight"][:, :, 1].transpose(2, 3, 1, 0)
  )
  # Fresh additions keep their zero-inits.
  np.testing.assert_array_equal(
    variables["params"]["resblocks_2"]["lmhra2"]["pos_embed_3"]["kernel"], 0
  )
  out = model.apply(variables, video, train=False)
  assert np.isfinite(out["logits"]).all()


def test_resample_positional_embedding():
  pos = np.random.default_rng(0).normal(size=(17, 6)).astype(np.float32)
  same = weights.resample_positional_embedding(pos, (4, 4))
  np.testing.assert_allclose(same, pos, atol=1e-6)
  assert weights.resample_positional_embedding(pos, (6, 6)).shape == (37, 6)


def test_params_file_roundtrip_across_layouts(tmp_path):
  cfg, state, video, ref = _fixture()
  scan_model = uv2.UniFormerV2(**cfg, scan=True)
  variables = weights.uniformerv2_from_torch(state, scan_model)
  path = str(tmp_path / "p.msgpack")
  weights.save_params_file(path, variables, scan_model, source="fixture")
  loop_model = scan_model.clone(scan=False)
  loaded = weights.load_params_file(path, loop_model)
  assert "resblocks_0" in loaded["params"]
  out = loop_model.apply(loaded, video, train=False)
  assert _rel_err(out["logits"], ref) < 1e-4


def test_convert_cli_end_to_end(tmp_path):
  torch = pytest.importorskip("torch")
  cfg, state, video, ref = _fixture()
  src = str(tmp_path / "tiny.pyth")
  torch.save(
    {
      "model_state": {
        "backbone." + k: torch.from_numpy(v) for k, v in state.items()
      }
    },
    src,
  )
  dst = str(tmp_path / "tiny.msgpack")
  cmd = [
    sys.executable,
    "-m",
    "art_jax.tools.convert_weights",
    f"--src={src}",
    f"--dst={dst}",
    "--set=heads=3",
    "--set=n_head=3",
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  res = subprocess.run(
    cmd, capture_output=True, text=True, env=env, check=False, timeout=120
  )
  assert res.returncode == 0, res.stderr[-3000:]
  assert "source format: uniformerv2" in res.stdout
  variables, meta = weights.read_params_file(dst)
  assert meta["layout"] == "scan"
  model = uv2.UniFormerV2(**meta["model"])
  out = model.apply(variables, video, train=False)
  assert _rel_err(out["logits"], ref) < 1e-4
