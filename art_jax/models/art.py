"""ART: Action-Region Tracking heads on a UniFormerV2 or TEA backbone.

Spec sections 3-9 (docs/method.md walks through them with these names):

  * `ARTHeads` takes the backbone's patch tokens X (B, T', L, C), its global
    feature g (B, C) and the EMA text bank S (K, M, D) and computes the text
    top-k selection (§3), spatial semantic enhancement SE (§4), region
    queries and responses RSSA (§5), tracklets (§6), tracklet aggregation TA
    (§8) and the final classifier (§9).
  * `ART` composes a backbone (`backbones.KINDS`: UniFormerV2 or TEA) and
    `ARTHeads`.

The heads also own the two parameters that only the text fine-tuning losses
read: the agent bank S' (`agent_bank`, (K, M, D)) and the class prototypes
Π (`prototypes`, (K, D)). The model itself reads S, never S', so S' gets
gradients from L_ft only (spec §10).
"""

import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from art_jax import sharding as sh
from art_jax.models import backbones, layers

Dtype = Any

TEXT_SELECTIONS = ("global_head", "video_text")

checkpoint_name = jax.ad_checkpoint.checkpoint_name
_gelu = functools.partial(nn.gelu, approximate=False)


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-6) -> jax.Array:
  """x / max(||x||, eps) along `axis`, computed in float32."""
  x = x.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True))
  return x / jnp.maximum(norm, eps)


class EncoderLayer(nn.Module):
  """Pre-LN transformer encoder layer: x + MHSA(LN x), then x + MLP(LN x).

  Scan-compatible: `__call__(x, _) -> (x, None)`; `train` is a field so
  that nn.scan / nn.remat need no static arguments.
  """

  num_heads: int
  mlp_ratio: int
  dropout_rate: float = 0.0
  train: bool = False
  attention_impl: str = "xla"  # "cudnn": flash attention on GPUs
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, _: Any = None) -> tuple[jax.Array, None]:
    drop = nn.Dropout(self.dropout_rate, deterministic=not self.train)
    y = layers.LayerNorm(param_dtype=self.param_dtype, name="ln_1")(x)
    y, _ = layers.MultiHeadAttention(
      self.num_heads,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      attention_impl=self.attention_impl,
      name="attn",
    )(y)
    x = x + drop(checkpoint_name(y, "attn_out"))
    y = layers.LayerNorm(param_dtype=self.param_dtype, name="ln_2")(x)
    y = layers.Mlp(
      self.mlp_ratio * x.shape[-1],
      activation=_gelu,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="mlp",
    )(y)
    return x + drop(checkpoint_name(y, "mlp_out")), None


class DecoderLayer(nn.Module):
  """Pre-LN decoder layer: query self-attn, cross-attn to memory, MLP.

  Scan-compatible: `__call__(q, memory) -> (q, attention_map)` where the
  map is the cross-attention averaged over heads, (..., Lq, Lk) float32.
  """

  num_heads: int
  mlp_ratio: int
  dropout_rate: float = 0.0
  train: bool = False
  attention_impl: str = "xla"  # self-attention; cross-attention returns maps
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
    self, q: jax.Array, memory: jax.Array
  ) -> tuple[jax.Array, jax.Array]:
    drop = nn.Dropout(self.dropout_rate, deterministic=not self.train)
    attn = functools.partial(
      layers.MultiHeadAttention,
      self.num_heads,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      attention_impl=self.attention_impl,
    )
    norm = functools.partial(layers.LayerNorm, param_dtype=self.param_dtype)
    y, _ = attn(name="self_attn")(norm(name="ln_1")(q))
    q = q + drop(checkpoint_name(y, "attn_out"))
    y, weights = attn(name="cross_attn")(
      norm(name="ln_2")(q), memory, return_weights=True
    )
    q = q + drop(checkpoint_name(y, "attn_out"))
    y = layers.Mlp(
      self.mlp_ratio * q.shape[-1],
      activation=_gelu,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="mlp",
    )(norm(name="ln_3")(q))
    return q + drop(checkpoint_name(y, "mlp_out")), jnp.mean(weights, -3)


