"""Building blocks shared by the backbone, the text tower and the ART heads.

Shapes: `(..., L, C)` token sequences; attention heads split C into
`(H, C // H)`. Every parameter carries logical axis names from
`art_jax.sharding`. Parameter names follow the PyTorch modules they port
(`c_fc`/`c_proj` of CLIP's MLP, `q`/`k`/`v`/`out` projections), so that
weight conversion stays a table of renames.
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from art_jax import sharding as sh

Dtype = Any
Initializer = Callable[..., jax.Array]

zeros = nn.initializers.zeros
ones = nn.initializers.ones


# Remat policies by name (config `model.remat_policy`); any other name of
# `jax.checkpoint_policies` is taken as is.
REMAT_POLICIES = {
  "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
  "everything_saveable": jax.checkpoint_policies.everything_saveable,
  "dots_saveable": jax.checkpoint_policies.dots_saveable,
  "dots_with_no_batch_dims_saveable": (
    jax.checkpoint_policies.dots_with_no_batch_dims_saveable
  ),
  # Keep only the residual branches tagged with checkpoint_name.
  "save_branch_outputs": jax.checkpoint_policies.save_only_these_names(
    "attn_out", "mlp_out"
  ),
}


def remat_policy(name: str) -> Callable[..., Any] | None:
  """A remat policy by name; 'none' -> None (no remat)."""
  if name == "none":
    return None
  policy = REMAT_POLICIES.get(name) or getattr(
    jax.checkpoint_policies, name, None
  )
  if policy is None:
    raise ValueError(
      f"unknown remat policy {name!r}; use 'none' or one of "
      f"{sorted(REMAT_POLICIES)}"
    )
  return policy


def remat_scan(
  layer_cls: type[nn.Module],
  remat: str = "none",
  length: int | None = None,
  *,
  in_axes: Any = nn.broadcast,
  variable_axes: Sequence[str] = ("params",),
  split_rngs: Sequence[str] = ("params", "dropout"),
) -> type[nn.Module]:
  """`layer_cls` under nn.remat with the policy named `remat` ('none': as
  is) and, given `length`, under nn.scan over that many identical layers.

  The scanned layer's variables get a leading axis named `layers`
  (`sh.LAYERS`); `in_axes` is how its second argument is fed (broadcast to
  every layer, or 0: sliced per layer). A looped layer (no `length`) is
  rematerialised with CSE prevention; inside nn.scan the scan already
  stops CSE across iterations. The layer's `__call__(carry, x)` returns
  `(carry, y)`.
  """
  policy = remat_policy(remat)
  if policy is not None:
    layer_cls = nn.remat(layer_cls, policy=policy, prevent_cse=length is None)
  if length is None:
    return layer_cls
  return nn.scan(
    layer_cls,
    variable_axes={c: 0 for c in variable_axes},
    split_rngs={r: True for r in split_rngs},
    in_axes=in_axes,
    length=length,
    metadata_params={nn.PARTITION_NAME: sh.LAYERS},
  )


def quick_gelu(x: jax.Array) -> jax.Array:
  """CLIP's activation: x * sigmoid(1.702 x)."""
  return x * jax.nn.sigmoid(1.702 * x)


def dense(
  features: int,
  axes: tuple[str, str],
  *,
  dtype: Dtype,
  param_dtype: Dtype,
  use_bias: bool = True,
  kernel_init: Initializer = nn.initializers.lecun_normal(),
  bias_init: Initializer = zeros,
  name: str | None = None,
) -> nn.Dense:
  """nn.Dense whose kernel is named `axes` = (in, out) and bias `(out,)`."""
  return nn.Dense(
    features,
    use_bias=use_bias,
    dtype=dtype,
    param_dtype=param_dtype,
    kernel_init=nn.with_logical_partitioning(kernel_init, axes),
    bias_init=nn.with_logical_partitioning(bias_init, (axes[1],)),
    name=name,
  )


class LayerNorm(nn.Module):
  """LayerNorm computed in float32 and cast back (as CLIP's fp16-safe LN).

  Attributes:
    epsilon: 1e-5, PyTorch's default, so converted weights match.
    axis_name: logical name of the feature axis.
  """

  epsilon: float = 1e-5
  axis_name: str = sh.EMBED
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ln = nn.LayerNorm(
      epsilon=self.epsilon,
      dtype=jnp.float32,
      param_dtype=self.param_dtype,
      scale_init=nn.with_logical_partitioning(ones, (self.axis_name,)),
      bias_init=nn.with_logical_partitioning(zeros, (self.axis_name,)),
      name="ln",
    )
    return ln(x.astype(jnp.float32)).astype(x.dtype)


class HeadsProjection(nn.Module):
  """(..., C) -> (..., H, K): the q/k/v projection of one attention."""

  num_heads: int
  head_dim: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal(
    in_axis=0, out_axis=(1, 2)
  )
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param(
      "kernel",
      nn.with_logical_partitioning(
        self.kernel_init, (sh.EMBED, sh.HEADS, sh.KV)
      ),
      (x.shape[-1], self.num_heads, self.head_dim),
      self.param_dtype,
    )
    y = jnp.einsum(
      "...c,chk->...hk", x.astype(self.dtype), kernel.astype(self.dtype)
    )
    if self.use_bias:
      bias = self.param(
        "bias",
        nn.with_logical_partitioning(zeros, (sh.HEADS, sh.KV)),
        (self.num_heads, self.head_dim),
        self.param_dtype,
      )
      y = y + bias.astype(self.dtype)
    return y


