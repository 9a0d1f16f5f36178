"""UniFormerV2 video backbone (OpenGVLab), ported to Flax linen.

A CLIP ViT whose blocks gain Local MHRA (a BatchNorm + depthwise temporal
convolution residual, zero-initialised so a CLIP checkpoint starts as a
per-frame image model), plus "global UniBlocks" on the `return_list` layers:
a depthwise 3x3x3 DPE convolution and an Extractor cross-attention from one
temporal class token to all T'(L+1) tokens. The video representation fuses
that token with the mean frame class token through a learned balance.

Shapes: video (B, T, H, W, 3); tokens (B, T', 1 + L, C) inside, L = gh * gw
patches per frame; T' = T // 2 with `temporal_downsample`, else T.

Parameter tree (names mirror the official PyTorch modules, so conversion is
a table of renames; `transformer.` is flattened away):
  conv1, class_embedding, positional_embedding, ln_pre,
  temporal_cls_token, balance, proj_0 (LayerNorm), proj_2 (Dense), and
  * `scan=False`: resblocks_{i} for every layer i; dpe_{j}, dec_{j} for the
    j-th entry of return_list;
  * `scan=True`: the layers are cut into maximal runs of plain layers and of
    return_list layers (`layer_segments`). A plain run starting at layer a is
    `resblocks_scan_{a}` (stacked ResidualAttentionBlock params); a run of
    return_list layers starting at a is `uniblocks_scan_{a}` with stacked
    `resblock`, `dpe`, `dec`. Official presets give two stacks: layers
    [0, L-4) and [L-4, L). `art_jax.weights` converts between the layouts.

Deviations from the official code (documented, deliberate):
  * Drop path drops a residual branch per example. The official code applies
    timm's DropPath, which drops along dim 0 of whatever it gets: per example
    for Local MHRA ((N, C, T, H, W)), but per token for attention/MLP
    ((L, NT, C) layout) and for the whole batch in the Extractor ((1, N, C)).
  * T' and the patch grid come from the input shape, not from `t_size`.
  * BatchNorm's running variance is updated with the biased batch variance
    (flax); PyTorch uses the unbiased one, a factor n/(n-1) with
    n = B*T'*L (>3000 at 224px), which only affects running statistics.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from art_jax import sharding as sh
from art_jax.models import layers

Dtype = Any

# PyTorch's default init of nn.Linear / nn.Conv weights (kaiming_uniform with
# a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the parameters
# UniFormerV2 adds on top of CLIP start from it in the official recipe.
torch_kernel_init = nn.initializers.variance_scaling(
  1.0 / 3.0, "fan_in", "uniform"
)
# torch's MultiheadAttention applies xavier_uniform to the stacked (3C, C)
# in_proj_weight: limit sqrt(6 / (C + 3C)); per q/k/v kernel (C, H, K) that
# is variance_scaling(0.5, fan_avg) with fan_in = fan_out = C.
torch_in_proj_init = nn.initializers.variance_scaling(
  0.5, "fan_avg", "uniform", in_axis=0, out_axis=(1, 2)
)
# Extractor's c_fc: xavier_uniform on the (d_mlp, C) weight.
xavier_uniform = nn.initializers.xavier_uniform()


def torch_bias_init(fan_in: int) -> layers.Initializer:
  """PyTorch's default bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


TOKEN_AXES = (sh.BATCH, sh.TIME, sh.LENGTH, sh.EMBED)

# The classifier Dense (official `transformer.proj.2`): its kernel (C, K)
# also weighs the class-activation maps, and a pretrained file's classifier
# may have another class count.
CLASSIFIER = "proj_2"