class Stack(nn.Module):
  """`num_layers` identical layers, scanned (axis `layers`) or looped.

  `layer_cls` is `EncoderLayer` or `DecoderLayer`; `broadcast` is the
  per-call input every layer sees (the decoder's memory) or None. Returns
  (x, last layer's second output).
  """

  layer_cls: type[nn.Module]
  layer_kwargs: Mapping[str, Any]
  num_layers: int
  scan: bool = True
  remat_policy: str = "none"

  @nn.compact
  def __call__(
    self, x: jax.Array, broadcast: jax.Array | None = None
  ) -> tuple[jax.Array, Any]:
    if self.scan:
      stack = layers.remat_scan(
        self.layer_cls, self.remat_policy, self.num_layers
      )(**self.layer_kwargs, name="layers")
      x, ys = stack(x, broadcast)
      return x, jax.tree.map(lambda y: y[-1], ys)
    layer = layers.remat_scan(self.layer_cls, self.remat_policy)
    y = None
    for i in range(self.num_layers):
      x, y = layer(**self.layer_kwargs, name=f"layers_{i}")(x, broadcast)
    return x, y


class ARTHeads(nn.Module):
  """ART's heads: text top-k, SE, RSSA, tracklets, TA, final classifier.

  Attributes:
    num_classes: K; must equal the bank's first axis.
    latent_dim: d, the width of the SE encoder and RSSA decoder.
    num_queries: N region queries per frame = number of tracklets (N <= k).
    top_k: k classes whose text semantics are selected (k <= K); each
      contributes one vector, the normalised mean of its M templates.
    text_selection: how the k classes are chosen (spec §3), always without
      gradient through the choice: "global_head" (default), the top-k of
      softmax(logits_g), the backbone head trained by CE in every setting;
      "video_text", the top-k of cos(v, S̄_c), v = normalize(W_v g), which
      needs a loss that trains W_v (L_vc / L_pc, or L_align with text
      fine-tuning off: `losses.LossConfig.use_align`).
    se_layers / decoder_layers: depth of SE and of the RSSA decoder.
    use_rssa: False gives the baseline (Table IV setting 1): only the text
      branch (v, top-k, S', Π) is computed, no 'logits'; `ART` then uses the
      backbone's logits.
    use_se: False replaces SE by the identity (setting 3).
    use_ta: False sums each tracklet over time instead of TA (setting 2).
    use_text: False reads no text (paper Table I's ART-R50, input modality
      "Video"; docs/method.md): the k selected classes' vectors are rows of
      a learned class table (K, d), `class_embed`, instead of the bank's
      projected text; the bank is then only a placeholder for its class
      count. Needs text_selection="global_head" (no text to score).
    ta_temperature: κ_a of the temporal saliency softmax.
    dropout_rate: before the final linear classifier.
    layer_dropout_rate: on the residual branches of SE / decoder layers.
    scan / remat_policy: nn.scan over the identical layers of each stack;
      remat_policy is 'none' or a key of `layers.REMAT_POLICIES`
      (layers tag their residual branches 'attn_out' / 'mlp_out').
    attention_impl: "xla" or "cudnn" for the SE and decoder self-attention
      (the decoder's cross-attention returns its maps, so it stays "xla").
    detach_backbone: read X and g through a stop-gradient, so that the
      heads' losses (final CE, MTC, L_ft) train the heads only and the
      backbone learns from its own head's CE (not in the paper; a
      diagnostic of how the heads' gradients act on a shared backbone).
  """

  num_classes: int
  latent_dim: int = 256
  num_queries: int = 2
  top_k: int = 8
  text_selection: str = "global_head"
  se_layers: int = 4
  decoder_layers: int = 4
  num_heads: int = 8
  mlp_ratio: int = 4
  use_rssa: bool = True
  use_se: bool = True
  use_ta: bool = True
  use_text: bool = True
  ta_temperature: float = 0.1
  dropout_rate: float = 0.5
  layer_dropout_rate: float = 0.0
  scan: bool = True
  remat_policy: str = "none"
  attention_impl: str = "xla"
  detach_backbone: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def _dense(self, features: int, axes: tuple[str, str], name: str):
    return layers.dense(
      features, axes, dtype=self.dtype, param_dtype=self.param_dtype, name=name
    )

  def _stack(
    self, layer_cls: type[nn.Module], depth: int, train: bool, name: str
  ) -> Stack:
    kwargs = dict(
      num_heads=self.num_heads,
      mlp_ratio=self.mlp_ratio,
      dropout_rate=self.layer_dropout_rate,
      train=train,
      attention_impl=self.attention_impl,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
    )
    return Stack(
      layer_cls,
      kwargs,
      depth,
      scan=self.scan,
      remat_policy=self.remat_policy,
      name=name,
    )

  @nn.compact
  def __call__(
    self,
    tokens: jax.Array,
    global_feat: jax.Array,
    global_logits: jax.Array,
    bank: jax.Array,
    train: bool = False,
  ) -> dict[str, jax.Array]:
    """Runs the heads.

    Args:
      tokens: X, (B, T', L, C) backbone patch tokens.
      global_feat: g, (B, C) backbone global feature.
      global_logits: logits_g, (B, K) the backbone head's logits (read by
        text_selection="global_head", without gradient).
      bank: S, (K, M, D) EMA text bank (train state, no gradient).
      train: enables dropout.

    Returns:
      A dict with
        video_embed (B, D) v, class_text (K, D) S̄ (the bank's normalised
        per-class means), topk (B, k) int32 selected class ids (by
        descending score), topk_scores (B, k) their scores, agent_bank
        (K, M, D) S', prototypes (K, D) Π; and unless the baseline
        (`use_rssa=False`): logits (B, K) float32, responses (B, T', N, d)
        R, region_content (B, T', N, d) float32 o = A X̃ (each query's
        response map over the enhanced tokens: what MTC reads),
        response_maps (B, T', N, L) float32 (last
        decoder layer's cross-attention, mean over heads), text_tokens
        (B, T', k, d) Ẽ, saliency (B, T', N) TA weights a (ones if
        `use_ta=False`), tracklets (B, N, d) aggregated τ̂.
    """
    b, t, length, _ = tokens.shape
    k_cls, _, d_text = bank.shape
    if k_cls != self.num_classes:
      raise ValueError(
        f"bank has {k_cls} classes, heads have num_classes={self.num_classes}"
      )
    if self.num_queries > self.top_k:
      raise ValueError(
        f"num_queries={self.num_queries} must be <= top_k={self.top_k}: "
        "region queries add the first N of the k selected text tokens"
      )
    if self.top_k > k_cls:
      raise ValueError(
        f"top_k={self.top_k} exceeds the bank's {k_cls} classes (the "
        "selection picks classes)"
      )
    if self.text_selection not in TEXT_SELECTIONS:
      raise ValueError(
        f"text_selection={self.text_selection!r} not in {TEXT_SELECTIONS}"
      )
    if not self.use_text and self.text_selection != "global_head":
      raise ValueError(
        "use_text=False scores no text: use text_selection='global_head'"
      )
    policies = ("none", *layers.REMAT_POLICIES)
    if self.remat_policy not in policies:
      raise ValueError(f"remat_policy={self.remat_policy!r} not in {policies}")
    d = self.latent_dim
    bank = jax.lax.stop_gradient(bank)
    if self.detach_backbone:
      tokens, global_feat = jax.lax.stop_gradient((tokens, global_feat))

    # Text fine-tuning parameters (spec §10): S' starts as the bank given at
    # init, Π as the bank's normalised per-class mean (the class centres).
    agent_bank = self.param(
      "agent_bank",
      nn.with_logical_partitioning(
        lambda _: bank.astype(self.param_dtype),
        (sh.CLASSES, sh.TEMPLATES, sh.TEXT_EMBED),
      ),
    )
    prototypes = self.param(
      "prototypes",
      nn.with_logical_partitioning(
        lambda _: l2_normalize(bank.mean(axis=1)).astype(self.param_dtype),
        (sh.CLASSES, sh.TEXT_EMBED),
      ),
    )

    # §3: v = normalize(W_v g), the video in text space (L_vc, L_pc,
    # L_align). In float32 (a (B, C) x (C, D) product): a selection made
    # from it does not depend on the compute dtype.
    v = layers.dense(
      d_text,
      (sh.EMBED, sh.TEXT_EMBED),
      dtype=jnp.float32,
      param_dtype=self.param_dtype,
      name="video_proj",
    )(global_feat.astype(jnp.float32))
    v = l2_normalize(v)
    # Class-level text: S̄_c = normalize(mean_m S_{c,m}), one per class.
    class_text = l2_normalize(bank.astype(jnp.float32).mean(axis=1))
    if self.text_selection == "global_head":
      scores = jax.nn.softmax(global_logits.astype(jnp.float32), axis=-1)
    else:
      scores = v @ class_text.T  # (B, K)
    topk_scores, topk = jax.lax.top_k(jax.lax.stop_gradient(scores), self.top_k)
    out = {
      "video_embed": v,
      "class_text": class_text,
      "topk": topk.astype(jnp.int32),
      "topk_scores": topk_scores,
      "agent_bank": agent_bank,
      "prototypes": prototypes,
    }
    if not self.use_rssa:
      return out

    if self.use_text:
      text = class_text[topk]  # T_k (B, k, D)
      text = self._dense(d, (sh.TEXT_EMBED, sh.EMBED), "text_proj")(text)
    else:  # E = C[topk]: learned class vectors in place of W_t T_k
      table = self.param(
        "class_embed",
        nn.with_logical_partitioning(
          nn.initializers.normal(0.02), (sh.CLASSES, sh.EMBED)
        ),
        (self.num_classes, d),
        self.param_dtype,
      )
      text = table[topk].astype(self.dtype)
    x = self._dense(d, (sh.EMBED, sh.MLP), "token_proj")(tokens)
    x = nn.with_logical_constraint(x, (sh.BATCH, sh.TIME, sh.LENGTH, sh.EMBED))

    # §4 SE: per time step, [W_x X_t ; E] through the encoder, B*T' batched.
    x = x.reshape(b * t, length, d)
    text = jnp.broadcast_to(text[:, None], (b, t, self.top_k, d)).reshape(
      b * t, self.top_k, d
    )
    if self.use_se:
      seq = jnp.concatenate([x, text.astype(x.dtype)], axis=1)
      seq = nn.with_logical_constraint(seq, (sh.BATCH, sh.LENGTH, sh.EMBED))
      seq, _ = self._stack(EncoderLayer, self.se_layers, train, "se")(seq)
      seq = layers.LayerNorm(param_dtype=self.param_dtype, name="se_norm")(seq)
      x, text = seq[:, :length], seq[:, length:]
    text = text.astype(self.dtype)

    # §5 RSSA: Q_t = P + Ẽ_t[:N]; R_t = Dec(Q_t, X̃_t).
    prompts = self.param(
      "query_prompts",
      nn.with_logical_partitioning(
        nn.initializers.normal(0.02), (sh.QUERIES, sh.EMBED)
      ),
      (self.num_queries, d),
      self.param_dtype,
    )
    queries = prompts.astype(self.dtype) + text[:, : self.num_queries]
    queries = nn.with_logical_constraint(
      queries, (sh.BATCH, sh.QUERIES, sh.EMBED)
    )
    resp, maps = self._stack(
      DecoderLayer, self.decoder_layers, train, "decoder"
    )(queries, x)
    # The region content MTC reads (spec §7): the enhanced tokens X̃_t
    # weighted by each query's response map, (B*T', N, d). Only where the
    # queries look enters it, never the query itself.
    content = jnp.einsum("bnl,bld->bnd", maps, x.astype(jnp.float32))
    resp = layers.LayerNorm(param_dtype=self.param_dtype, name="decoder_norm")(
      resp
    )
    resp = resp.reshape(b, t, self.num_queries, d)
    resp = nn.with_logical_constraint(
      resp, (sh.BATCH, sh.TIME, sh.QUERIES, sh.EMBED)
    )
    text = text.reshape(b, t, self.top_k, d)

    # §6 tracklets τ_n = R[:, :, n]; §8 TA: temporal saliency from cos(R, Ẽ).
    if self.use_ta:
      sim = jnp.einsum(
        "btnd,btjd->btnj", l2_normalize(resp), l2_normalize(text)
      )
      saliency = jax.nn.softmax(sim / self.ta_temperature, axis=1).mean(-1)
    else:
      saliency = jnp.ones((b, t, self.num_queries), jnp.float32)
    tracklets = jnp.einsum("btn,btnd->bnd", saliency, resp.astype(jnp.float32))

    # §9: z = LN([W_g g ; τ̂_1 ; ... ; τ̂_N]) -> Dropout -> Linear.
    g = self._dense(d, (sh.EMBED, sh.MLP), "global_proj")(global_feat)
    z = jnp.concatenate(
      [g.astype(jnp.float32), tracklets.reshape(b, self.num_queries * d)],
      axis=-1,
    ).astype(self.dtype)
    z = layers.LayerNorm(param_dtype=self.param_dtype, name="head_norm")(z)
    z = nn.Dropout(self.dropout_rate, deterministic=not train)(z)
    # The classifier in float32, like the backbone head's.
    logits = layers.dense(
      self.num_classes,
      (sh.EMBED, sh.CLASSES),
      dtype=jnp.float32,
      param_dtype=self.param_dtype,
      name="head",
    )(z.astype(jnp.float32))

    out.update(
      logits=logits.astype(jnp.float32),
      responses=resp,
      region_content=content.reshape(b, t, self.num_queries, d),
      response_maps=maps.reshape(b, t, self.num_queries, length),
      text_tokens=text,
      saliency=saliency,
      tracklets=tracklets,
    )
    return out


