"""Weight import for UniFormerV2 and the params files a config can init_from.

Sources (`load_uniformerv2` detects which one it is given):
  * official UniFormerV2 checkpoints (OpenGVLab .pth / pyslowfast .pyth):
    keys as in slowfast/models/uniformerv2_model.py, optionally prefixed by
    `module.` / `backbone.`, optionally wrapped in `model_state` / `state_dict`
    / `model`. Every key must map and every parameter must be present.
  * mmaction2 UniFormerV2 recognizers (download.openmmlab.com .pth):
    `{'state_dict': {'backbone.…', 'cls_head.fc_cls.…'}, 'meta': …}`, as in
    mmaction/models/backbones/uniformerv2.py and heads/uniformer_head.py.
    The backbone keys are the official ones except the final LayerNorm,
    `transformer.norm` (official `transformer.proj.0`, ours `proj_0`: the
    same LayerNorm on the balanced class token), and the classifier lives
    in the head, `cls_head.fc_cls` (official `transformer.proj.2`, ours
    `proj_2`); the head's dropout is `cls_dropout`. Nothing is dropped.
    Kinetics-710 heads take a channel map (`select_head_channels`).
  * OpenAI CLIP visual state dicts (`conv1.weight` 2-D (C, 3, p, p),
    `transformer.resblocks.i.attn.in_proj_weight`, ...; `visual.` prefixes
    are stripped, `ln_post` / `proj` and text-tower keys are ignored),
    including the visual extracts OpenGVLab and mmaction2 publish (the same
    keys without `ln_post` / `proj`).
  * Hugging Face CLIP vision checkpoints (a directory with config.json and
    model.safetensors, read with safetensors.numpy; no torch).
  CLIP sources inflate the 2-D patch kernel to 3-D (centre frame, zeros
  elsewhere: the official `inflate_weight(center=True)`) and take everything
  UniFormerV2 adds (Local MHRA, DPE, Extractors, head) from a fresh init.

Conversion goes through the `scan=False` ("loop") parameter layout, whose
names mirror the official ones (`resblocks_3/attn/query/kernel`), and is
stacked into the `scan=True` layout with `loop_to_scan` when the model scans.

Params file format (`save_params_file` / `load_params_file`): one msgpack
file (flax.serialization) holding {"variables": {"params", "batch_stats"},
"meta": JSON string with the format ("art_jax.uniformerv2/1" or
"art_jax.tea/1"), the model kwargs, the layout, the source and the arrays
the conversion initialised}. It is written by `python -m
art_jax.tools.convert_weights` and read by a training config's `init_from`
(`models.backbones.load_variables`); `load_params_file(path, model)`
converts the layout to the model's.
"""

import dataclasses
import functools
import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from art_jax import state as state_lib
from art_jax.models import uniformerv2 as uv2

Variables = dict[str, Any]
Path = tuple[str, ...]

_WRAPPERS = ("model_state", "state_dict", "model")
# Formats that hold a whole UniFormerV2 (every key must map, none missing).
_FULL_FORMATS = ("uniformerv2", "mmaction2")
# mmaction2's names for the official head (see the module docstring).
_MMACTION2_KEYS = ("transformer.norm.", "cls_head.")
# Classifier rows: official / mmaction2 names.
_HEAD_KEYS = (
  "transformer.proj.2.weight",
  "transformer.proj.2.bias",
  "cls_head.fc_cls.weight",
  "cls_head.fc_cls.bias",
)
_PREFIXES = ("module.", "backbone.")
# CLIP visual keys UniFormerV2 has no use for.
_CLIP_IGNORED = re.compile(r"^(ln_post\.(weight|bias)|proj)$")
# CLIPVisionModel.save_pretrained (transformers 5) drops `vision_model.`.
_HF_BARE = (
  "embeddings.",
  "encoder.layers.",
  "pre_layrnorm.",
  "post_layernorm.",
)
_HF_IGNORED = re.compile(
  r"^(vision_model\.post_layernorm\..*|vision_model\.embeddings\."
  r"position_ids|visual_projection\..*|text_model\..*|text_projection\..*|"
  r"logit_scale)$"
)


@dataclasses.dataclass
class LoadReport:
  """What a load did. Paths are Flax paths ("params/conv1/kernel")."""

  source: str
  loaded: list[str] = dataclasses.field(default_factory=list)
  initialised: list[str] = dataclasses.field(default_factory=list)
  ignored: list[str] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)
  # Loaded arrays the params file marks as initialised by its conversion,
  # not pretrained (TEA's ME, MTA and fc from an ImageNet Res2Net).
  initialised_in_file: list[str] = dataclasses.field(default_factory=list)

  def as_json(self) -> dict[str, list[str]]:
    """What `init_from_report.json` holds: "reinitialised" lists the
    model's leaves that kept their own initialisation."""
    return {
      "loaded": self.loaded,
      "reinitialised": self.initialised,
      "ignored": self.ignored,
      "initialised_in_file": self.initialised_in_file,
    }

  def __str__(self) -> str:
    lines = [
      f"source format: {self.source}",
      f"loaded: {len(self.loaded)} arrays",
      f"initialised fresh: {len(self.initialised)} arrays",
    ]
    lines += [f"  {p}" for p in self.initialised]
    lines.append(f"ignored source keys: {len(self.ignored)}")
    lines += [f"  {k}" for k in self.ignored]
    lines += [f"note: {n}" for n in self.notes]
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# Reading sources.


