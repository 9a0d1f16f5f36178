"""TEA (Li et al., CVPR 2020): Res2Net-50 26w x 4s with ME and MTA, in Flax.

A 2-D Res2Net run on every frame, whose bottlenecks add two temporal
modules (official PyTorch code: Phoenix1327/tea-action-recognition,
`ops/tea50_16f.py`):
  * ME, motion excitation, after conv1 + BN + ReLU: a 1x1 reduce by 16 + BN,
    a depthwise 3x3 on the frame t+1 features minus the frame t features
    (zero for the last frame), a spatial mean, a 1x1 expand + BN and
    x + x * (sigmoid(.) - 0.5);
  * MTA, multiple temporal aggregation: each of the `scale` channel splits
    passes a depthwise temporal conv of kernel 3 (initialised as identity,
    and on the last split as a shift of half the channels forward and half
    backward in time) inside the hierarchical Res2Net residual
    (split i adds the output of split i-1 except in a stage's first block).

Shapes: video (B, T, H, W, 3), normalised; features (B, T, H', W', C)
throughout (2-D convs treat B and T as batch axes); layer4 is (B, T, H/32,
W/32, 2048). Outputs: `tokens` (B, T, h*w, 2048) the layer4 map per frame,
`global` (B, 2048) its spatial and frame mean (TSN average consensus),
`logits` (B, num_classes) the frame mean of per-frame fc(dropout(pooled)).

Parameter tree (names mirror the official modules, so conversion is a table
of renames; `tea_from_torch` loads official TEA checkpoints and ImageNet
Res2Net-50 26w_4s ones): conv1, bn1, layer{s}_{b}/{conv1, bn1, me/{conv1,
bn1, conv2, conv3, bn3}, convs_{i}, bns_{i}, shifts_{i}, conv3, bn3,
downsample_0, downsample_1}, fc. BatchNorm statistics live in `batch_stats`.

Sharding: only the residual-stream width (64 * 2^k channels: the stem,
every conv3 / downsample output, conv1's input, fc's input) is named
`embed`; the inner widths (26 * 2^k per split, C / 16 in ME) divide no
usual mesh size and stay replicated (None), as do BatchNorm vectors (`norm`).
A ~25 M-parameter CNN is meant to run data parallel; `embed` lets FSDP
gather it per layer when the rest of the model needs that.

Deviations from the official code (documented, deliberate):
  * T comes from the input and must equal `num_segments` (the official
    modules hardcode n_segment=16 in their reshapes).
  * The head is the TSN wrapper's (ops/models.py): dropout then `new_fc`,
    here `fc`, init normal(0, 0.001), bias 0; the consensus averages logits.
  * BatchNorm's running variance is updated with the biased batch variance
    (flax); PyTorch uses the unbiased one (running statistics only).
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from art_jax import sharding as sh
from art_jax import weights
from art_jax.models import layers

Dtype = Any

# torch.nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu"), which
# the official Res2Net applies to every Conv2d (ME's included).
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# TSN's new_fc: normal(0, 0.001), bias 0.
fc_init = nn.initializers.normal(stddev=0.001)

FEATURE_AXES = (sh.BATCH, sh.TIME, None, None, sh.EMBED)

# Sizes (the fields that differ from TEA's defaults); ART's CNN rows use r50.
PRESETS: dict[str, dict[str, Any]] = {
  "r50": dict(layers=(3, 4, 6, 3), base_width=26, scale=4),
}


def feature_size(size: int, stages: int) -> int:
  """Side of the last stage's map for `size` input pixels: the stem conv,
  its max pool and every stage after the first halve it (ceil, as padded
  stride-2 convs do): 224 -> 7 for the four stages of R50."""
  for _ in range(stages + 1):
    size = -(-size // 2)
  return size


def shift_init(shift: bool) -> layers.Initializer:
  """MTA temporal kernel (3, C) init: identity, or the official part shift.

  Tap k multiplies x[t + k - 1]. `shift`: the first C // 2 channels read
  t + 1 (shift left), the next C // 2 read t - 1, any rest is identity.
  """

  def init(key, shape, dtype=jnp.float32):
    del key
    k, c = shape
    w = np.zeros((k, c), np.float32)
    if shift:
      fold = c // 2
      w[2, :fold] = 1.0
      w[0, fold : 2 * fold] = 1.0
      w[1, 2 * fold :] = 1.0
    else:
      w[1] = 1.0
    return w.astype(dtype)

  return init


def batch_norm(train: bool, dtype: Dtype, param_dtype: Dtype, name: str):
  """BatchNorm2d: stats over (B, T, H, W) per channel; torch momentum 0.1."""
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=0.9,
    epsilon=1e-5,
    dtype=dtype,
    param_dtype=param_dtype,
    scale_init=nn.with_logical_partitioning(layers.ones, (sh.NORM,)),
    bias_init=nn.with_logical_partitioning(layers.zeros, (sh.NORM,)),
    name=name,
  )


def conv(
  features: int,
  kernel: int,
  axes: tuple[str | None, str | None],
  *,
  stride: int = 1,
  dtype: Dtype,
  param_dtype: Dtype,
  name: str,
) -> nn.Conv:
  """Bias-free k x k Conv2d, torch padding k // 2; `axes` names (in, out)."""
  p = kernel // 2
  return nn.Conv(
    features,
    (kernel, kernel),
    strides=(stride, stride),
    padding=((p, p), (p, p)),
    use_bias=False,
    dtype=dtype,
    param_dtype=param_dtype,
    kernel_init=nn.with_logical_partitioning(
      conv_init, (sh.CONV_H, sh.CONV_W, *axes)
    ),
    name=name,
  )