# Official presets (uniformerv2_b16 / _l14 / _l14_336 in
# slowfast/models/uniformerv2_model.py).
_COMMON = dict(
  t_size=16,
  kernel_size=3,
  dw_reduction=1.5,
  temporal_downsample=True,
  no_lmhra=False,
  double_lmhra=True,
  n_layers=4,
  mlp_factor=4.0,
  drop_path_rate=0.0,
  backbone_drop_path_rate=0.0,
  mlp_dropout=(0.5, 0.5, 0.5, 0.5),
  cls_dropout=0.5,
  num_classes=400,
)
PRESETS: dict[str, dict[str, Any]] = {
  "b16": dict(
    _COMMON,
    input_resolution=224,
    patch_size=16,
    width=768,
    layers=12,
    heads=12,
    return_list=(8, 9, 10, 11),
    n_dim=768,
    n_head=12,
  ),
  "l14": dict(
    _COMMON,
    input_resolution=224,
    patch_size=14,
    width=1024,
    layers=24,
    heads=16,
    return_list=(20, 21, 22, 23),
    n_dim=1024,
    n_head=16,
  ),
}
PRESETS["l14_336"] = dict(PRESETS["l14"], input_resolution=336)


def preset_kwargs(name: str, **overrides: Any) -> dict[str, Any]:
  """UniFormerV2 keyword arguments of preset `name`, updated by overrides."""
  if name not in PRESETS:
    raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
  unknown = set(overrides) - {f.name for f in dataclasses.fields(UniFormerV2)}
  if unknown:
    raise ValueError(f"unknown UniFormerV2 fields: {sorted(unknown)}")
  return dict(PRESETS[name], **overrides)


def layer_segments(
  layers_: int, return_list: Sequence[int]
) -> list[tuple[int, int, bool]]:
  """Maximal runs of layers: [(start, stop, is_global), ...] in order.

  `is_global` runs are layers in return_list (block + DPE + Extractor);
  each run becomes one nn.scan, so the number of compiled bodies depends on
  how return_list is laid out, not on the depth.
  """
  returned = set(return_list)
  segments = []
  for i in range(layers_):
    is_global = i in returned
    if segments and segments[-1][2] == is_global:
      segments[-1] = (segments[-1][0], i + 1, is_global)
    else:
      segments.append((i, i + 1, is_global))
  return segments