class HeadsMerge(nn.Module):
  """(..., H, K) -> (..., C): the output projection of one attention."""

  features: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal(
    in_axis=(0, 1), out_axis=2
  )
  bias_init: Initializer = zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param(
      "kernel",
      nn.with_logical_partitioning(
        self.kernel_init, (sh.HEADS, sh.KV, sh.EMBED)
      ),
      (x.shape[-2], x.shape[-1], self.features),
      self.param_dtype,
    )
    bias = self.param(
      "bias",
      nn.with_logical_partitioning(self.bias_init, (sh.EMBED,)),
      (self.features,),
      self.param_dtype,
    )
    y = jnp.einsum(
      "...hk,hkc->...c", x.astype(self.dtype), kernel.astype(self.dtype)
    )
    return y + bias.astype(self.dtype)


def attention_weights(
  q: jax.Array, k: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
  """Softmax attention probabilities (..., H, Lq, Lk), computed in float32.

  q: (..., Lq, H, K); k: (..., Lk, H, K); mask broadcastable to
  (..., H, Lq, Lk), True where attending is allowed.
  """
  scale = q.shape[-1] ** -0.5
  logits = (
    jnp.einsum(
      "...qhk,...lhk->...hql", q, k, preferred_element_type=jnp.float32
    )
    * scale
  )
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  return jax.nn.softmax(logits, axis=-1)


def fused_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  mask: jax.Array | None = None,
  implementation: str = "cudnn",
  kv_length: int | None = None,
) -> jax.Array:
  """`jax.nn.dot_product_attention` over any number of leading axes.

  q: (..., Lq, H, K); k, v: (..., Lk, H, K); mask broadcastable to
  (..., H, Lq, Lk); kv_length: only the first kv_length keys are attended
  to (the rest is padding). Returns (..., Lq, H, K).

  cuDNN's training kernels take even sequence lengths only, and jax (0.10,
  0.11) applies that rule to every differentiated call ("Unsupported sequence
  length Q 197, KV 197" for ViT-B/16's 1 + 14 x 14 tokens). Odd lengths get
  one padding token: a padded key is masked out through
  `key_value_seq_lengths`, a padded query row is dropped from the output.
  """
  lead, (lq, heads), lk = q.shape[:-3], q.shape[-3:-1], k.shape[-3]
  flat = lambda x: x.reshape((-1,) + x.shape[-3:])
  q, k, v = flat(q), flat(k), flat(v)
  if mask is not None:
    mask = jnp.broadcast_to(mask, lead + (heads, lq, lk))
    mask = mask.reshape((-1,) + mask.shape[-3:])
  pad_q, pad_k = lq % 2, lk % 2
  if kv_length is None and pad_k:
    kv_length = lk  # the padded key is masked out
  kv_lengths = None
  if kv_length is not None:
    kv_lengths = jnp.full((q.shape[0],), kv_length, jnp.int32)
  if pad_q:
    q = jnp.pad(q, ((0, 0), (0, 1), (0, 0), (0, 0)))
  if pad_k:
    k, v = (jnp.pad(x, ((0, 0), (0, 1), (0, 0), (0, 0))) for x in (k, v))
  if mask is not None and (pad_q or pad_k):
    mask = jnp.pad(
      mask, ((0, 0), (0, 0), (0, pad_q), (0, 0)), constant_values=True
    )
    mask = jnp.pad(mask, ((0, 0), (0, 0), (0, 0), (0, pad_k)))
  out = jax.nn.dot_product_attention(
    q,
    k,
    v,
    mask=mask,
    key_value_seq_lengths=kv_lengths,
    implementation=implementation,
  )
  out = out[:, :lq]
  return out.reshape(lead + out.shape[1:])