def pool2d(pool_fn, x: jax.Array, stride: int) -> jax.Array:
  """3x3 nn.max_pool / nn.avg_pool, padding 1, on (B, T, H, W, C).

  avg_pool counts the zero padding (divides by 9), as torch's AvgPool2d
  (count_include_pad=True) in the official blocks.
  """
  b, t = x.shape[:2]
  y = pool_fn(
    x.reshape(b * t, *x.shape[2:]), (3, 3), (stride, stride), ((1, 1), (1, 1))
  )
  return y.reshape(b, t, *y.shape[1:])


class DepthwiseConv2D(nn.Module):
  """Depthwise 3x3 conv, zero padding 1, no bias, on (..., H, W, C).

  Param `kernel` (3, 3, 1, C) as nn.Conv(feature_group_count=C) (torch
  weight (C, 1, 3, 3)); computed as 9 shifted, scaled copies, which XLA
  fuses (a grouped convolution is far slower on CPU, see uniformerv2).
  """

  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c, h, w = x.shape[-1], x.shape[-3], x.shape[-2]
    kernel = self.param(
      "kernel",
      nn.with_logical_partitioning(
        conv_init, (sh.CONV_H, sh.CONV_W, None, None)
      ),
      (3, 3, 1, c),
      self.param_dtype,
    ).astype(self.dtype)
    pad = [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)]
    xp = jnp.pad(x.astype(self.dtype), pad)
    return sum(
      xp[..., i : i + h, j : j + w, :] * kernel[i, j, 0]
      for i in range(3)
      for j in range(3)
    )


class TemporalShiftConv(nn.Module):
  """MTA's depthwise temporal conv (kernel 3, zero padding) on axis 1.

  (B, T, H, W, C) -> same. Param `kernel` (3, C) (torch Conv1d weight
  (C, 1, 3)), no bias; init identity or the part shift (`shift_init`).
  """

  shift: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    t, c = x.shape[1], x.shape[-1]
    kernel = self.param(
      "kernel",
      nn.with_logical_partitioning(shift_init(self.shift), (sh.CONV_T, None)),
      (3, c),
      self.param_dtype,
    ).astype(self.dtype)
    xp = jnp.pad(x, [(0, 0), (1, 1)] + [(0, 0)] * (x.ndim - 2))
    return sum(xp[:, k : k + t] * kernel[k] for k in range(3))