def strip_prefixes(key: str, prefixes: Sequence[str]) -> str:
  """`key` without any run of the wrapper `prefixes` ('module.', ...)."""
  changed = True
  while changed:
    changed = False
    for prefix in prefixes:
      if key.startswith(prefix):
        key, changed = key[len(prefix) :], True
  return key


def unwrap_state_dict(obj: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Unwraps checkpoint containers and strips `module.` / `backbone.`."""
  while isinstance(obj, Mapping):
    inner = [w for w in _WRAPPERS if isinstance(obj.get(w), Mapping)]
    if not inner:
      break
    obj = obj[inner[0]]
  out = {}
  for key, value in obj.items():
    key = strip_prefixes(key, _PREFIXES)
    if key.endswith("num_batches_tracked"):
      continue  # BatchNorm step counter: no Flax counterpart.
    out[key] = _to_numpy(value)
  return out


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, "detach"):  # torch.Tensor, without importing torch
    value = value.detach().cpu()
    if str(value.dtype) == "torch.bfloat16":
      value = value.float()
    value = value.numpy()
  return np.asarray(value)


def read_torch_file(path: str) -> dict[str, np.ndarray]:
  """.pth / .pyth / .pt -> numpy state dict (torch.load, weights_only)."""
  import torch  # only needed for PyTorch files

  obj = torch.load(path, map_location="cpu", weights_only=True)
  return unwrap_state_dict(obj)


def read_hf_clip(path: str) -> dict[str, np.ndarray]:
  """A Hugging Face CLIP directory (config.json + model.safetensors)."""
  from safetensors.numpy import load_file

  files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
  if not files:
    raise FileNotFoundError(f"no *.safetensors file in {path}")
  state = {}
  for f in files:
    state.update(load_file(os.path.join(path, f)))
  return state


def read_source(path: str) -> dict[str, np.ndarray]:
  """Any supported source file or directory -> flat numpy state dict."""
  if os.path.isdir(path):
    return read_hf_clip(path)
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file

    return unwrap_state_dict(load_file(path))
  if path.endswith(".npz"):
    with np.load(path) as f:
      return unwrap_state_dict(dict(f))
  return read_torch_file(path)


def detect_format(state: Mapping[str, np.ndarray]) -> str:
  """'hf_clip', 'uniformerv2', 'mmaction2' or 'openai_clip'."""
  keys = list(state)
  if any(k.startswith(("vision_model.", *_HF_BARE)) for k in keys):
    return "hf_clip"
  if any(
    k.startswith(("transformer.dec.", "transformer.dpe."))
    or ".lmhra1." in k
    or k == "transformer.balance"
    for k in keys
  ):
    if any(k.startswith(_MMACTION2_KEYS) for k in keys):
      return "mmaction2"
    return "uniformerv2"
  if "conv1.weight" in state or "visual.conv1.weight" in state:
    return "openai_clip"
  raise ValueError(
    "unrecognised state dict: expected UniFormerV2 (official or mmaction2), "
    f"OpenAI CLIP visual or Hugging Face CLIP keys; first keys: {keys[:8]}"
  )


def read_channel_map(path: str) -> list[int]:
  """A JSON list of class indices (mmaction2's k710_channel_map/*.json)."""
  with open(path) as f:
    value = json.load(f)
  if not isinstance(value, list) or not all(
    isinstance(i, int) and not isinstance(i, bool) for i in value
  ):
    raise ValueError(f"{path}: expected a JSON list of class indices")
  return value


def select_head_channels(
  state: Mapping[str, Any], channel_map: Sequence[int]
) -> dict[str, np.ndarray]:
  """Keeps the classifier rows `channel_map` lists, in that order.

  What mmaction2's UniFormerHead does with `channel_map` to start a
  Kinetics-400/600/700 head from a Kinetics-710 checkpoint: output class i
  is the checkpoint's class channel_map[i]. Works on any wrapped state dict
  (official `transformer.proj.2.*` or mmaction2 `cls_head.fc_cls.*`);
  returns the unwrapped state dict.
  """
  out = unwrap_state_dict(state)
  idx = np.asarray(channel_map)
  keys = [k for k in _HEAD_KEYS if k in out]
  if not keys:
    raise ValueError("channel map given but the state dict has no classifier")
  if idx.ndim != 1 or not idx.size or idx.dtype.kind not in "iu":
    raise ValueError("channel map must be a non-empty list of class indices")
  n = out[keys[0]].shape[0]
  if idx.min() < 0 or idx.max() >= n:
    raise ValueError(
      f"channel map indices must be in [0, {n}): got [{idx.min()}, {idx.max()}]"
    )
  for k in keys:
    out[k] = out[k][idx]
  return out


def hf_clip_to_openai(
  state: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], list[str]]:
  """Renames HF CLIPVisionModel keys to OpenAI CLIP visual keys.

  Accepts CLIPModel keys (`vision_model.…`, text keys ignored) and bare
  CLIPVisionModel keys. Returns (renamed state, ignored HF keys); q/k/v
  projections are stacked into OpenAI's in_proj (3C, C) layout.
  """
  out, ignored, unknown = {}, [], []
  qkv: dict[tuple[str, str], dict[str, np.ndarray]] = {}
  simple = {
    "vision_model.embeddings.patch_embedding.weight": "conv1.weight",
    "vision_model.embeddings.class_embedding": "class_embedding",
    "vision_model.embeddings.position_embedding.weight": (
      "positional_embedding"
    ),
    "vision_model.pre_layrnorm.weight": "ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "ln_pre.bias",
  }
  sub = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
  }
  layer = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.(.+)\.(\w+)$")
  for key, value in state.items():
    if key.startswith(_HF_BARE):
      key = "vision_model." + key
    if key in simple:
      out[simple[key]] = value
      continue
    if _HF_IGNORED.match(key):
      ignored.append(key)
      continue
    m = layer.match(key)
    if m and m[2] in sub:
      out[f"transformer.resblocks.{m[1]}.{sub[m[2]]}.{m[3]}"] = value
    elif m and m[2] in (
      "self_attn.q_proj",
      "self_attn.k_proj",
      "self_attn.v_proj",
    ):
      qkv.setdefault((m[1], m[3]), {})[m[2][10]] = value
    else:
      unknown.append(key)
  if unknown:
    raise ValueError(f"unknown Hugging Face CLIP keys: {sorted(unknown)}")
  for (i, kind), parts in qkv.items():
    if set(parts) != {"q", "k", "v"}:
      raise ValueError(f"layer {i}: incomplete q/k/v {kind}: {sorted(parts)}")
    stacked = np.concatenate([parts["q"], parts["k"], parts["v"]], axis=0)
    out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = stacked
  return out, ignored