class MultiHeadAttention(nn.Module):
  """Multi-head attention from `x` (queries) to `context` (keys, values).

  Attributes:
    num_heads: number of heads H; the head width is C // H.
    out_kernel_init / out_bias_init: UniFormerV2's Extractor zero-initialises
      its output projection, so the block starts as the identity.
    attention_impl: "xla" (einsum + float32 softmax, any device) or "cudnn"
      (cuDNN flash attention through `jax.nn.dot_product_attention`; GPU,
      bf16/fp16 only). The weights are never materialised by "cudnn", so a
      call with `return_weights` always takes the "xla" path.

  Returns `(out, weights)`: out (..., Lq, C); weights (..., H, Lq, Lk) in
  float32 when `return_weights`, else None.
  """

  num_heads: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  qkv_kernel_init: Initializer = nn.initializers.lecun_normal(
    in_axis=0, out_axis=(1, 2)
  )
  out_kernel_init: Initializer = nn.initializers.lecun_normal(
    in_axis=(0, 1), out_axis=2
  )
  out_bias_init: Initializer = zeros
  attention_impl: str = "xla"

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    context: jax.Array | None = None,
    mask: jax.Array | None = None,
    return_weights: bool = False,
  ) -> tuple[jax.Array, jax.Array | None]:
    self_attention = context is None
    context = x if context is None else context
    features = x.shape[-1]
    if features % self.num_heads:
      raise ValueError(
        f"width {features} is not divisible by num_heads={self.num_heads}"
      )
    head_dim = features // self.num_heads
    proj = lambda name: HeadsProjection(
      self.num_heads,
      head_dim,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=self.qkv_kernel_init,
      name=name,
    )
    lq, lk = x.shape[-2], context.shape[-2]
    fused = self.attention_impl == "cudnn" and not return_weights
    pad_early = fused and mask is None and (lq % 2 or lk % 2)
    if pad_early:
      # cuDNN's even lengths (fused_attention): pad the tokens once, before
      # the projections, rather than q, k and v (and their gradients)
      # after; the padded key is masked out, the padded query row dropped
      # after the output projection.
      x = _pad_tokens(x, lq % 2)
      context = x if self_attention else _pad_tokens(context, lk % 2)
    q, k, v = proj("query")(x), proj("key")(context), proj("value")(context)
    if fused:
      weights = None
      out = fused_attention(q, k, v, mask, kv_length=lk if pad_early else None)
    elif self.attention_impl in ("xla", "cudnn"):
      weights = attention_weights(q, k, mask)
      out = jnp.einsum("...hql,...lhk->...qhk", weights.astype(self.dtype), v)
    else:
      raise ValueError(f"unknown attention_impl {self.attention_impl!r}")
    out = HeadsMerge(
      features,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=self.out_kernel_init,
      bias_init=self.out_bias_init,
      name="out",
    )(out)
    if pad_early:
      out = out[..., :lq, :]
    return out, (weights if return_weights else None)


def _pad_tokens(x: jax.Array, n: int) -> jax.Array:
  """(..., L, C) -> (..., L + n, C), zeros appended."""
  if not n:
    return x
  return jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, n), (0, 0)])


def traced_dropout(
  module: nn.Module,
  x: jax.Array,
  rate: float | jax.Array,
  train: bool,
  mask_shape: Sequence[int] | None = None,
) -> jax.Array:
  """Dropout whose rate may be traced (scanned per layer).

  `mask_shape` (broadcastable to x) drops whole slices: element-wise by
  default, per example for DropPath.
  """
  if not train:
    return x
  keep = 1.0 - jnp.asarray(rate, jnp.float32)
  shape = x.shape if mask_shape is None else tuple(mask_shape)
  mask = jax.random.bernoulli(module.make_rng("dropout"), keep, shape)
  return jnp.where(mask, x / keep.astype(x.dtype), jnp.zeros_like(x))


class Mlp(nn.Module):
  """c_fc -> activation -> dropout -> c_proj, as CLIP's and UniFormerV2's MLPs.

  Attributes:
    hidden: hidden width (4C in CLIP).
    dropout_rate: applied after the activation (UniFormerV2's Extractor);
      a call may pass `rate` instead, a traced per-layer value in a scan.
    fc_kernel_init / fc_bias_init: the Extractor's are xavier / torch's.
    proj_kernel_init / proj_bias_init: zero for UniFormerV2's Extractor.
  """

  hidden: int
  dropout_rate: float = 0.0
  activation: Callable[[jax.Array], jax.Array] = quick_gelu
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  fc_kernel_init: Initializer = nn.initializers.lecun_normal()
  fc_bias_init: Initializer = zeros
  proj_kernel_init: Initializer = nn.initializers.lecun_normal()
  proj_bias_init: Initializer = zeros

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    train: bool = False,
    rate: float | jax.Array | None = None,
  ) -> jax.Array:
    features = x.shape[-1]
    y = dense(
      self.hidden,
      (sh.EMBED, sh.MLP),
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=self.fc_kernel_init,
      bias_init=self.fc_bias_init,
      name="c_fc",
    )(x)
    y = self.activation(y)
    if rate is None:
      y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    else:
      y = traced_dropout(self, y, rate, train)
    return dense(
      features,
      (sh.MLP, sh.EMBED),
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=self.proj_kernel_init,
      bias_init=self.proj_bias_init,
      name="c_proj",
    )(y)


class DropPath(nn.Module):
  """Stochastic depth: drops the whole residual branch per example.

  Examples are indexed by axis `batch_axis` of the input. `rate` may be
  given per call as a traced scalar (a scanned stack where each layer has
  its own rate). Uses the `dropout` rng stream; the identity when not
  training or when the static rate is 0.
  """

  rate: float = 0.0
  batch_axis: int = 0

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    train: bool = False,
    rate: float | jax.Array | None = None,
  ) -> jax.Array:
    rate = self.rate if rate is None else rate
    if not train or (isinstance(rate, float | int) and rate == 0.0):
      return x
    shape = [1] * x.ndim
    shape[self.batch_axis] = x.shape[self.batch_axis]
    return traced_dropout(self, x, rate, train, mask_shape=shape)