class MotionExcitation(nn.Module):
  """ME: x + x * (sigmoid(BN(conv3(pool(motion)))) - 0.5).

  x (B, T, H, W, C) -> same. motion_t = conv2(b)_{t+1} - b_t, b =
  BN(conv1(x)) at C // reduction channels, zero at the last frame.
  """

  reduction: int = 16
  train: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    b = conv(c // self.reduction, 1, (None, None), **kw, name="conv1")(x)
    b = batch_norm(self.train, **kw, name="bn1")(b)
    moved = DepthwiseConv2D(**kw, name="conv2")(b)
    diff = moved[:, 1:] - b[:, :-1]
    diff = jnp.pad(diff, [(0, 0), (0, 1)] + [(0, 0)] * (diff.ndim - 2))
    y = jnp.mean(diff, axis=(2, 3), keepdims=True)  # (B, T, 1, 1, C/r)
    y = conv(c, 1, (None, None), **kw, name="conv3")(y)
    y = batch_norm(self.train, **kw, name="bn3")(y)
    y = jax.nn.sigmoid(y) - 0.5
    return x + x * y


class Bottle2neckShift(nn.Module):
  """Res2Net bottleneck with ME and MTA (the official Bottle2neckShift).

  x (B, T, H, W, Cin) -> (B, T, H/stride, W/stride, 4 * planes). `stage`:
  a stage's first block (no hierarchical sum, 3x3 average pool on the last
  split, which counts padding as torch's AvgPool2d does).
  """

  planes: int
  stride: int = 1
  stage: bool = False
  downsample: bool = False
  base_width: int = 26
  scale: int = 4
  me_reduction: int = 16
  train: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.with_logical_constraint(x, FEATURE_AXES)
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    width = int(np.floor(self.planes * (self.base_width / 64.0)))
    nums = self.scale - 1

    out = conv(width * self.scale, 1, (sh.EMBED, None), **kw, name="conv1")(x)
    out = nn.relu(batch_norm(self.train, **kw, name="bn1")(out))
    out = MotionExcitation(
      self.me_reduction, train=self.train, **kw, name="me"
    )(out)

    spx = jnp.split(out, self.scale, axis=-1)
    outs = []
    sp = None
    for i in range(nums):
      sp = spx[i] if i == 0 or self.stage else sp + spx[i]
      sp = TemporalShiftConv(False, **kw, name=f"shifts_{i}")(sp)
      sp = conv(
        width, 3, (None, None), stride=self.stride, **kw, name=f"convs_{i}"
      )(sp)
      sp = nn.relu(batch_norm(self.train, **kw, name=f"bns_{i}")(sp))
      outs.append(sp)
    last = TemporalShiftConv(True, **kw, name=f"shifts_{nums}")(spx[nums])
    if self.stage:
      last = pool2d(nn.avg_pool, last, self.stride)
    outs.append(last)
    out = jnp.concatenate(outs, axis=-1)

    c_out = 4 * self.planes
    out = conv(c_out, 1, (None, sh.EMBED), **kw, name="conv3")(out)
    out = batch_norm(self.train, **kw, name="bn3")(out)
    residual = x
    if self.downsample:
      residual = conv(
        c_out, 1, (None, sh.EMBED), stride=self.stride, **kw,
        name="downsample_0",
      )(x)  # fmt: skip
      residual = batch_norm(self.train, **kw, name="downsample_1")(residual)
    return nn.relu(out + residual)


class TEA(nn.Module):
  """TEA-R50: Res2Net-50 26w x 4s + ME + MTA, per-frame fc, TSN average.

  Attributes:
    layers: blocks per stage ((3, 4, 6, 3): Res2Net-50).
    base_width, scale: Res2Net split width (per 64 planes) and split count
      (scale >= 2: the official MTA block needs a last split).
    planes: bottleneck widths per stage (official: 64, 128, 256, 512;
      output 4 * planes); stem_width: the stem conv's channels (64).
    num_segments: frames T; the input's T must equal it.
    num_classes: fc outputs; dropout: before fc (TSN's 0.5; 0.8 in the
      official something-something recipes).
    me_reduction: ME's channel reduction (16).
    dtype / param_dtype: compute and parameter dtypes.
    remat_policy: 'none' or a key of layers.REMAT_POLICIES (per block).
  """

  layers: Sequence[int] = (3, 4, 6, 3)
  base_width: int = 26
  scale: int = 4
  planes: Sequence[int] = (64, 128, 256, 512)
  stem_width: int = 64
  num_segments: int = 16
  num_classes: int = 400
  dropout: float = 0.5
  me_reduction: int = 16
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  remat_policy: str = "none"

  @property
  def width(self) -> int:
    """Channels of `tokens` / `global` (2048 for Res2Net-50)."""
    return 4 * self.planes[-1]

  def check_config(self) -> None:
    """Raises ValueError on inconsistent fields."""
    errors = []
    if len(self.layers) != len(self.planes) or min(self.layers) < 1:
      errors.append(f"layers={self.layers} vs planes={self.planes}")
    if self.scale < 2:
      errors.append(f"scale={self.scale} must be >= 2 (MTA's last split)")
    for p in self.planes:
      w = int(np.floor(p * (self.base_width / 64.0)))
      if w < 1 or (w * self.scale) // self.me_reduction < 1:
        errors.append(f"planes={p}: split width {w} too small for ME")
    if self.remat_policy != "none" and self.remat_policy not in (
      layers.REMAT_POLICIES
    ):
      errors.append(f"remat_policy={self.remat_policy!r} unknown")
    if errors:
      raise ValueError("TEA: " + "; ".join(errors))

  @nn.compact
  def __call__(self, video: jax.Array, train: bool = False) -> dict:
    """video (B, T, H, W, 3) -> {tokens (B,T,hw,C), global (B,C), logits}."""
    self.check_config()
    if video.ndim != 5 or video.shape[-1] != 3:
      raise ValueError(f"video must be (B, T, H, W, 3), got {video.shape}")
    if video.shape[1] != self.num_segments:
      raise ValueError(
        f"video has T={video.shape[1]} frames, num_segments="
        f"{self.num_segments} (ME and MTA mix frames within a clip)"
      )
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = video.astype(self.dtype)
    x = conv(
      self.stem_width, 7, (None, sh.EMBED), stride=2, **kw, name="conv1"
    )(x)
    x = nn.relu(batch_norm(train, **kw, name="bn1")(x))
    x = pool2d(nn.max_pool, x, 2)

    block_cls = layers.remat_scan(Bottle2neckShift, self.remat_policy)
    inplanes = self.stem_width
    for s, (n, planes) in enumerate(zip(self.layers, self.planes)):
      stride = 1 if s == 0 else 2
      for j in range(n):
        first = j == 0
        x = block_cls(
          planes,
          stride=stride if first else 1,
          stage=first,
          downsample=first and (stride != 1 or inplanes != 4 * planes),
          base_width=self.base_width,
          scale=self.scale,
          me_reduction=self.me_reduction,
          train=train,
          **kw,
          name=f"layer{s + 1}_{j}",
        )(x)
        inplanes = 4 * planes
    x = nn.with_logical_constraint(x, FEATURE_AXES)
    b, t, h, w, c = x.shape
    tokens = x.reshape(b, t, h * w, c)

    # Pooling and head in float32: (B, T, C) vectors, negligible cost.
    pooled = tokens.astype(jnp.float32).mean(axis=2)  # (B, T, C)
    y = nn.Dropout(self.dropout, deterministic=not train)(pooled)
    logits = layers.dense(
      self.num_classes,
      (sh.EMBED, sh.CLASSES),
      dtype=jnp.float32,
      param_dtype=self.param_dtype,
      kernel_init=fc_init,
      bias_init=layers.zeros,
      name="fc",
    )(y)
    return {
      "tokens": tokens,
      "global": pooled.mean(axis=1),
      "logits": logits.mean(axis=1),
    }


# ----------------------------------------------------------------------------
# Weight import.

# Official TEA checkpoints are TSN-wrapped: `module.base_model.…` and the
# classifier `module.new_fc.…` (dropout > 0) or `base_model.fc.…`.
_TEA_PREFIXES = ("module.", "base_model.", "backbone.")
_BN = {
  "weight": ("params", "scale"),
  "bias": ("params", "bias"),
  "running_mean": ("batch_stats", "mean"),
  "running_var": ("batch_stats", "var"),
}


def _strip(key: str) -> str:
  return weights.strip_prefixes(key, _TEA_PREFIXES)


def detect_format(state: dict[str, np.ndarray]) -> str:
  """'tea' (ME / MTA keys present) or 'res2net' (ImageNet Res2Net)."""
  if any(".me." in k or ".shifts." in k for k in state):
    return "tea"
  if any(re.fullmatch(r"layer\d+\.\d+\.convs\.\d+\.weight", k) for k in state):
    return "res2net"
  raise ValueError(
    "unrecognised state dict: expected TEA or Res2Net keys; first keys: "
    f"{list(state)[:8]}"
  )


def _leaf(module_path: tuple[str, ...], kind: str, leaf: str, w: np.ndarray):
  """(collection, flax path, value) of one torch tensor, or None."""
  if kind == "bn":
    if leaf not in _BN:
      return None
    col, name = _BN[leaf]
    return col, (*module_path, name), w
  if leaf != "weight":
    return None
  if kind == "conv" and w.ndim == 4:  # (O, I, kh, kw) -> (kh, kw, I, O)
    return "params", (*module_path, "kernel"), w.transpose(2, 3, 1, 0)
  if kind == "shift" and w.ndim == 3:  # (C, 1, 3) -> (3, C)
    return "params", (*module_path, "kernel"), w[:, 0, :].T
  return None


def official_entry(key: str, w: np.ndarray):
  """One official (prefix-free) key -> (collection, path, value) or None.

  Covers gasvn/Res2Net and timm (identical module names: conv1, bn1,
  layer{s}.{b}.{conv1, bn1, convs.i, bns.i, conv3, bn3, downsample.0/1},
  fc) and TEA's additions (me.{conv1, bn1, conv2, conv3, bn3},
  shifts.i.conv, and TSN's new_fc).
  """
  head, _, leaf = key.rpartition(".")
  if head in ("fc", "new_fc"):
    if leaf == "weight":
      return "params", ("fc", "kernel"), w.T
    return ("params", ("fc", "bias"), w) if leaf == "bias" else None
  if head in ("conv1", "bn1"):
    return _leaf((head,), "conv" if head == "conv1" else "bn", leaf, w)
  m = re.fullmatch(r"layer(\d+)\.(\d+)\.(.+)", head)
  if not m:
    return None
  block, rest = f"layer{m[1]}_{m[2]}", m[3]
  table = {
    "conv1": ("conv1", "conv"),
    "bn1": ("bn1", "bn"),
    "conv3": ("conv3", "conv"),
    "bn3": ("bn3", "bn"),
    "downsample.0": ("downsample_0", "conv"),
    "downsample.1": ("downsample_1", "bn"),
    "me.conv1": ("me/conv1", "conv"),
    "me.bn1": ("me/bn1", "bn"),
    "me.conv2": ("me/conv2", "conv"),
    "me.conv3": ("me/conv3", "conv"),
    "me.bn3": ("me/bn3", "bn"),
  }
  if rest in table:
    name, kind = table[rest]
    return _leaf((block, *name.split("/")), kind, leaf, w)
  m = re.fullmatch(r"(convs|bns)\.(\d+)", rest)
  if m:
    kind = "conv" if m[1] == "convs" else "bn"
    return _leaf((block, f"{m[1]}_{m[2]}"), kind, leaf, w)
  m = re.fullmatch(r"shifts\.(\d+)\.conv", rest)
  if m:
    return _leaf((block, f"shifts_{m[1]}"), "shift", leaf, w)
  return None


def _constant(value: float) -> layers.Initializer:
  def init(key, shape, dtype=jnp.float32):
    del key
    return np.full(shape, value, dtype)

  return init


def fresh_initializer(path: tuple[str, ...], scale: int) -> layers.Initializer:
  """The initializer TEA's module gives the variable at `path`.

  Lets a partial load fill what it lacks without running `model.init`
  (whose XLA:CPU compile takes tens of seconds at full depth); constants
  are made in numpy.
  """
  col, *_, module, leaf = path
  if col == "batch_stats":
    return _constant(1.0 if leaf == "var" else 0.0)
  if module.startswith("shifts_"):
    return shift_init(int(module.split("_")[1]) == scale - 1)
  if leaf == "kernel":
    return fc_init if module == "fc" else conv_init
  return _constant(1.0 if leaf == "scale" else 0.0)


def _dummy_video(model: TEA) -> jax.Array:
  return jnp.zeros((1, model.num_segments, 32, 32, 3), jnp.float32)


def _flatten(tree: dict) -> dict[tuple[str, ...], Any]:
  return {
    tuple(str(k.key) for k in path): leaf
    for path, leaf in jax.tree_util.tree_leaves_with_path(
      tree, is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct)
    )
  }