# ----------------------------------------------------------------------------
# Official names -> loop-layout Flax paths.


def inflate_weight(weight_2d: np.ndarray, time_dim: int) -> np.ndarray:
  """(C, 3, p, p) -> (C, 3, time_dim, p, p), weight on the centre frame."""
  c, i, kh, kw = weight_2d.shape
  out = np.zeros((c, i, time_dim, kh, kw), weight_2d.dtype)
  out[:, :, time_dim // 2] = weight_2d
  return out


def resample_positional_embedding(
  pos: np.ndarray, grid: tuple[int, int]
) -> np.ndarray:
  """(1 + g*g, C) -> (1 + gh*gw, C): bilinear resize of the patch part."""
  n, c = pos.shape
  g = round((n - 1) ** 0.5)
  if g * g != n - 1:
    raise ValueError(f"positional embedding of {n - 1} patches is not square")
  patches = pos[1:].reshape(g, g, c).astype(np.float32)
  resized = jax.image.resize(patches, (*grid, c), "bilinear", antialias=False)
  resized = np.asarray(resized).reshape(-1, c).astype(pos.dtype)
  return np.concatenate([pos[:1], resized], axis=0)


def _attention_entries(prefix: Path, rest: str, w: np.ndarray, heads: int):
  """torch nn.MultiheadAttention tensors -> (collection, path, array)."""
  c = w.shape[-1] if rest != "in_proj_bias" else w.shape[0] // 3
  if heads <= 0 or c % heads:
    raise ValueError(f"{'/'.join(prefix)}: width {c} vs {heads} heads")
  k = c // heads
  names = ("query", "key", "value")
  if rest == "in_proj_weight":  # (3C, C) rows q | k | v, torch (out, in)
    return [
      ("params", (*prefix, n, "kernel"), p.T.reshape(c, heads, k))
      for n, p in zip(names, np.split(w, 3, axis=0))
    ]
  if rest == "in_proj_bias":
    return [
      ("params", (*prefix, n, "bias"), p.reshape(heads, k))
      for n, p in zip(names, np.split(w, 3))
    ]
  if rest == "out_proj.weight":
    return [("params", (*prefix, "out", "kernel"), w.T.reshape(heads, k, c))]
  if rest == "out_proj.bias":
    return [("params", (*prefix, "out", "bias"), w)]
  return None


def _linear(prefix: Path, rest: str, w: np.ndarray):
  if rest == "weight":
    return [("params", (*prefix, "kernel"), w.T)]
  if rest == "bias":
    return [("params", (*prefix, "bias"), w)]
  return None


def _layernorm(prefix: Path, rest: str, w: np.ndarray):
  name = {"weight": "scale", "bias": "bias"}.get(rest)
  return None if name is None else [("params", (*prefix, "ln", name), w)]


def _lmhra(prefix: Path, rest: str, w: np.ndarray):
  """Local MHRA `pos_embed.{0..3}.*` (Conv3d weights (out, in, k, 1, 1))."""
  m = re.fullmatch(r"pos_embed\.(\d)\.(\w+)", rest)
  if not m:
    return None
  idx, leaf = m[1], m[2]
  path = (*prefix, f"pos_embed_{idx}")
  if idx == "0":  # BatchNorm3d
    table = {
      "weight": ("params", "scale"),
      "bias": ("params", "bias"),
      "running_mean": ("batch_stats", "mean"),
      "running_var": ("batch_stats", "var"),
    }
    if leaf not in table:
      return None
    col, name = table[leaf]
    return [(col, (*path, name), w)]
  if leaf == "bias":
    return [("params", (*path, "bias"), w)]
  if leaf != "weight" or w.ndim != 5:
    return None
  if idx == "2":  # depthwise (C, 1, k, 1, 1) -> (k, C)
    return [("params", (*path, "kernel"), w[:, 0, :, 0, 0].T)]
  return [("params", (*path, "kernel"), w[:, :, 0, 0, 0].T)]


def _block_entries(prefix: Path, rest: str, w: np.ndarray, heads: int):
  head, _, tail = rest.partition(".")
  if head == "attn":
    return _attention_entries((*prefix, "attn"), tail, w, heads)
  if head in ("ln_1", "ln_2", "ln_3"):
    return _layernorm((*prefix, head), tail, w)
  if head == "mlp":
    sub, _, leaf = tail.partition(".")
    if sub in ("c_fc", "c_proj"):
      return _linear((*prefix, "mlp", sub), leaf, w)
    return None
  if head in ("lmhra1", "lmhra2"):
    return _lmhra((*prefix, head), tail, w)
  return None


def official_entries(
  key: str, w: np.ndarray, model: uv2.UniFormerV2
) -> list[tuple[str, Path, np.ndarray]] | None:
  """One official key -> [(collection, loop-layout path, array)] or None."""
  if key == "conv1.weight":
    return [("params", ("conv1", "kernel"), w)]  # transposed in _fit
  if key in ("class_embedding", "positional_embedding"):
    return [("params", (key,), w)]
  if key.startswith("ln_pre."):
    return _layernorm(("ln_pre",), key[7:], w)
  if key == "transformer.temporal_cls_token":
    return [("params", ("temporal_cls_token",), w.reshape(-1))]
  if key == "transformer.balance":
    return [("params", ("balance",), w)]
  if key.startswith("transformer.proj.0."):
    return _layernorm(("proj_0",), key[19:], w)
  if key.startswith("transformer.proj.2."):
    return _linear(("proj_2",), key[19:], w)
  if key.startswith("transformer.norm."):  # mmaction2's transformer.proj.0
    return _layernorm(("proj_0",), key[17:], w)
  if key.startswith("cls_head.fc_cls."):  # mmaction2's transformer.proj.2
    return _linear(("proj_2",), key[16:], w)
  m = re.fullmatch(r"transformer\.(resblocks|dpe|dec)\.(\d+)\.(.+)", key)
  if not m:
    return None
  kind, i, rest = m[1], m[2], m[3]
  if kind == "resblocks":
    return _block_entries((f"resblocks_{i}",), rest, w, model.heads)
  if kind == "dec":
    return _block_entries((f"dec_{i}",), rest, w, model.n_head)
  if rest == "weight" and w.ndim == 5:  # (C, 1, 3, 3, 3) -> (3, 3, 3, 1, C)
    return [("params", (f"dpe_{i}", "kernel"), w.transpose(2, 3, 4, 1, 0))]
  if rest == "bias":
    return [("params", (f"dpe_{i}", "bias"), w)]
  return None


# ----------------------------------------------------------------------------
# Layouts.


def _stack(trees: list[Any]) -> Any:
  return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def loop_to_scan(collection: dict, model: uv2.UniFormerV2) -> dict:
  """One collection ('params' or 'batch_stats') from loop to scan layout."""
  tree = dict(collection)
  j_of = {layer: j for j, layer in enumerate(model.return_list)}
  for a, b, is_global in uv2.layer_segments(model.layers, model.return_list):
    blocks = [tree.pop(f"resblocks_{i}", None) for i in range(a, b)]
    if not is_global:
      if all(x is not None for x in blocks):
        tree[f"resblocks_scan_{a}"] = _stack(blocks)
      continue
    group = {}
    if all(x is not None for x in blocks):
      group["resblock"] = _stack(blocks)
    for name in ("dpe", "dec"):
      parts = [tree.pop(f"{name}_{j_of[i]}", None) for i in range(a, b)]
      if all(x is not None for x in parts):
        group[name] = _stack(parts)
    if group:
      tree[f"uniblocks_scan_{a}"] = group
  return tree


def scan_to_loop(collection: dict, model: uv2.UniFormerV2) -> dict:
  """One collection from scan to loop layout (inverse of loop_to_scan)."""
  tree = dict(collection)
  j_of = {layer: j for j, layer in enumerate(model.return_list)}

  def unstack(stacked, n):
    return [
      jax.tree.map(lambda x, i=i: np.asarray(x)[i], stacked) for i in range(n)
    ]

  for a, b, is_global in uv2.layer_segments(model.layers, model.return_list):
    if not is_global:
      stacked = tree.pop(f"resblocks_scan_{a}", None)
      if stacked is not None:
        for i, x in zip(range(a, b), unstack(stacked, b - a)):
          tree[f"resblocks_{i}"] = x
      continue
    group = tree.pop(f"uniblocks_scan_{a}", {})
    for name, fmt in (
      ("resblock", "resblocks_{}"),
      ("dpe", "dpe_{}"),
      ("dec", "dec_{}"),
    ):
      if name in group:
        for i, x in zip(range(a, b), unstack(group[name], b - a)):
          tree[fmt.format(i if name == "resblock" else j_of[i])] = x
  return tree


def convert_layout(
  variables: Variables, model: uv2.UniFormerV2, to_scan: bool
) -> Variables:
  """Applies loop_to_scan / scan_to_loop to every collection."""
  fn = loop_to_scan if to_scan else scan_to_loop
  return {col: fn(dict(tree), model) for col, tree in variables.items()}


# ----------------------------------------------------------------------------
# Loading.


def _abstract_variables(model: uv2.UniFormerV2) -> Variables:
  """Shapes of the loop-layout variables (no allocation)."""
  loop = model.clone(scan=False)
  abstract = jax.eval_shape(
    functools.partial(loop.init, train=False),
    jax.random.key(0),
    _dummy_video(loop),
  )
  return nn.meta.unbox(dict(abstract))


def _dummy_video(model: uv2.UniFormerV2) -> jax.ShapeDtypeStruct:
  r = model.input_resolution
  t = 2 if model.temporal_downsample else 1
  return jnp.zeros((1, t, r, r, 3), jnp.float32)


def init_variables(model: uv2.UniFormerV2, rng: jax.Array) -> Variables:
  """A fresh, unboxed init of `model` (its own layout), as numpy."""
  variables = jax.jit(functools.partial(model.init, train=False))(
    rng, _dummy_video(model)
  )
  return jax.tree.map(np.asarray, nn.meta.unbox(dict(variables)))


def _flatten(tree: Mapping) -> dict[Path, Any]:
  return {
    tuple(str(k.key) for k in path): leaf
    for path, leaf in jax.tree_util.tree_leaves_with_path(
      tree, is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct)
    )
  }