class LocalMHRA(nn.Module):
  """Local MHRA: BN -> 1x1x1 conv -> depthwise temporal conv -> 1x1x1 conv.

  (B, T', L, C) -> (B, T', L, C). The official module is a Conv3d stack on
  (N, C, T, H, W); all of it except the temporal conv is per position, so
  the spatial layout is not needed here. Names follow its `pos_embed`
  nn.Sequential: 0 BatchNorm3d, 1 reduce, 2 depthwise (k, 1, 1), 3 expand
  (zero-initialised, so the residual starts at zero).

  `token_mask` (L,) bool leaves tokens out of the BatchNorm statistics
  (their outputs are then meaningless; nothing mixes across tokens, so the
  others are exactly what the module gives on the kept tokens alone).
  """

  dw_reduction: float = 1.5
  pos_kernel_size: int = 3
  train: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
    self, x: jax.Array, token_mask: jax.Array | None = None
  ) -> jax.Array:
    c = x.shape[-1]
    re_c = int(c // self.dw_reduction)
    mask = None
    if token_mask is not None:
      mask = jnp.broadcast_to(token_mask[:, None], x.shape)
    k = self.pos_kernel_size
    # BatchNorm3d: statistics over (B, T', H, W) per channel; torch momentum
    # 0.1 is flax momentum 0.9.
    x = nn.BatchNorm(
      use_running_average=not self.train,
      momentum=0.9,
      epsilon=1e-5,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      scale_init=nn.with_logical_partitioning(layers.ones, (sh.EMBED,)),
      bias_init=nn.with_logical_partitioning(layers.zeros, (sh.EMBED,)),
      name="pos_embed_0",
    )(x, mask=mask)
    x = layers.dense(
      re_c,
      (sh.EMBED, sh.MLP),
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=torch_kernel_init,
      bias_init=torch_bias_init(c),
      name="pos_embed_1",
    )(x)
    x = TemporalDepthwiseConv(
      k, dtype=self.dtype, param_dtype=self.param_dtype, name="pos_embed_2"
    )(x)
    return layers.dense(
      c,
      (sh.MLP, sh.EMBED),
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=layers.zeros,
      bias_init=layers.zeros,
      name="pos_embed_3",
    )(x)


class TemporalDepthwiseConv(nn.Module):
  """Depthwise conv along axis 1 of (B, T, L, C), zero padding, stride 1.

  Params: kernel (k, C) (torch weight (C, 1, k, 1, 1)), bias (C,).
  """

  kernel_size: int = 3
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, c, t = self.kernel_size, x.shape[-1], x.shape[1]
    kernel = self.param(
      "kernel",
      nn.with_logical_partitioning(torch_kernel_init, (sh.CONV_T, sh.MLP)),
      (k, c),
      self.param_dtype,
    )
    bias = self.param(
      "bias",
      nn.with_logical_partitioning(torch_bias_init(k), (sh.MLP,)),
      (c,),
      self.param_dtype,
    )
    kernel, bias = kernel.astype(self.dtype), bias.astype(self.dtype)
    pad = k // 2
    xp = jnp.pad(x, ((0, 0), (pad, k - 1 - pad), (0, 0), (0, 0)))
    # A k-tap sum of shifted slices: cheaper and clearer than a grouped conv.
    y = sum(xp[:, i : i + t] * kernel[i] for i in range(k))
    return y + bias


class ResidualAttentionBlock(nn.Module):
  """CLIP block with Local MHRA before (and after) per-frame attention.

  `__call__(x, drop_path_rate) -> (x, None)` so that it is an nn.scan body;
  x: (B, T', 1 + L, C) with the frame class token at index 0.
  """

  heads: int
  dw_reduction: float = 1.5
  no_lmhra: bool = False
  double_lmhra: bool = True
  drop_path: bool = False  # any drop-path rate > 0 (static)
  train: bool = False
  attention_impl: str = "xla"  # "cudnn": flash attention on GPUs
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
    self, x: jax.Array, drop_path_rate: jax.Array
  ) -> tuple[jax.Array, None]:
    x = nn.with_logical_constraint(x, TOKEN_AXES)
    c = x.shape[-1]
    train = self.train and self.drop_path

    def drop(y):
      return layers.DropPath()(y, train=train, rate=drop_path_rate)

    def lmhra(x, name):
      mhra = LocalMHRA(
        self.dw_reduction,
        train=self.train,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=name,
      )
      # On the patch tokens only, as the official module: the class token
      # is left out of the BatchNorm statistics and of the residual. This
      # equals running it on x[:, :, 1:] and concatenating the class token
      # back, without that slice and concatenate, whose fusions took ~8%
      # of the B/16 train step on an H200 (docs/benchmarks.md; the saving
      # is not measured on a GPU yet; none measurable on the CPU demo).
      patches = jnp.arange(x.shape[2]) > 0
      y = mhra(x, token_mask=patches) * patches[:, None].astype(x.dtype)
      return x + drop(y)

    if not self.no_lmhra:
      x = lmhra(x, "lmhra1")
    y = layers.LayerNorm(param_dtype=self.param_dtype, name="ln_1")(x)
    y, _ = layers.MultiHeadAttention(
      self.heads,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      attention_impl=self.attention_impl,
      qkv_kernel_init=torch_in_proj_init,
      out_kernel_init=nn.initializers.variance_scaling(
        1.0 / 3.0, "fan_in", "uniform", in_axis=(0, 1), out_axis=2
      ),
      name="attn",
    )(y)
    x = x + drop(checkpoint_name(y, "attn_out"))
    if not self.no_lmhra and self.double_lmhra:
      x = lmhra(x, "lmhra2")
    y = layers.LayerNorm(param_dtype=self.param_dtype, name="ln_2")(x)
    y = layers.Mlp(
      4 * c,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      fc_kernel_init=torch_kernel_init,
      proj_kernel_init=torch_kernel_init,
      name="mlp",
    )(y)
    x = x + drop(checkpoint_name(y, "mlp_out"))
    return nn.with_logical_constraint(x, TOKEN_AXES), None


