"""CLIP text tower: parity with transformers' PyTorch CLIP, loading, layout."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import torch
import transformers

from art_jax.demo import tiny_clip
from art_jax.models import clip_text

P = jax.sharding.PartitionSpec

WORDS = ["a video of a person doing front flip.", "salto backward tucked"]
TEXTS = [
  "a video of a person doing front flip.",
  "salto",
  "salto backward tucked, zebra!",
  "",
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
  """Tokenizer files (and a tiny model we ignore here) from tiny_clip."""
  d = str(tmp_path_factory.mktemp("tok"))
  return tiny_clip.write_tiny_clip_checkpoint(
    d, words=WORDS, width=16, layers=1, heads=2, projection_dim=8
  )


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
  return transformers.CLIPTokenizer.from_pretrained(tokenizer_dir)


def _text_config(tokenizer, **overrides) -> transformers.CLIPTextConfig:
  kwargs = dict(
    vocab_size=len(tokenizer),
    hidden_size=48,
    intermediate_size=80,
    num_hidden_layers=3,
    num_attention_heads=3,
    max_position_embeddings=24,
    projection_dim=20,
    hidden_act="quick_gelu",
    bos_token_id=tokenizer.bos_token_id,
    eos_token_id=tokenizer.eos_token_id,
    pad_token_id=tokenizer.pad_token_id,
  )
  kwargs.update(overrides)
  return transformers.CLIPTextConfig(**kwargs)


def _perturb(model: torch.nn.Module, seed: int) -> None:
  # HF init zeroes biases and sets LN to identity; noise on every tensor
  # makes a dropped or transposed parameter visible.
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn(p.shape, generator=gen))


def _save_text_model(path, config, seed=0):
  torch.manual_seed(seed)
  model = transformers.CLIPTextModelWithProjection(config).eval()
  _perturb(model, seed)
  model.save_pretrained(str(path))
  return model


@pytest.fixture(scope="module")
def hf_text_dir(tmp_path_factory, tokenizer):
  path = tmp_path_factory.mktemp("hf_text")
  model = _save_text_model(path, _text_config(tokenizer))
  return str(path), model


def _torch_embeds(model, input_ids, attention_mask=None):
  with torch.no_grad():
    out = model(
      input_ids=torch.as_tensor(np.asarray(input_ids), dtype=torch.long),
      attention_mask=None
      if attention_mask is None
      else torch.as_tensor(np.asarray(attention_mask)),
    )
  return out.text_embeds.numpy()


def _flax_embeds(module, params, input_ids, attention_mask=None):
  out = jax.jit(module.apply)({"params": params}, input_ids, attention_mask)
  return np.asarray(out["text_embeds"])


def test_checkpoint_is_safetensors(hf_text_dir):
  path, _ = hf_text_dir
  assert os.path.exists(os.path.join(path, "model.safetensors"))
  assert not os.path.exists(os.path.join(path, "pytorch_model.bin"))


@pytest.mark.parametrize("scan", [True, False])
def test_text_embeds_match_transformers(hf_text_dir, tokenizer, scan):
  path, model = hf_text_dir
  module, params, config = clip_text.load_clip_text(path, scan=scan)
  assert config["projection_dim"] == 20 and config["num_hidden_layers"] == 3
  tokens = tokenizer(TEXTS, padding=True, return_tensors="np")
  assert len(set(tokens["attention_mask"].sum(-1))) == len(TEXTS)
  ref = _torch_embeds(model, tokens["input_ids"], tokens["attention_mask"])
  got = _flax_embeds(
    module, params, tokens["input_ids"], tokens["attention_mask"]
  )
  assert got.shape == (len(TEXTS), 20)
  np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)
  # Padding sits after EOS and the mask is causal: the mask changes nothing.
  no_mask = _flax_embeds(module, params, tokens["input_ids"])
  np.testing.assert_allclose(no_mask, ref, atol=1e-5, rtol=1e-5)


def test_padding_to_max_length_matches(hf_text_dir, tokenizer):
  path, model = hf_text_dir
  module, params, _ = clip_text.load_clip_text(path)
  tokens = tokenizer(
    TEXTS, padding="max_length", max_length=24, return_tensors="np"
  )
  ref = _torch_embeds(model, tokens["input_ids"], tokens["attention_mask"])
  got = _flax_embeds(
    module, params, tokens["input_ids"], tokens["attention_mask"]
  )
  np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
  "eos_token_id,hidden_act", [(2, "gelu"), (None, "quick_gelu")]
)
def test_pooling_rule_matches_transformers(
  tmp_path, tokenizer, eos_token_id, hidden_act
):
  """Legacy eos_token_id == 2 pools at argmax(ids); else at the first EOS."""
  eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
  config = _text_config(
    tokenizer,
    eos_token_id=eos,
    hidden_act=hidden_act,
    num_hidden_layers=2,
  )
  model = _save_text_model(tmp_path, config, seed=1)
  module, params, _ = clip_text.load_clip_text(str(tmp_path))
  assert module.eos_token_id == eos and module.hidden_act == hidden_act
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 100, size=(4, 12))
  # EOS twice per row (as when pad == EOS), and a large id in front of it in
  # row 0, so the two rules point at different positions.
  ids[:, 7] = ids[:, 9] = eos
  ids[0, 3] = len(tokenizer) - 3
  ref = _torch_embeds(model, ids)
  got = _flax_embeds(module, params, ids)
  np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)


def test_full_clip_model_checkpoint_loads(tmp_path, tokenizer):
  config = transformers.CLIPConfig(
    text_config=_text_config(tokenizer).to_dict(),
    vision_config=dict(
      hidden_size=32,
      intermediate_size=64,
      num_hidden_layers=1,
      num_attention_heads=2,
      image_size=32,
      patch_size=16,
    ),
    projection_dim=20,
  )
  torch.manual_seed(2)
  model = transformers.CLIPModel(config).eval()
  _perturb(model, 2)
  model.save_pretrained(str(tmp_path))
  module, params, cfg = clip_text.load_clip_text(str(tmp_path))
  assert cfg["projection_dim"] == 20
  tokens = tokenizer(TEXTS, padding=True, return_tensors="pt")
  with torch.no_grad():
    pooled = model.text_model(**tokens).pooler_output
    ref = model.text_projection(pooled).numpy()
  got = _flax_embeds(
    module,
    params,
    tokens["input_ids"].numpy(),
    tokens["attention_mask"].numpy(),
  )
  np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)


def test_scan_and_loop_agree(hf_text_dir, tokenizer):
  path, _ = hf_text_dir
  ids = tokenizer(TEXTS, padding=True, return_tensors="np")["input_ids"]
  m_scan, p_scan, _ = clip_text.load_clip_text(path, scan=True)
  m_loop, p_loop, _ = clip_text.load_clip_text(path, scan=False)
  assert p_scan["layers"]["mlp"]["c_fc"]["kernel"].shape == (3, 48, 80)
  assert p_loop["layers_2"]["mlp"]["c_fc"]["kernel"].shape == (48, 80)
  np.testing.assert_allclose(
    _flax_embeds(m_scan, p_scan, ids),
    _flax_embeds(m_loop, p_loop, ids),
    atol=1e-6,
  )


def test_bf16_under_jit(hf_text_dir, tokenizer):
  path, _ = hf_text_dir
  ids = tokenizer(TEXTS, padding=True, return_tensors="np")["input_ids"]
  module, params, _ = clip_text.load_clip_text(path)
  ref = _flax_embeds(module, params, ids)
  module16 = module.clone(dtype=jnp.bfloat16)
  out = jax.jit(module16.apply)({"params": params}, ids)["text_embeds"]
  assert out.dtype == jnp.bfloat16
  out = np.asarray(out, np.float32)
  cos = np.sum(out * ref, -1) / (
    np.linalg.norm(out, axis=-1) * np.linalg.norm(ref, axis=-1)
  )
  assert np.all(cos > 0.99), cos


def test_remat_gradients_match(hf_text_dir, tokenizer):
  path, _ = hf_text_dir
  ids = tokenizer(TEXTS, padding=True, return_tensors="np")["input_ids"]
  module, params, _ = clip_text.load_clip_text(path)

  def grads(m):
    loss = lambda p: jnp.sum(m.apply({"params": p}, ids)["text_embeds"] ** 2)
    return jax.jit(jax.grad(loss))(params)

  plain = grads(module)
  remat = grads(module.clone(remat_policy="nothing_saveable"))
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
    plain,
    remat,
  )
  with pytest.raises(ValueError, match="unknown remat policy"):
    jax.eval_shape(
      module.clone(remat_policy="bogus").init, jax.random.key(0), ids
    )


@pytest.mark.parametrize("scan", [True, False])
def test_every_param_has_logical_axes(scan):
  module = clip_text.CLIPTextTransformer(
    vocab_size=50,
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=8,
    projection_dim=12,
    scan=scan,
  )
  boxed = jax.eval_shape(
    module.init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32)
  )
  leaves = jax.tree.leaves(
    boxed["params"], is_leaf=lambda x: isinstance(x, nn.Partitioned)
  )
  assert leaves
  for leaf in leaves:
    assert isinstance(leaf, nn.LogicallyPartitioned), leaf
    assert len(leaf.names) == len(leaf.value.shape)
  specs = nn.get_partition_spec(boxed)["params"]
  if scan:
    assert specs["layers"]["mlp"]["c_fc"]["kernel"] == P(
      "layers", "embed", "mlp"
    )
  assert specs["token_embedding"] == P("vocab", "embed")
  assert specs["text_projection"]["kernel"] == P("embed", "text_embed")


def test_missing_and_unexpected_keys_are_listed(hf_text_dir, tmp_path):
  path, _ = hf_text_dir
  sd = safetensors.numpy.load_file(os.path.join(path, "model.safetensors"))
  config = clip_text.read_text_config(path)
  gone = "text_model.encoder.layers.1.mlp.fc2.bias"
  broken = {k: v for k, v in sd.items() if k != gone}
  broken["text_model.encoder.layers.9.extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(ValueError) as err:
    clip_text.params_from_hf(broken, config)
  msg = str(err.value)
  assert "missing keys (1)" in msg and gone in msg
  assert "unexpected keys (1)" in msg and "layers.9.extra.weight" in msg

  # The same through a checkpoint directory, and a shape mismatch.
  for name in ("config.json",):
    with open(os.path.join(path, name)) as src:
      (tmp_path / name).write_text(src.read())
  del sd["text_projection.weight"]
  sd["text_model.final_layer_norm.bias"] = np.zeros(7, np.float32)
  safetensors.numpy.save_file(sd, str(tmp_path / "model.safetensors"))
  with pytest.raises(ValueError, match="text_projection.weight") as err:
    clip_text.load_clip_text(str(tmp_path))
  assert "final_layer_norm.bias: (7,)" in str(err.value)


def test_missing_files_raise(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    clip_text.load_clip_text(str(tmp_path))
  (tmp_path / "config.json").write_text('{"model_type": "clip_text_model"}')
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    clip_text.load_clip_text(str(tmp_path))
  (tmp_path / "config.json").write_text('{"model_type": "bert"}')
  with pytest.raises(ValueError, match="model_type"):
    clip_text.read_text_config(str(tmp_path))


def test_sharded_and_pytorch_bin_checkpoints(hf_text_dir, tmp_path):
  """model.safetensors.index.json shards and a legacy pytorch_model.bin."""
  path, model = hf_text_dir
  _, want, _ = clip_text.load_clip_text(path)
  sd = safetensors.numpy.load_file(os.path.join(path, "model.safetensors"))
  with open(os.path.join(path, "config.json")) as f:
    config_json = f.read()
  keys = sorted(sd)
  os.makedirs(tmp_path / "shards")
  weight_map = {}
  for i, part in enumerate((keys[::2], keys[1::2])):
    name = f"model-0000{i + 1}-of-00002.safetensors"
    shard = {k: sd[k] for k in part}
    safetensors.numpy.save_file(shard, str(tmp_path / "shards" / name))
    weight_map.update(dict.fromkeys(part, name))
  (tmp_path / "shards" / "config.json").write_text(config_json)
  (tmp_path / "shards" / "model.safetensors.index.json").write_text(
    json.dumps({"metadata": {}, "weight_map": weight_map})
  )
  os.makedirs(tmp_path / "bin")
  torch.save(model.state_dict(), str(tmp_path / "bin" / "pytorch_model.bin"))
  (tmp_path / "bin" / "config.json").write_text(config_json)
  for sub in ("shards", "bin"):
    _, got, _ = clip_text.load_clip_text(str(tmp_path / sub))
    jax.tree.map(np.testing.assert_array_equal, got, want)