def _fit(
  path: Path,
  value: np.ndarray,
  shape: tuple[int, ...],
  report: LoadReport,
) -> np.ndarray | None:
  """Adapts conv1 / positional_embedding layouts; None if shapes clash."""
  if path == ("params", "conv1", "kernel"):
    if value.ndim == 4:  # 2-D CLIP patch kernel -> 3-D, centre frame
      value = inflate_weight(value, shape[0])
      report.notes.append(f"inflated conv1 to {shape[0]} frames (centre)")
    if value.ndim == 5:  # torch (C, 3, t, p, p) -> flax (t, p, p, 3, C)
      value = value.transpose(2, 3, 4, 1, 0)
  if (
    path == ("params", "positional_embedding")
    and value.shape != shape
    and value.shape[1:] == shape[1:]
  ):
    g = round((shape[0] - 1) ** 0.5)
    value = resample_positional_embedding(value, (g, g))
    report.notes.append(f"resampled positional_embedding to {g}x{g}")
  return value if tuple(value.shape) == tuple(shape) else None


def load_uniformerv2(
  state_dict: Mapping[str, Any],
  model: uv2.UniFormerV2,
  *,
  rng: jax.Array | int = 0,
  allow_missing: bool = False,
) -> tuple[Variables, LoadReport]:
  """Any supported state dict -> (Flax variables of `model`, report).

  `state_dict`: official UniFormerV2, mmaction2 UniFormerV2, OpenAI CLIP
  visual or HF CLIP keys (numpy or torch arrays). Variables come in
  `model`'s layout (scan or loop), unboxed numpy in the model's param
  dtype. Missing parameters are an error for UniFormerV2 sources (official
  or mmaction2) unless `allow_missing`, and are taken from a fresh init
  with `rng` otherwise. Unknown source keys, shape mismatches and two keys
  for one parameter raise ValueError listing them.
  """
  model.check_config()
  state = unwrap_state_dict(state_dict)
  fmt = detect_format(state)
  report = LoadReport(source=fmt)
  if fmt == "hf_clip":
    state, report.ignored = hf_clip_to_openai(state)
  elif fmt == "openai_clip" and any(k.startswith("visual.") for k in state):
    report.ignored = [k for k in state if not k.startswith("visual.")]
    state = {k[7:]: v for k, v in state.items() if k.startswith("visual.")}
  elif fmt == "mmaction2":
    report.notes.append(
      "mmaction2 names: transformer.norm -> proj_0, cls_head.fc_cls -> proj_2"
    )

  target = _flatten(_abstract_variables(model))
  values: dict[Path, np.ndarray] = {}
  origin: dict[Path, str] = {}
  unknown, mismatched, duplicated = [], [], []
  for key, w in state.items():
    entries = official_entries(key, np.asarray(w), model)
    if entries is None:
      if fmt not in _FULL_FORMATS and _CLIP_IGNORED.match(key):
        report.ignored.append(key)
      else:
        unknown.append(f"{key} {tuple(np.shape(w))}")
      continue
    for col, path, value in entries:
      full = (col, *path)
      if full not in target:
        unknown.append(f"{key} -> {'/'.join(full)} (not in the model)")
        continue
      if full in origin:
        duplicated.append(f"{origin[full]} and {key} -> {'/'.join(full)}")
        continue
      origin[full] = key
      fitted = _fit(full, value, target[full].shape, report)
      if fitted is None:
        mismatched.append(
          f"{key}: {tuple(value.shape)} vs {'/'.join(full)} "
          f"{tuple(target[full].shape)}"
        )
      else:
        values[full] = fitted
  if unknown or mismatched or duplicated:
    msg = [f"cannot load {fmt} state dict into UniFormerV2"]
    if unknown:
      msg.append(f"unknown keys ({len(unknown)}): " + ", ".join(unknown))
    if mismatched:
      msg.append(
        f"shape mismatches ({len(mismatched)}): " + ", ".join(mismatched)
      )
    if duplicated:
      msg.append(
        f"two keys for one array ({len(duplicated)}): " + ", ".join(duplicated)
      )
    raise ValueError("\n".join(msg))

  missing = sorted(p for p in target if p not in values)
  if missing and fmt in _FULL_FORMATS and not allow_missing:
    raise ValueError(
      f"official checkpoint lacks {len(missing)} model arrays: "
      + ", ".join("/".join(p) for p in missing)
    )
  if missing:
    rng = jax.random.key(rng) if isinstance(rng, int) else rng
    fresh = _flatten(
      convert_layout(init_variables(model, rng), model, to_scan=False)
      if model.scan
      else init_variables(model, rng)
    )
    for p in missing:
      values[p] = fresh[p]
    report.initialised = ["/".join(p) for p in missing]
  report.loaded = sorted("/".join(p) for p in values if p not in missing)

  dtype = jnp.dtype(model.param_dtype)
  variables: Variables = {}
  for (col, *path), value in values.items():
    node = variables.setdefault(col, {})
    for name in path[:-1]:
      node = node.setdefault(name, {})
    cast = dtype if col == "params" else np.float32
    node[path[-1]] = np.asarray(value).astype(cast)
  variables.setdefault("batch_stats", {})
  if model.scan:
    variables = convert_layout(variables, model, to_scan=True)
  return variables, report