class Extractor(nn.Module):
  """Cross-attention from the temporal class token to all video tokens.

  x: (B, 1, C) query token; y: (B, N, C) context. Out-proj and c_proj are
  zero-initialised, so a fresh Extractor is the identity on x.
  """

  n_head: int
  mlp_factor: float = 4.0
  drop_path: bool = False
  dropout: bool = False
  train: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    y: jax.Array,
    drop_path_rate: jax.Array,
    dropout_rate: jax.Array,
  ) -> jax.Array:
    c = x.shape[-1]
    train = self.train and self.drop_path

    def drop(z):
      return layers.DropPath()(z, train=train, rate=drop_path_rate)

    ln = lambda name: layers.LayerNorm(param_dtype=self.param_dtype, name=name)
    q, ctx = ln("ln_1")(x), ln("ln_3")(y)
    attn, _ = layers.MultiHeadAttention(
      self.n_head,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      qkv_kernel_init=torch_in_proj_init,
      out_kernel_init=layers.zeros,
      out_bias_init=layers.zeros,
      name="attn",
    )(q, ctx)
    x = x + drop(attn)
    mlp = layers.Mlp(
      round(self.mlp_factor * c),
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      fc_kernel_init=xavier_uniform,
      fc_bias_init=torch_bias_init(c),
      proj_kernel_init=layers.zeros,
      proj_bias_init=layers.zeros,
      name="mlp",
    )
    return x + drop(
      mlp(ln("ln_2")(x), self.train and self.dropout, rate=dropout_rate)
    )


class DepthwiseConv3D(nn.Module):
  """Depthwise k x k x k conv on (B, T', gh, gw, C), zero padding, stride 1.

  Params match nn.Conv(feature_group_count=C): kernel (k, k, k, 1, C), bias
  (C,). Computed as a sum of k^3 shifted, scaled copies: XLA fuses it into
  one elementwise kernel, where a grouped convolution runs ~100x slower on
  CPU (110 ms vs ~1 ms for a (32, 4, 4, 4, 96) input).
  """

  kernel_size: int = 3
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, c = self.kernel_size, x.shape[-1]
    kernel = self.param(
      "kernel",
      nn.with_logical_partitioning(
        torch_kernel_init, (sh.CONV_T, sh.CONV_H, sh.CONV_W, None, sh.EMBED)
      ),
      (k, k, k, 1, c),
      self.param_dtype,
    )
    bias = self.param(
      "bias",
      nn.with_logical_partitioning(layers.zeros, (sh.EMBED,)),
      (c,),
      self.param_dtype,
    )
    kernel, bias = kernel.astype(self.dtype), bias.astype(self.dtype)
    x = x.astype(self.dtype)
    p = k // 2
    t, h, w = x.shape[1:4]
    xp = jnp.pad(
      x, ((0, 0), (p, k - 1 - p), (p, k - 1 - p), (p, k - 1 - p), (0, 0))
    )
    y = sum(
      xp[:, i : i + t, j : j + h, m : m + w] * kernel[i, j, m, 0]
      for i in range(k)
      for j in range(k)
      for m in range(k)
    )
    return y + bias


def dpe_conv(
  n_dim: int, dtype: Dtype, param_dtype: Dtype, name: str
) -> nn.Module:
  """Depthwise 3x3x3 conv on (B, T', gh, gw, C), bias zero-initialised."""
  del n_dim  # the width comes from the input
  return DepthwiseConv3D(3, dtype=dtype, param_dtype=param_dtype, name=name)


def global_step(
  dpe: nn.Module,
  dec: nn.Module,
  x: jax.Array,
  cls_token: jax.Array,
  grid: tuple[int, int],
  drop_path_rate: jax.Array,
  dropout_rate: jax.Array,
) -> jax.Array:
  """One global UniBlock: DPE on a copy of x, then the Extractor.

  x: (B, T', 1 + L, C) backbone tokens (left unchanged); cls_token
  (B, 1, C) -> (B, 1, C).
  """
  b, t, n, c = x.shape
  feats = dpe(x[:, :, 1:].reshape(b, t, *grid, c)).reshape(b, t, n - 1, c)
  y = jnp.concatenate([x[:, :, :1], x[:, :, 1:] + feats], axis=2)
  return dec(cls_token, y.reshape(b, t * n, c), drop_path_rate, dropout_rate)


class UniBlock(nn.Module):
  """Scan body for return_list layers: backbone block + DPE + Extractor.

  carry (x, cls_token); xs (block drop path, extractor drop path, mlp
  dropout) rates of this layer.
  """

  block: dict[str, Any]
  extractor: dict[str, Any]
  n_dim: int
  grid: tuple[int, int]
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, carry, xs):
    x, cls_token = carry
    b_rate, e_rate, d_rate = xs
    x, _ = ResidualAttentionBlock(**self.block, name="resblock")(x, b_rate)
    dpe = dpe_conv(self.n_dim, self.dtype, self.param_dtype, "dpe")
    dec = Extractor(**self.extractor, name="dec")
    cls_token = global_step(dpe, dec, x, cls_token, self.grid, e_rate, d_rate)
    return (x, cls_token), None


