"""CLIP text transformer in Flax, loading Hugging Face CLIP checkpoints.

Computes what transformers' `CLIPTextModelWithProjection` calls
`text_embeds`: token + learned position embedding, `num_hidden_layers`
pre-LN causal blocks, a final LayerNorm, the hidden state at the EOS token
and a bias-free projection to the joint space D.

Shapes: input_ids (B, L) int with L <= max_position_embeddings; hidden
states (B, L, C) with C = hidden_size; text_embeds (B, D) with
D = projection_dim. Field names follow `CLIPTextConfig`, so
`CLIPTextTransformer(**config)` takes the dict that `load_clip_text` returns.

Checkpoints are read with `safetensors.numpy`; torch is only imported for a
legacy `pytorch_model.bin` (and then with `weights_only=True`).
"""

import functools
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import safetensors

from art_jax import sharding as sh
from art_jax.models import layers

Dtype = Any
Params = dict[str, Any]

# CLIPTextConfig's defaults: old hub configs omit fields equal to them.
TEXT_CONFIG_DEFAULTS: dict[str, Any] = {
  "vocab_size": 49408,
  "hidden_size": 512,
  "intermediate_size": 2048,
  "num_hidden_layers": 12,
  "num_attention_heads": 8,
  "max_position_embeddings": 77,
  "hidden_act": "quick_gelu",
  "layer_norm_eps": 1e-5,
  "eos_token_id": 49407,
  "projection_dim": 512,
}

# transformers' ACT2FN names -> jax. "gelu" there is the exact (erf) GELU.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  "quick_gelu": layers.quick_gelu,
  "gelu": functools.partial(jax.nn.gelu, approximate=False),
  "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
  "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
}

# Checkpoint keys of a full CLIPModel that the text tower does not use.
_OTHER_TOWER_PREFIXES = ("vision_model.", "visual_projection.", "logit_scale")
# Non-persistent buffer that old checkpoints still carry.
_IGNORED_KEYS = ("text_model.embeddings.position_ids",)


class CLIPTextBlock(nn.Module):
  """One pre-LN block: x + attn(ln1(x)); x + mlp(ln2(x)). (B, L, C) -> same.

  Written as a scan body: `(carry, mask) -> (carry, None)`.
  """

  num_attention_heads: int
  intermediate_size: int
  hidden_act: str = "quick_gelu"
  layer_norm_eps: float = 1e-5
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> tuple[jax.Array, None]:
    ln = functools.partial(
      layers.LayerNorm,
      epsilon=self.layer_norm_eps,
      param_dtype=self.param_dtype,
    )
    y = ln(name="layer_norm1")(x)
    y, _ = layers.MultiHeadAttention(
      self.num_attention_heads,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="self_attn",
    )(y, mask=mask)
    x = x + y
    y = ln(name="layer_norm2")(x)
    y = layers.Mlp(
      self.intermediate_size,
      activation=ACTIVATIONS[self.hidden_act],
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="mlp",
    )(y)
    x = x + y
    x = nn.with_logical_constraint(x, (sh.BATCH, sh.LENGTH, sh.EMBED))
    return x, None