def uniformerv2_from_torch(
  state_dict: Mapping[str, Any],
  model: uv2.UniFormerV2 | None = None,
  *,
  rng: jax.Array | int = 0,
) -> Variables:
  """Official, mmaction2 (or CLIP) state dict -> variables for `model`.

  Returns {'params', 'batch_stats'}. With `model=None` the architecture is
  inferred from the state dict (`infer_model_kwargs`; head counts are
  guessed). See `load_uniformerv2` for the report.
  """
  if model is None:
    model = uv2.UniFormerV2(**infer_model_kwargs(state_dict))
  return load_uniformerv2(state_dict, model, rng=rng)[0]


def guess_heads(width: int) -> int:
  """Attention heads for `width`: the weights do not store them.

  CLIP's head width 64 where 64 divides `width` (B/16: 12, L/14: 16);
  otherwise the divisor of `width` whose head width is nearest 64 (48 -> 1,
  96 -> 2). Never 0.
  """
  if width <= 0:
    raise ValueError(f"width must be > 0, got {width}")
  divisors = [h for h in range(1, width + 1) if width % h == 0]
  return min(divisors, key=lambda h: (abs(width // h - 64), -h))


def infer_model_kwargs(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """UniFormerV2 kwargs read off a state dict.

  Head counts are not stored in weights: `guess_heads` assumes CLIP's head
  width 64 (B/16: 12 heads, L/14: 16) and warns where 64 does not divide
  the width. For CLIP sources the UniFormerV2 additions take the official
  preset values for that width; return_list is assumed to be the last
  n_layers layers (every official and mmaction2 config).
  """
  state = unwrap_state_dict(state_dict)
  fmt = detect_format(state)
  if fmt == "hf_clip":
    state, _ = hf_clip_to_openai(state)
  state = {k.removeprefix("visual."): v for k, v in state.items()}
  conv = state["conv1.weight"]
  width, p = conv.shape[0], conv.shape[-1]
  layers_ = 1 + max(
    int(m[1])
    for k in state
    if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))
  )
  grid = round((state["positional_embedding"].shape[0] - 1) ** 0.5)
  heads = guess_heads(width)
  if width % 64:
    warnings.warn(
      f"width {width}: head count not stored in the weights, assuming "
      f"heads=n_head={heads}; pass the model (or --set=heads=N "
      "--set=n_head=N) if it differs",
      stacklevel=2,
    )
  kw = dict(uv2.PRESETS["l14" if width >= 1024 else "b16"])
  kw.update(
    input_resolution=grid * p,
    patch_size=p,
    width=width,
    layers=layers_,
    heads=heads,
    n_dim=width,
    n_head=heads,
  )
  if fmt in _FULL_FORMATS:
    kt = conv.shape[2] if conv.ndim == 5 else 1
    n_layers = len(
      {k.split(".")[2] for k in state if k.startswith("transformer.dec.")}
    )
    reduce = [
      v for k, v in state.items() if k.endswith("lmhra1.pos_embed.1.weight")
    ]
    kw.update(
      temporal_downsample=kt > 1,
      kernel_size=kt if kt > 1 else 3,
      no_lmhra=not reduce,
      double_lmhra=any(".lmhra2." in k for k in state),
      n_layers=n_layers,
      return_list=tuple(range(layers_ - n_layers, layers_)),
      mlp_dropout=(0.5,) * n_layers,
    )
    head = state.get("transformer.proj.2.weight")
    if head is None:
      head = state.get("cls_head.fc_cls.weight")
    if head is not None:
      kw["num_classes"] = head.shape[0]
    if reduce:
      kw["dw_reduction"] = width / reduce[0].shape[0]
  else:
    n = min(kw["n_layers"], layers_)
    kw.update(
      n_layers=n,
      return_list=tuple(range(layers_ - n, layers_)),
      mlp_dropout=(0.5,) * n,
    )
  return kw


# ----------------------------------------------------------------------------
# Params files.


def save_params_file(
  path: str,
  variables: Variables,
  model: nn.Module,
  source: str = "",
  initialised: Sequence[str] = (),
) -> None:
  """Writes variables + metadata as one msgpack file (see module doc).

  `model` is a UniFormerV2 or a TEA (the format names which);
  `initialised` lists arrays the conversion did not take from `source`, in
  this file's layout (LoadReport.initialised of a TEA conversion), so that
  a run can report them.
  """
  kwargs = {
    f.name: getattr(model, f.name)
    for f in dataclasses.fields(model)
    if f.name not in ("parent", "name", "dtype", "param_dtype")
  }
  meta = {
    "format": f"art_jax.{type(model).__name__.lower()}/1",
    "layout": "scan" if getattr(model, "scan", False) else "loop",
    "model": json.loads(json.dumps(kwargs, default=list)),
    "source": source,
    "initialised": list(initialised),
  }
  payload = {
    "variables": jax.tree.map(np.asarray, variables),
    "meta": json.dumps(meta),
  }
  with open(path, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(payload))


def read_params_file(path: str) -> tuple[Variables, dict[str, Any]]:
  """-> (variables, metadata dict) as written by save_params_file."""
  with open(path, "rb") as f:
    payload = flax.serialization.msgpack_restore(f.read())
  return dict(payload["variables"]), json.loads(payload["meta"])


def load_params_file(
  path: str, model: uv2.UniFormerV2 | None = None
) -> Variables:
  """{'params', 'batch_stats'} from a params file, in `model`'s layout."""
  variables, meta = read_params_file(path)
  return fit_layout(variables, meta, model)


def fit_layout(
  variables: Variables, meta: Mapping[str, Any], model: nn.Module | None
) -> Variables:
  """A params file's variables in `model`'s layer layout: UniFormerV2's
  scanned or looped stacks are converted; TEA has one layout."""
  scan = getattr(model, "scan", None)
  if scan is not None and (meta["layout"] == "scan") != scan:
    variables = convert_layout(variables, model, to_scan=scan)
  return variables


def params_file_module(meta: Mapping[str, Any]) -> str:
  """The lowercased module name a params file's format names
  ("uniformerv2", "tea"; `save_params_file`)."""
  return meta.get("format", "").split("/")[0].removeprefix("art_jax.")


def load_backbone_file(
  path: str, backbone: nn.Module
) -> tuple[Variables, dict[str, Any]]:
  """(variables, metadata) of a params file, in the layout of the unbound
  `backbone` module; ValueError if the file holds another module (a TEA
  file for a UniFormerV2, say) rather than loading nothing."""
  variables, meta = read_params_file(path)
  got, want = params_file_module(meta), type(backbone).__name__.lower()
  if got != want:
    raise ValueError(
      f"init_from.path={path} holds a {got} params file but "
      f"model.backbone_kind={want!r}: convert weights for this backbone "
      "(python -m art_jax.tools.convert_weights)"
    )
  return fit_layout(variables, meta, backbone), meta


# ----------------------------------------------------------------------------
# Pretrained backbones into a train state (config `init_from`).

# Backbone leaves expected to differ from a pretrained file: the classifier
# (another class count, or a pose-regression head).
CLASSIFIER_PREFIX = f"{uv2.CLASSIFIER}/"


def load_pretrained(
  state: state_lib.TrainState,
  path: str,
  backbone: Mapping[str, Any] | nn.Module,
  allow_reinit: bool = False,
  classifier: str = CLASSIFIER_PREFIX,
) -> tuple[state_lib.TrainState, LoadReport]:
  """Loads a converted params file (UniFormerV2/CLIP or TEA) into the
  backbone: `backbone` is the unbound backbone module
  (`models.backbones.build(kind, kwargs)`) or UniFormerV2 kwargs.

  Leaves whose name and shape match are loaded; checkpoint entries the
  model lacks are ignored; leaves the file lacks keep their initialisation.
  A leaf the file has with another shape is an error (a checkpoint
  converted for another layout would otherwise train with, e.g., a random
  patch embedding), except the backbone's classifier (`classifier`, its
  leaves' prefix: `models.backbones.classifier_prefix`, "proj_2/" or
  "fc/": another class count, or a pose head), which keeps its
  initialisation; `allow_reinit` (config init_from.allow_reinit)
  re-initialises every such leaf instead. A file of another backbone kind
  is an error. Returns the report (paths "params/backbone/..." as in the
  state); its `initialised_in_file` lists the loaded arrays the file marks
  as not pretrained (convert_weights marks them in TEA files: ME, MTA and
  fc from an ImageNet Res2Net keep their init there).
  """
  if isinstance(backbone, Mapping):
    backbone = uv2.UniFormerV2(**backbone)
  # In this model's layer layout (scanned or not), whatever the file's.
  loaded_vars, meta = load_backbone_file(path, backbone)
  pre_params = flax.traverse_util.flatten_dict(
    loaded_vars.get("params", loaded_vars), sep="/"
  )
  pre_stats = flax.traverse_util.flatten_dict(
    loaded_vars.get("batch_stats", {}), sep="/"
  )
  report = LoadReport(source=path)
  mismatched = []

  def merge(tree, pretrained, prefix):
    flat = flax.traverse_util.flatten_dict(tree, sep="/")
    used = set()
    for key, value in flat.items():
      if not key.startswith("backbone/"):
        continue
      name = key[len("backbone/") :]
      src = pretrained.get(name)
      wrong_shape = src is not None and src.shape != value.shape
      if wrong_shape and not (allow_reinit or name.startswith(classifier)):
        mismatched.append(
          f"{prefix}{key}: file {tuple(src.shape)}, model {tuple(value.shape)}"
        )
      if src is None or tuple(src.shape) != tuple(value.shape):
        report.initialised.append(prefix + key)
        continue
      used.add(name)
      flat[key] = jax.device_put(np.asarray(src, value.dtype), value.sharding)
      report.loaded.append(prefix + key)
    report.ignored.extend(prefix + k for k in pretrained if k not in used)
    return flax.traverse_util.unflatten_dict(flat, sep="/")

  params = merge(state.params, pre_params, "params/")
  batch_stats = merge(state.batch_stats, pre_stats, "batch_stats/")
  fresh = set(meta.get("initialised", ()))
  report.initialised_in_file = [
    k for k in report.loaded if k.replace("/backbone/", "/", 1) in fresh
  ]
  if mismatched:
    raise ValueError(
      f"init_from.path={path}: {len(mismatched)} backbone leaves have "
      "another shape than the model's:\n  "
      + "\n  ".join(mismatched[:20])
      + "\nThe file was converted for another layout (e.g. a Kinetics "
      "checkpoint without `convert_weights --preset`, or another "
      "model.backbone); convert it for this config, or set "
      "init_from.allow_reinit=True to train those leaves from scratch."
    )
  state = state.replace(params=params, batch_stats=batch_stats)
  logging.info(
    "init_from %s: loaded %d (%d of them initialised, not pretrained, in "
    "the file), re-initialised %d, ignored %d",
    path,
    len(report.loaded),
    len(report.initialised_in_file),
    len(report.initialised),
    len(report.ignored),
  )
  for kind, keys in (
    ("reinitialised", report.initialised),
    ("ignored", report.ignored),
  ):
    for key in keys:
      logging.info("init_from: %s %s", kind, key)
  return state, report