def tea_from_torch(
  state_dict: Mapping[str, Any],
  model: TEA,
  *,
  rng: jax.Array | int = 0,
  allow_missing: bool = False,
) -> tuple[dict[str, Any], weights.LoadReport]:
  """Official TEA or ImageNet Res2Net state dict -> (variables, report).

  Accepts torch tensors or numpy arrays, `state_dict` / `model` /
  `model_state` wrappers and `module.` / `base_model.` / `backbone.`
  prefixes.

  Res2Net sources (gasvn/Res2Net or timm, e.g. res2net50_26w_4s-06e79181)
  load the backbone; ME, the MTA temporal convs and fc keep their init
  (the official recipe), and the ImageNet fc is ignored. TEA sources must
  cover every array unless `allow_missing`. Unknown keys and shape
  mismatches raise ValueError listing them. Variables are unboxed numpy:
  params in `model.param_dtype`, batch_stats in float32.
  """
  model.check_config()
  state = {
    _strip(k): v for k, v in weights.unwrap_state_dict(state_dict).items()
  }
  fmt = detect_format(state)
  report = weights.LoadReport(source=fmt)
  abstract = jax.eval_shape(
    lambda: model.init(jax.random.key(0), _dummy_video(model))
  )
  target = _flatten(nn.meta.unbox(dict(abstract)))
  values, unknown, mismatched = {}, [], []
  for key, w in state.items():
    if fmt == "res2net" and key.startswith("fc."):
      report.ignored.append(key)  # the ImageNet classifier
      continue
    entry = official_entry(key, np.asarray(w))
    if entry is None:
      unknown.append(f"{key} {tuple(np.shape(w))}")
      continue
    col, path, value = entry
    full = (col, *path)
    if full not in target:
      unknown.append(f"{key} -> {'/'.join(full)} (not in the model)")
    elif tuple(value.shape) != tuple(target[full].shape):
      mismatched.append(
        f"{key}: {tuple(value.shape)} vs {'/'.join(full)} "
        f"{tuple(target[full].shape)}"
      )
    else:
      values[full] = value
  if unknown or mismatched:
    msg = [f"cannot load {fmt} state dict into TEA"]
    if unknown:
      msg.append(f"unknown keys ({len(unknown)}): " + ", ".join(unknown))
    if mismatched:
      msg.append(
        f"shape mismatches ({len(mismatched)}): " + ", ".join(mismatched)
      )
    raise ValueError("\n".join(msg))

  missing = sorted(p for p in target if p not in values)
  if fmt == "res2net":
    fresh_ok = re.compile(r".*/(me|shifts_\d+)/.*|params/fc/.*")
    not_ok = [p for p in missing if not fresh_ok.fullmatch("/".join(p))]
  else:
    not_ok = [] if allow_missing else missing
  if not_ok:
    raise ValueError(
      f"{fmt} state dict lacks {len(not_ok)} model arrays: "
      + ", ".join("/".join(p) for p in not_ok)
    )
  if missing:
    rng = jax.random.key(rng) if isinstance(rng, int) else rng
    for i, p in enumerate(missing):
      init = fresh_initializer(p, model.scale)
      values[p] = np.asarray(
        init(jax.random.fold_in(rng, i), target[p].shape, jnp.float32)
      )
    report.initialised = ["/".join(p) for p in missing]
  report.loaded = sorted("/".join(p) for p in values if p not in missing)

  dtype = jnp.dtype(model.param_dtype)
  variables: dict[str, Any] = {"params": {}, "batch_stats": {}}
  for (col, *path), value in values.items():
    node = variables[col]
    for name in path[:-1]:
      node = node.setdefault(name, {})
    cast = dtype if col == "params" else np.float32
    node[path[-1]] = np.asarray(value).astype(cast)
  return variables, report