class CLIPTextTransformer(nn.Module):
  """CLIP text tower with projection (CLIPTextModelWithProjection).

  Attributes:
    eos_token_id: pooling token. The legacy value 2 (configs written before
      transformers PR #24773) pools at argmax(input_ids) as OpenAI's CLIP
      does, since EOS has the highest id there; any other value pools at its
      first occurrence (the pad token may equal EOS).
    scan: stack the blocks under nn.scan (params get a leading `layers`
      axis) or apply them in a Python loop (`layers_{i}`).
    remat_policy: 'none' or a `jax.checkpoint_policies` name.
  """

  vocab_size: int = 49408
  hidden_size: int = 512
  intermediate_size: int = 2048
  num_hidden_layers: int = 12
  num_attention_heads: int = 8
  max_position_embeddings: int = 77
  projection_dim: int = 512
  hidden_act: str = "quick_gelu"
  layer_norm_eps: float = 1e-5
  eos_token_id: int = 49407
  scan: bool = True
  remat_policy: str = "none"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
    self,
    input_ids: jax.Array,
    attention_mask: jax.Array | None = None,
  ) -> dict[str, jax.Array]:
    """input_ids (B, L), attention_mask (B, L) 1 for real tokens.

    Returns a dict: text_embeds (B, D), pooled (B, C) the final-LN state at
    EOS, last_hidden_state (B, L, C).
    """
    if self.hidden_act not in ACTIVATIONS:
      raise ValueError(
        f"hidden_act {self.hidden_act!r} is not one of {sorted(ACTIVATIONS)}"
      )
    length = input_ids.shape[-1]
    if length > self.max_position_embeddings:
      raise ValueError(
        f"sequence length {length} > max_position_embeddings="
        f"{self.max_position_embeddings}"
      )
    embed_init = nn.initializers.normal(0.02)
    token_embedding = self.param(
      "token_embedding",
      nn.with_logical_partitioning(embed_init, (sh.VOCAB, sh.EMBED)),
      (self.vocab_size, self.hidden_size),
      self.param_dtype,
    )
    position_embedding = self.param(
      "position_embedding",
      nn.with_logical_partitioning(
        nn.initializers.normal(0.01), (sh.LENGTH, sh.EMBED)
      ),
      (self.max_position_embeddings, self.hidden_size),
      self.param_dtype,
    )
    x = jnp.take(token_embedding, input_ids, axis=0)
    x = (x + position_embedding[:length]).astype(self.dtype)
    x = nn.with_logical_constraint(x, (sh.BATCH, sh.LENGTH, sh.EMBED))

    # (1, 1, L, L) causal, and (B, 1, 1, L) over keys for padding: True where
    # attending is allowed, broadcast over heads as attention_weights expects.
    mask = jnp.tril(jnp.ones((length, length), bool))[None, None]
    if attention_mask is not None:
      mask = mask & attention_mask.astype(bool)[:, None, None, :]

    block_kwargs = dict(
      num_attention_heads=self.num_attention_heads,
      intermediate_size=self.intermediate_size,
      hidden_act=self.hidden_act,
      layer_norm_eps=self.layer_norm_eps,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
    )
    if self.scan:
      stack = layers.remat_scan(
        CLIPTextBlock,
        self.remat_policy,
        self.num_hidden_layers,
        split_rngs=("params",),
      )
      x, _ = stack(**block_kwargs, name="layers")(x, mask)
    else:
      block = layers.remat_scan(CLIPTextBlock, self.remat_policy)
      for i in range(self.num_hidden_layers):
        x, _ = block(**block_kwargs, name=f"layers_{i}")(x, mask)

    x = layers.LayerNorm(
      epsilon=self.layer_norm_eps,
      param_dtype=self.param_dtype,
      name="final_layer_norm",
    )(x)
    if self.eos_token_id == 2:
      eos_index = jnp.argmax(input_ids, axis=-1)
    else:
      # argmax returns the first maximum, i.e. the first EOS.
      eos_index = jnp.argmax(input_ids == self.eos_token_id, axis=-1)
    pooled = jnp.take_along_axis(x, eos_index[:, None, None], axis=1)[:, 0]
    text_embeds = layers.dense(
      self.projection_dim,
      (sh.EMBED, sh.TEXT_EMBED),
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      use_bias=False,
      name="text_projection",
    )(pooled)
    return {
      "text_embeds": text_embeds,
      "pooled": pooled,
      "last_hidden_state": x,
    }


# ------------------------------------------------------------------------
# Hugging Face checkpoints.
# ------------------------------------------------------------------------


