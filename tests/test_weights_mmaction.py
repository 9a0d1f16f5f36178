"""mmaction2 UniFormerV2 checkpoints and CLIP visual extracts: parity with
mmaction2's own backbone + UniFormerHead (tiny random fixture made outside
the repo, see docs/method.md "Public UniFormerV2 checkpoints")."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from art_jax import weights
from art_jax.models import uniformerv2 as uv2
from art_jax.tools import convert_weights

FIXTURE = os.path.join(
  os.path.dirname(__file__), "fixtures", "uniformerv2_mmaction2_tiny.npz"
)
_FIELDS = {f.name for f in dataclasses.fields(uv2.UniFormerV2)}


def _fixture(variant: str) -> dict:
  """One variant: config, recognizer state dict, video, reference outputs."""
  with np.load(FIXTURE) as f:
    sd_prefix = f"{variant}/sd/"
    out = {
      k[len(variant) + 1 :]: f[k] for k in f.files if k.startswith(variant)
    }
    out["state"] = {
      k[len(sd_prefix) :]: f[k].astype(np.float32)
      for k in f.files
      if k.startswith(sd_prefix)
    }
  cfg = json.loads(str(out["config"]))
  out["config"] = {k: v for k, v in cfg.items() if k in _FIELDS}
  out["video"] = out["video"].astype(np.float32)
  return out


def _checkpoint(state: dict) -> dict:
  """What mmaction2 publishes: {'state_dict': …, 'meta': …}."""
  return {"state_dict": dict(state), "meta": {"mmaction2": "tiny fixture"}}


def _rel_err(a, b) -> float:
  return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def _layer_norm(x, scale, bias, eps=1e-5):
  x = np.asarray(x, np.float64)
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * scale + bias


@pytest.mark.parametrize(
  "variant,scan", [("kin", True), ("kin", False), ("lmhra", True)]
)
def test_mmaction2_checkpoint_logits_parity(variant, scan):
  fx = _fixture(variant)
  model = uv2.UniFormerV2(**fx["config"], scan=scan)
  variables, report = weights.load_uniformerv2(_checkpoint(fx["state"]), model)
  assert report.source == "mmaction2" and not report.initialised
  out = model.apply(variables, fx["video"], train=False)
  assert _rel_err(out["logits"], fx["logits"]) < 1e-4
  # transformer.norm is the official proj.0 (our proj_0): mmaction2's
  # backbone output is LayerNorm(our "global") with its weights.
  norm_w = fx["state"]["backbone.transformer.norm.weight"]
  norm_b = fx["state"]["backbone.transformer.norm.bias"]
  np.testing.assert_array_equal(
    variables["params"]["proj_0"]["ln"]["scale"], norm_w
  )
  features = _layer_norm(out["global"], norm_w, norm_b)
  assert _rel_err(features, fx["features"]) < 1e-4


@pytest.mark.filterwarnings("ignore:width 24. head count")
def test_mmaction2_inferred_architecture():
  for variant in ("kin", "lmhra"):
    fx = _fixture(variant)
    kw = weights.infer_model_kwargs(_checkpoint(fx["state"]))
    for name in (
      "width",
      "layers",
      "patch_size",
      "input_resolution",
      "return_list",
      "n_layers",
      "num_classes",
      "no_lmhra",
      "double_lmhra" if not fx["config"]["no_lmhra"] else "width",
      "temporal_downsample",
      "kernel_size",
    ):
      got, want = np.atleast_1d(kw[name]), np.atleast_1d(fx["config"][name])
      assert tuple(got) == tuple(want), name
    # Heads are not in the weights: with the fixture's, the inferred model
    # reproduces mmaction2.
    model = uv2.UniFormerV2(**dict(kw, heads=2, n_head=2))
    variables = weights.uniformerv2_from_torch(fx["state"], model)
    out = model.apply(variables, fx["video"], train=False)
    assert _rel_err(out["logits"], fx["logits"]) < 1e-4


def test_mmaction2_norm_and_official_proj_0_together_is_an_error():
  fx = _fixture("kin")
  state = dict(fx["state"])
  state["backbone.transformer.proj.0.weight"] = np.ones(24, np.float32)
  model = uv2.UniFormerV2(**fx["config"])
  with pytest.raises(ValueError, match="two keys for one array") as e:
    weights.load_uniformerv2(state, model)
  assert "transformer.norm.weight and transformer.proj.0.weight" in str(e.value)


@pytest.mark.filterwarnings("ignore:width 24. head count")
def test_k710_channel_map_equals_mmaction2_uniformer_head():
  """mmaction2's UniFormerHead(channel_map=…) initialised from the K710
  checkpoint vs select_head_channels + load: the same logits."""
  fx = _fixture("kin")
  channel_map = [int(i) for i in fx["channel_map"]]
  state = weights.select_head_channels(_checkpoint(fx["state"]), channel_map)
  assert state["cls_head.fc_cls.weight"].shape == (len(channel_map), 24)
  kw = dict(fx["config"], num_classes=len(channel_map))
  assert weights.infer_model_kwargs(state)["num_classes"] == len(channel_map)
  model = uv2.UniFormerV2(**kw)
  variables = weights.uniformerv2_from_torch(state, model)
  out = model.apply(variables, fx["video"], train=False)
  assert _rel_err(out["logits"], fx["logits_mapped"]) < 1e-4
  np.testing.assert_allclose(
    out["logits"], fx["logits"][:, channel_map], rtol=1e-4, atol=1e-5
  )
  with pytest.raises(ValueError, match=r"in \[0, 10\)"):
    weights.select_head_channels(fx["state"], [0, 10])
  backbone = {k: v for k, v in fx["state"].items() if "cls_head" not in k}
  with pytest.raises(ValueError, match="no classifier"):
    weights.select_head_channels(backbone, [0])


@pytest.mark.filterwarnings("ignore:width 24. head count")
def test_convert_mmaction2_checkpoint_with_channel_map(tmp_path):
  torch = pytest.importorskip("torch")
  fx = _fixture("kin")
  src = str(tmp_path / "k710_tiny.pth")
  torch.save(
    _checkpoint({k: torch.from_numpy(v) for k, v in fx["state"].items()}), src
  )
  cmap = tmp_path / "map_k400.json"
  cmap.write_text(json.dumps([int(i) for i in fx["channel_map"]]))
  dst = str(tmp_path / "k400_tiny.msgpack")
  report = convert_weights.convert(
    src, dst, overrides={"heads": 2, "n_head": 2}, channel_map=str(cmap)
  )
  assert report.source == "mmaction2" and not report.initialised
  variables, meta = weights.read_params_file(dst)
  assert meta["model"]["num_classes"] == 4
  assert meta["model"]["no_lmhra"] and not meta["model"]["temporal_downsample"]
  model = uv2.UniFormerV2(**meta["model"])
  out = model.apply(variables, fx["video"], train=False)
  assert _rel_err(out["logits"], fx["logits_mapped"]) < 1e-4


def test_convert_cli_takes_channel_map(tmp_path):
  torch = pytest.importorskip("torch")
  fx = _fixture("kin")
  src = str(tmp_path / "k710_tiny.pth")
  torch.save(
    _checkpoint({k: torch.from_numpy(v) for k, v in fx["state"].items()}), src
  )
  cmap = tmp_path / "map.json"
  cmap.write_text("[3, 1]")
  dst = str(tmp_path / "out.msgpack")
  cmd = [
    sys.executable,
    "-m",
    "art_jax.tools.convert_weights",
    f"--src={src}",
    f"--dst={dst}",
    f"--channel_map={cmap}",
    "--set=heads=2",
    "--set=n_head=2",
    "--scan=false",
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  res = subprocess.run(
    cmd, capture_output=True, text=True, env=env, check=False, timeout=120
  )
  assert res.returncode == 0, res.stderr[-3000:]
  assert "source format: mmaction2" in res.stdout
  variables, meta = weights.read_params_file(dst)
  kernel = variables["params"]["proj_2"]["kernel"]
  w = fx["state"]["cls_head.fc_cls.weight"]
  np.testing.assert_array_equal(kernel, w[[3, 1]].T)


@pytest.mark.parametrize("wrapped", [False, True])
def test_clip_visual_extract_loads_as_clip(wrapped):
  """OpenGVLab's / mmaction2's CLIP visual extracts: OpenAI visual keys
  without ln_post / proj, 2-D conv1. Frame tokens of a Kinetics-layout
  model depend only on them, so they equal the full model's."""
  fx = _fixture("kin")
  extract = {
    k[len("backbone.") :]: v
    for k, v in fx["state"].items()
    if k.startswith("backbone.")
    and not k.startswith(
      (
        "backbone.transformer.dec",
        "backbone.transformer.dpe",
        "backbone.transformer.norm",
        "backbone.transformer.balance",
        "backbone.transformer.temporal",
      )
    )
  }
  extract["conv1.weight"] = extract["conv1.weight"][:, :, 0]
  if wrapped:
    extract = {"state_dict": extract, "meta": {}}
  model = uv2.UniFormerV2(**fx["config"], scan=False)
  variables, report = weights.load_uniformerv2(extract, model)
  assert report.source == "openai_clip" and not report.ignored
  assert "params/dec_0/attn/out/kernel" in report.initialised
  assert "params/resblocks_2/attn/query/kernel" in report.loaded
  full, _ = weights.load_uniformerv2(fx["state"], model)
  got = model.apply(variables, fx["video"], train=False)["tokens"]
  want = model.apply(full, fx["video"], train=False)["tokens"]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