class ART(nn.Module):
  """A backbone (UniFormerV2 or TEA) + ARTHeads.

  Attributes:
    backbone: kwargs of the backbone module (a preset, possibly
      overridden; `backbones.kwargs_from_config`).
    heads: kwargs of `ARTHeads`; `num_classes` defaults to the backbone's.
    backbone_kind: a key of `backbones.KINDS` ("uniformerv2" or "tea").
    dtype / param_dtype: set on both parts unless their kwargs name them.

  Parameters live under `backbone/` (so converted backbone weights load as
  a subtree) and `heads/`.
  """

  backbone: Mapping[str, Any]
  heads: Mapping[str, Any]
  backbone_kind: str = "uniformerv2"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
    self, video: jax.Array, bank: jax.Array, train: bool = False
  ) -> dict[str, jax.Array]:
    """video (B, T, H, W, 3), bank S (K, M, D) -> ARTHeads' dict plus
    logits_global (B, K) and global (B, C). In the baseline (heads with
    use_rssa=False) `logits` is `logits_global`."""
    dtypes = {"dtype": self.dtype, "param_dtype": self.param_dtype}
    backbone_kw = {**dtypes, **self.backbone}
    heads_kw = {
      "num_classes": backbone_kw.get("num_classes"),
      **dtypes,
      **self.heads,
    }
    feats = backbones.build(self.backbone_kind, backbone_kw, name="backbone")(
      video, train=train
    )
    out = ARTHeads(**heads_kw, name="heads")(
      feats["tokens"], feats["global"], feats["logits"], bank, train=train
    )
    out["logits_global"] = feats["logits"].astype(jnp.float32)
    out["global"] = feats["global"]
    out["tokens"] = feats["tokens"]  # for class-activation maps (viz)
    if "logits" not in out:
      out["logits"] = out["logits_global"]
    return out


def class_weights(
  params: Mapping[str, Any], kind: str = "uniformerv2"
) -> jax.Array:
  """The backbone classifier's kernel (C, K) in ART's params (`kind`: the
  backbone, `ART.backbone_kind`): the class-activation map projects the
  tokens on its column k."""
  return backbones.classifier_kernel(kind, params["backbone"])