class PatchEmbedding(nn.Module):
  """UniFormerV2's conv1: a Conv3d of kernel (kt, p, p), stride (st, p, p),
  temporal padding pt, no bias. (B, T, H, W, Cin) -> (B, T', H/p, W/p, C).

  Same parameter (`kernel`, (kt, p, p, Cin, C)) and result as nn.Conv, but
  computed as a patch reshape, kt strided time slices and one matmul:
  forward+backward 5-6x faster than XLA:CPU's convolution on the demo input
  (docs/benchmarks.md); not yet timed on accelerators.
  """

  features: int
  kernel_size: tuple[int, int, int]
  temporal_stride: int = 1
  temporal_padding: int = 0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kt, p, _ = self.kernel_size
    st, pt = self.temporal_stride, self.temporal_padding
    b, t, h, w, cin = x.shape
    kernel = self.param(
      "kernel",
      nn.with_logical_partitioning(
        torch_kernel_init, (sh.CONV_T, sh.CONV_H, sh.CONV_W, None, sh.EMBED)
      ),
      (kt, p, p, cin, self.features),
      self.param_dtype,
    )
    # Patches first (one transpose of the input), then the kt time taps of
    # the patch vectors: cheaper than tapping the frames and transposing
    # the kt-times larger result (docs/benchmarks.md).
    x = x.reshape(b, t, h // p, p, w // p, p, cin).transpose(
      0, 1, 2, 4, 3, 5, 6
    )
    x = x.reshape(b, t, h // p, w // p, p * p * cin)
    x = jnp.pad(x, ((0, 0), (pt, pt), (0, 0), (0, 0), (0, 0)))
    t_out = (t + 2 * pt - kt) // st + 1
    taps = jnp.stack(
      [x[:, k : k + st * (t_out - 1) + 1 : st] for k in range(kt)], -2
    )  # (B, T', H/p, W/p, kt, p*p*Cin)
    return jnp.einsum(
      "bthwkd,kdf->bthwf",
      taps.astype(self.dtype),
      kernel.reshape(kt, p * p * cin, self.features).astype(self.dtype),
    )


class UniFormerV2(nn.Module):
  """UniFormerV2 (fields named as the official VisionTransformer's args).

  Attributes:
    input_resolution: frame size the positional embedding is made for.
    patch_size: p; the input H, W must equal input_resolution.
    width, layers, heads: the CLIP ViT (C, depth, attention heads).
    t_size: the official frame count; kept for config parity, T' is read
      from the input.
    kernel_size: temporal extent of the patch embedding when
      temporal_downsample (stride 2 in time, padding kernel_size // 2).
    dw_reduction: Local MHRA width is int(C // dw_reduction).
    no_lmhra / double_lmhra: no Local MHRA / one after attention as well.
    return_list: sorted layer indices followed by a global UniBlock.
    n_layers, n_dim, n_head, mlp_factor: the global UniBlocks (n_dim must
      equal width, n_layers == len(return_list)).
    drop_path_rate / backbone_drop_path_rate: stochastic depth, linearly
      increasing over the Extractors / backbone blocks.
    mlp_dropout: per-Extractor MLP dropout; cls_dropout: before the head.
    dtype / param_dtype: compute and parameter dtypes.
    remat_policy: 'none' or a key of `layers.REMAT_POLICIES`.
    scan: nn.scan over runs of identical layers (see module docstring).
  """

  input_resolution: int = 224
  patch_size: int = 16
  width: int = 768
  layers: int = 12
  heads: int = 12
  t_size: int = 16
  kernel_size: int = 3
  dw_reduction: float = 1.5
  temporal_downsample: bool = True
  no_lmhra: bool = False
  double_lmhra: bool = True
  return_list: Sequence[int] = (8, 9, 10, 11)
  n_layers: int = 4
  n_dim: int = 768
  n_head: int = 12
  mlp_factor: float = 4.0
  drop_path_rate: float = 0.0
  backbone_drop_path_rate: float = 0.0
  mlp_dropout: Sequence[float] = (0.5, 0.5, 0.5, 0.5)
  cls_dropout: float = 0.5
  num_classes: int = 400
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  remat_policy: str = "none"
  scan: bool = True
  attention_impl: str = "xla"  # backbone self-attention; "cudnn" on GPUs

  @property
  def grid(self) -> tuple[int, int]:
    g = self.input_resolution // self.patch_size
    return g, g

  def check_config(self) -> None:
    """Raises ValueError on inconsistent fields."""
    rl = list(self.return_list)
    errors = []
    if rl != sorted(set(rl)) or (rl and not 0 <= rl[0] <= rl[-1] < self.layers):
      errors.append(
        f"return_list={rl} must be sorted, unique, in [0, {self.layers})"
      )
    if self.n_layers != len(rl):
      errors.append(f"n_layers={self.n_layers} != len(return_list)={len(rl)}")
    if len(self.mlp_dropout) != self.n_layers:
      errors.append(
        f"len(mlp_dropout)={len(self.mlp_dropout)} != n_layers={self.n_layers}"
      )
    if self.n_dim != self.width:
      errors.append(f"n_dim={self.n_dim} must equal width={self.width}")
    if min(self.heads, self.n_head) <= 0:
      errors.append(f"heads={self.heads}, n_head={self.n_head} must be > 0")
    elif self.width % self.heads or self.n_dim % self.n_head:
      errors.append("width/n_dim must be divisible by heads/n_head")
    policies = ["none", *layers.REMAT_POLICIES]
    if self.remat_policy not in policies:
      errors.append(f"remat_policy={self.remat_policy!r} not in {policies}")
    if errors:
      raise ValueError("UniFormerV2: " + "; ".join(errors))

  def _check_input(self, video: jax.Array) -> None:
    if video.ndim != 5 or video.shape[-1] != 3:
      raise ValueError(f"video must be (B, T, H, W, 3), got {video.shape}")
    _, t, h, w, _ = video.shape
    if (h, w) != (self.input_resolution,) * 2:
      raise ValueError(
        f"frames are {h}x{w} but input_resolution={self.input_resolution}; "
        "the positional embedding fixes the patch grid (resample it with "
        "art_jax.weights.resample_positional_embedding for another size)"
      )
    if self.input_resolution % self.patch_size:
      raise ValueError(
        f"input_resolution={self.input_resolution} is not divisible by "
        f"patch_size={self.patch_size}"
      )
    if self.temporal_downsample and t % 2:
      raise ValueError(
        f"temporal_downsample halves time: T={t} frames must be even"
      )

  def _rates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b_dpr = np.linspace(0, self.backbone_drop_path_rate, self.layers)
    dpr = np.linspace(0, self.drop_path_rate, self.n_layers)
    return (
      b_dpr.astype(np.float32),
      dpr.astype(np.float32),
      np.asarray(self.mlp_dropout, np.float32),
    )

  @nn.compact
  def __call__(self, video: jax.Array, train: bool = False) -> dict:
    """video (B, T, H, W, 3) -> {tokens (B,T',L,C), global (B,C), logits}."""
    self.check_config()
    self._check_input(video)
    p, c = self.patch_size, self.width
    x = video.astype(self.dtype)
    if self.temporal_downsample:
      kt, st, pt = self.kernel_size, 2, (self.kernel_size - 1) // 2
    else:
      kt, st, pt = 1, 1, 0
    x = PatchEmbedding(
      c,
      (kt, p, p),
      temporal_stride=st,
      temporal_padding=pt,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="conv1",
    )(x)
    b, t, gh, gw, _ = x.shape
    x = x.reshape(b, t, gh * gw, c)

    init = nn.initializers.normal(stddev=c**-0.5)
    class_embedding = self.param(
      "class_embedding",
      nn.with_logical_partitioning(init, (sh.EMBED,)),
      (c,),
      self.param_dtype,
    )
    pos = self.param(
      "positional_embedding",
      nn.with_logical_partitioning(init, (sh.LENGTH, sh.EMBED)),
      (gh * gw + 1, c),
      self.param_dtype,
    )
    cls = jnp.broadcast_to(class_embedding.astype(self.dtype), (b, t, 1, c))
    x = jnp.concatenate([cls, x], axis=2) + pos.astype(self.dtype)
    x = layers.LayerNorm(param_dtype=self.param_dtype, name="ln_pre")(x)
    x = nn.with_logical_constraint(x, TOKEN_AXES)

    temporal_cls_token = self.param(
      "temporal_cls_token",
      nn.with_logical_partitioning(layers.zeros, (sh.EMBED,)),
      (self.n_dim,),
      self.param_dtype,
    )
    cls_token = jnp.broadcast_to(
      temporal_cls_token.astype(self.dtype), (b, 1, self.n_dim)
    )
    x, cls_token = self._blocks(x, cls_token, train)

    # Fusion and head in float32: (B, C) vectors, negligible cost.
    balance = self.param(
      "balance",
      nn.with_logical_partitioning(layers.zeros, (sh.EMBED,)),
      (self.n_dim,),
      self.param_dtype,
    )
    weight = jax.nn.sigmoid(balance.astype(jnp.float32))
    frame_cls = x[:, :, 0].astype(jnp.float32).mean(axis=1)
    fused = (1 - weight) * cls_token[:, 0].astype(jnp.float32)
    fused = fused + weight * frame_cls
    h = layers.LayerNorm(param_dtype=self.param_dtype, name="proj_0")(fused)
    h = nn.Dropout(self.cls_dropout, deterministic=not train)(h)
    logits = layers.dense(
      self.num_classes,
      (sh.EMBED, sh.CLASSES),
      dtype=jnp.float32,
      param_dtype=self.param_dtype,
      kernel_init=torch_kernel_init,
      bias_init=torch_bias_init(self.n_dim),
      name=CLASSIFIER,
    )(h)
    return {"tokens": x[:, :, 1:], "global": fused, "logits": logits}

  def _blocks(
    self, x: jax.Array, cls_token: jax.Array, train: bool
  ) -> tuple[jax.Array, jax.Array]:
    b_dpr, dpr, drop = self._rates()
    block_kw = dict(
      heads=self.heads,
      attention_impl=self.attention_impl,
      dw_reduction=self.dw_reduction,
      no_lmhra=self.no_lmhra,
      double_lmhra=self.double_lmhra,
      drop_path=bool(b_dpr.max(initial=0) > 0),
      train=train,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
    )
    ext_kw = dict(
      n_head=self.n_head,
      mlp_factor=self.mlp_factor,
      drop_path=bool(dpr.max(initial=0) > 0),
      dropout=bool(drop.max(initial=0) > 0),
      train=train,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
    )
    j_of = {layer: j for j, layer in enumerate(self.return_list)}
    for start, stop, is_global in layer_segments(self.layers, self.return_list):
      js = slice(j_of[start], j_of[start] + stop - start) if is_global else None
      if self.scan:
        body = UniBlock if is_global else ResidualAttentionBlock
        stack = layers.remat_scan(
          body,
          self.remat_policy,
          stop - start,
          in_axes=0,
          variable_axes=("params", "batch_stats"),
        )
        if is_global:
          (x, cls_token), _ = stack(
            block=block_kw,
            extractor=ext_kw,
            n_dim=self.n_dim,
            grid=self.grid,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=f"uniblocks_scan_{start}",
          )((x, cls_token), (b_dpr[start:stop], dpr[js], drop[js]))
        else:
          x, _ = stack(**block_kw, name=f"resblocks_scan_{start}")(
            x, b_dpr[start:stop]
          )
        continue
      block_cls = layers.remat_scan(ResidualAttentionBlock, self.remat_policy)
      for i in range(start, stop):
        x, _ = block_cls(**block_kw, name=f"resblocks_{i}")(x, b_dpr[i])
        if is_global:
          j = j_of[i]
          dpe = dpe_conv(self.n_dim, self.dtype, self.param_dtype, f"dpe_{j}")
          dec = Extractor(**ext_kw, name=f"dec_{j}")
          cls_token = global_step(
            dpe, dec, x, cls_token, self.grid, dpr[j], drop[j]
          )
    return x, cls_token