def read_text_config(checkpoint_dir: str) -> dict[str, Any]:
  """config.json (CLIPModel or CLIP text model) -> CLIPTextTransformer kwargs.

  A full CLIPModel nests the tower under `text_config` and keeps
  `projection_dim` at the top level.
  """
  path = os.path.join(checkpoint_dir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no config.json in {checkpoint_dir}")
  with open(path) as f:
    raw = json.load(f)
  model_type = raw.get("model_type")
  if model_type == "clip":
    text = dict(raw.get("text_config") or {})
    text["projection_dim"] = raw.get(
      "projection_dim", TEXT_CONFIG_DEFAULTS["projection_dim"]
    )
  elif model_type in ("clip_text_model", None):
    text = raw
  else:
    raise ValueError(
      f"{path}: model_type {model_type!r} is not 'clip' or 'clip_text_model'"
    )
  config = {k: text.get(k, v) for k, v in TEXT_CONFIG_DEFAULTS.items()}
  # None in a config means "the default" for these fields.
  for key in ("layer_norm_eps", "projection_dim", "eos_token_id"):
    if config[key] is None:
      config[key] = TEXT_CONFIG_DEFAULTS[key]
  if not isinstance(config["eos_token_id"], int):
    raise ValueError(
      f"{path}: eos_token_id must be one int, got {config['eos_token_id']!r}"
    )
  if config["hidden_act"] not in ACTIVATIONS:
    raise ValueError(
      f"{path}: hidden_act {config['hidden_act']!r} is not supported "
      f"({sorted(ACTIVATIONS)})"
    )
  return config


def read_state_dict(checkpoint_dir: str) -> dict[str, np.ndarray]:
  """Text-tower tensors of a HF checkpoint dir as float32 numpy arrays.

  Reads model.safetensors (or a sharded model.safetensors.index.json) key by
  key, so a full CLIPModel's vision tower is never loaded. Falls back to
  pytorch_model.bin through torch (weights_only=True) if that is all there
  is.
  """
  wanted = lambda k: not k.startswith(_OTHER_TOWER_PREFIXES)
  single = os.path.join(checkpoint_dir, "model.safetensors")
  index = single + ".index.json"
  if os.path.exists(single) or os.path.exists(index):
    if os.path.exists(single):
      files = [single]
    else:
      with open(index) as f:
        weight_map = json.load(f)["weight_map"]
      files = sorted(
        {os.path.join(checkpoint_dir, v) for v in weight_map.values()}
      )
    state = {}
    for file in files:
      with safetensors.safe_open(file, framework="numpy") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
          if wanted(key):
            state[key] = np.asarray(f.get_tensor(key), np.float32)
    return state
  bin_path = os.path.join(checkpoint_dir, "pytorch_model.bin")
  if os.path.exists(bin_path):
    # Optional dependency, only for legacy checkpoints.
    import torch

    sd = torch.load(bin_path, map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in sd.items() if wanted(k)}
  raise FileNotFoundError(
    f"no model.safetensors, model.safetensors.index.json or "
    f"pytorch_model.bin in {checkpoint_dir}"
  )


def _format_keys(keys: list[str], limit: int = 20) -> str:
  shown = ", ".join(keys[:limit])
  more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
  return f"{shown}{more}"


def params_from_hf(
  state_dict: Mapping[str, np.ndarray],
  config: Mapping[str, Any],
  *,
  scan: bool = True,
) -> Params:
  """HF CLIP text state dict -> CLIPTextTransformer params (numpy, float32).

  Keys may lack the `text_model.` prefix (a bare CLIPTextModel); the
  projection must be present. Raises ValueError listing missing and
  unexpected keys, and shape mismatches.
  """
  sd = {k: v for k, v in state_dict.items() if k not in _IGNORED_KEYS}
  sd = {k: v for k, v in sd.items() if not k.startswith(_OTHER_TOWER_PREFIXES)}
  if not any(k.startswith("text_model.") for k in sd):
    sd = {
      (k if k == "text_projection.weight" else f"text_model.{k}"): v
      for k, v in sd.items()
    }
  c = config["hidden_size"]
  h = config["num_attention_heads"]
  layers_n = config["num_hidden_layers"]
  used: set[str] = set()
  missing: list[str] = []
  bad_shape: list[str] = []

  def get(key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if key not in sd:
      missing.append(key)
      return None
    used.add(key)
    value = np.asarray(sd[key], np.float32)
    if value.shape != shape:
      bad_shape.append(f"{key}: {value.shape} != expected {shape}")
      return None
    return value

  def linear(prefix: str, n_in: int, n_out: int) -> dict[str, Any]:
    w = get(f"{prefix}.weight", (n_out, n_in))
    b = get(f"{prefix}.bias", (n_out,))
    return {"kernel": None if w is None else w.T, "bias": b}

  def heads_in(prefix: str) -> dict[str, Any]:
    p = linear(prefix, c, c)
    if p["kernel"] is not None:
      p["kernel"] = p["kernel"].reshape(c, h, c // h)
    if p["bias"] is not None:
      p["bias"] = p["bias"].reshape(h, c // h)
    return p

  def heads_out(prefix: str) -> dict[str, Any]:
    p = linear(prefix, c, c)
    if p["kernel"] is not None:
      p["kernel"] = p["kernel"].reshape(h, c // h, c)
    return p

  def layer_norm(prefix: str) -> dict[str, Any]:
    return {
      "ln": {
        "scale": get(f"{prefix}.weight", (c,)),
        "bias": get(f"{prefix}.bias", (c,)),
      }
    }

  tm = "text_model"
  mlp = config["intermediate_size"]
  blocks = []
  for i in range(layers_n):
    p = f"{tm}.encoder.layers.{i}"
    blocks.append(
      {
        "layer_norm1": layer_norm(f"{p}.layer_norm1"),
        "self_attn": {
          "query": heads_in(f"{p}.self_attn.q_proj"),
          "key": heads_in(f"{p}.self_attn.k_proj"),
          "value": heads_in(f"{p}.self_attn.v_proj"),
          "out": heads_out(f"{p}.self_attn.out_proj"),
        },
        "layer_norm2": layer_norm(f"{p}.layer_norm2"),
        "mlp": {
          "c_fc": linear(f"{p}.mlp.fc1", c, mlp),
          "c_proj": linear(f"{p}.mlp.fc2", mlp, c),
        },
      }
    )
  proj = get("text_projection.weight", (config["projection_dim"], c))
  params: Params = {
    "token_embedding": get(
      f"{tm}.embeddings.token_embedding.weight",
      (config["vocab_size"], c),
    ),
    "position_embedding": get(
      f"{tm}.embeddings.position_embedding.weight",
      (config["max_position_embeddings"], c),
    ),
    "final_layer_norm": layer_norm(f"{tm}.final_layer_norm"),
    "text_projection": {"kernel": None if proj is None else proj.T},
  }
  unexpected = sorted(set(sd) - used)
  if missing or unexpected or bad_shape:
    parts = []
    if missing:
      parts.append(f"missing keys ({len(missing)}): {_format_keys(missing)}")
    if unexpected:
      parts.append(
        f"unexpected keys ({len(unexpected)}): {_format_keys(unexpected)}"
      )
    if bad_shape:
      parts.append(f"shape mismatches: {_format_keys(bad_shape)}")
    raise ValueError("CLIP text checkpoint does not match: " + "; ".join(parts))
  if scan:
    params["layers"] = jax.tree.map(lambda *xs: np.stack(xs), *blocks)
  else:
    params.update({f"layers_{i}": b for i, b in enumerate(blocks)})
  return params


def params_to_hf(params: Params) -> dict[str, np.ndarray]:
  """CLIPTextTransformer params (scan or loop layout) -> the Hugging Face
  CLIPTextModelWithProjection state dict, float32 numpy: the inverse of
  `params_from_hf`."""
  p = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
  if "layers" in p:
    n = p["layers"]["mlp"]["c_fc"]["kernel"].shape[0]
    blocks = [jax.tree.map(lambda x, i=i: x[i], p["layers"]) for i in range(n)]
  else:
    n = sum(k.startswith("layers_") for k in p)
    blocks = [p[f"layers_{i}"] for i in range(n)]
  tm = "text_model"
  sd = {
    f"{tm}.embeddings.token_embedding.weight": p["token_embedding"],
    f"{tm}.embeddings.position_embedding.weight": p["position_embedding"],
    f"{tm}.final_layer_norm.weight": p["final_layer_norm"]["ln"]["scale"],
    f"{tm}.final_layer_norm.bias": p["final_layer_norm"]["ln"]["bias"],
    "text_projection.weight": p["text_projection"]["kernel"].T,
  }
  for i, b in enumerate(blocks):
    pre = f"{tm}.encoder.layers.{i}"
    for hf, ours in (
      ("q_proj", "query"),
      ("k_proj", "key"),
      ("v_proj", "value"),
    ):
      kernel = b["self_attn"][ours]["kernel"]  # (C, H, C/H)
      sd[f"{pre}.self_attn.{hf}.weight"] = kernel.reshape(kernel.shape[0], -1).T
      sd[f"{pre}.self_attn.{hf}.bias"] = b["self_attn"][ours]["bias"].reshape(
        -1
      )
    out = b["self_attn"]["out"]["kernel"]  # (H, C/H, C)
    sd[f"{pre}.self_attn.out_proj.weight"] = out.reshape(-1, out.shape[-1]).T
    sd[f"{pre}.self_attn.out_proj.bias"] = b["self_attn"]["out"]["bias"]
    for ln in ("layer_norm1", "layer_norm2"):
      sd[f"{pre}.{ln}.weight"] = b[ln]["ln"]["scale"]
      sd[f"{pre}.{ln}.bias"] = b[ln]["ln"]["bias"]
    for hf, ours in (("fc1", "c_fc"), ("fc2", "c_proj")):
      sd[f"{pre}.mlp.{hf}.weight"] = b["mlp"][ours]["kernel"].T
      sd[f"{pre}.mlp.{hf}.bias"] = b["mlp"][ours]["bias"]
  return {k: np.ascontiguousarray(v) for k, v in sd.items()}


def load_clip_text(
  checkpoint_dir: str,
  *,
  scan: bool = True,
  remat_policy: str = "none",
  dtype: Dtype = jnp.float32,
  param_dtype: Dtype = jnp.float32,
) -> tuple[CLIPTextTransformer, Params, dict[str, Any]]:
  """Loads a HF CLIP checkpoint directory's text tower.

  Returns (module, params, config): params are plain arrays in
  `param_dtype` laid out as `module.init` would make them (checked against
  its abstract init), config the CLIPTextTransformer kwargs read from
  config.json.
  """
  config = read_text_config(checkpoint_dir)
  params = params_from_hf(read_state_dict(checkpoint_dir), config, scan=scan)
  module = CLIPTextTransformer(
    **config,
    scan=scan,
    remat_policy=remat_policy,
    dtype=dtype,
    param_dtype=param_dtype,
  )
  ids = jax.ShapeDtypeStruct((1, config["max_position_embeddings"]), jnp.int32)
  abstract = jax.eval_shape(module.init, jax.random.key(0), ids)
  abstract = nn.meta.unbox(abstract["params"])
  want = {
    jax.tree_util.keystr(p): x.shape
    for p, x in jax.tree_util.tree_leaves_with_path(abstract)
  }
  got = {
    jax.tree_util.keystr(p): x.shape
    for p, x in jax.tree_util.tree_leaves_with_path(params)
  }
  if want != got:
    # A converter bug, not a user error: the table above drifted.
    diff = sorted(set(want.items()) ^ set(got.items()))
    raise AssertionError(f"converted params differ from init: {diff[:20]}")
  params = jax.tree.map(lambda x: jnp.asarray(x, param_dtype), params)
  return module, params, config
