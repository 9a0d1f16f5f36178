"""ART's losses (spec §7, §10, §11), each a pure function returning a scalar.

Every function casts its inputs to float32 first, so bf16 model outputs give
float32 losses. Shapes: B batch, T' time steps, N region queries, d latent
width, K classes, M prompt templates, D text width. Labels are int class ids.

`total_loss` reads the dict returned by `art_jax.models.art.ART` and a
`LossConfig` of weights and switches (every ablation of paper Tables IV-VI);
`ema_update` is the momentum update of the text bank (Eq. 12), applied by the
train step after the optimiser step.
"""

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax


def _normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  x = x.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
  return x / jnp.maximum(norm, eps)


def cross_entropy(
  logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0
) -> jax.Array:
  """Mean softmax cross-entropy. logits (B, K), labels (B,) int -> ()."""
  logits = logits.astype(jnp.float32)
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return jnp.mean(optax.softmax_cross_entropy(logits, targets))


def spatial_loss(responses: jax.Array) -> jax.Array:
  """Eq. 5: repel the N region contents of one frame.

  mean over b, t and ordered pairs i != j of relu(cos(r_{t,i}, r_{t,j})).
  responses (B, T', N, d), in `total_loss` the region content o -> ();
  0 when N = 1.
  """
  r = _normalize(responses)
  n = r.shape[-2]
  if n < 2:
    return jnp.zeros((), jnp.float32)
  cos = jnp.einsum("btid,btjd->btij", r, r)
  off_diag = 1.0 - jnp.eye(n, dtype=jnp.float32)
  pairs = jnp.sum(jax.nn.relu(cos) * off_diag, axis=(-2, -1))
  return jnp.mean(pairs) / (n * (n - 1))


def temporal_loss(responses: jax.Array, margin: float = 0.6) -> jax.Array:
  """Eq. 6: attract each query's responses in adjacent frames up to δ.

  mean over b, t < T' and n of relu(δ - cos(r_{t,n}, r_{t+1,n})).
  responses (B, T', N, d) -> (); 0 when T' = 1.
  """
  r = _normalize(responses)
  if r.shape[1] < 2:
    return jnp.zeros((), jnp.float32)
  cos = jnp.sum(r[:, :-1] * r[:, 1:], axis=-1)
  return jnp.mean(jax.nn.relu(margin - cos))


def tracklet_loss(responses: jax.Array, temperature: float = 0.1) -> jax.Array:
  """Eq. 7: InfoNCE that tells the N tracklets apart.

  c_n = normalize(mean_t r_{t,n}); each response r_{t,n} must pick its own
  tracklet centre c_n among c_1..c_N with logits cos(r_{t,n}, c_m) / κ.
  responses (B, T', N, d) -> (), mean over b, t, n.
  """
  r = _normalize(responses)
  centres = _normalize(jnp.mean(r, axis=1))  # (B, N, d)
  logits = jnp.einsum("btnd,bmd->btnm", r, centres) / temperature
  n = r.shape[-2]
  log_p = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.sum(log_p * jnp.eye(n, dtype=jnp.float32), axis=-1))


def mtc_loss(
  responses: jax.Array,
  *,
  w_spa: float = 1.0,
  w_tem: float = 1.0,
  w_trk: float = 1.0,
  use_spa: bool = True,
  use_tem: bool = True,
  use_trk: bool = True,
  margin: float = 0.6,
  temperature: float = 0.1,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Eq. 8: w_spa L_spa + w_tem L_tem + w_trk L_trk over the switched-on terms.

  responses (B, T', N, d): what the terms compare; `total_loss` passes the
  region content o (spec §7), not the query-carrying responses R.
  -> ((), {'spa'|'tem'|'trk': ()} for terms on).
  """
  terms = {}
  if use_spa:
    terms["spa"] = (w_spa, spatial_loss(responses))
  if use_tem:
    terms["tem"] = (w_tem, temporal_loss(responses, margin))
  if use_trk:
    terms["trk"] = (w_trk, tracklet_loss(responses, temperature))
  total = sum((w * v for w, v in terms.values()), jnp.zeros((), jnp.float32))
  return total, {name: v for name, (_, v) in terms.items()}


def map_overlap(maps: jax.Array) -> jax.Array:
  """How much the N response maps of a frame overlap (a diagnostic).

  Histogram intersection sum_l min(A_{t,i,l}, A_{t,j,l}) of two maps, mean
  over b, t and pairs i < j: 1 when the queries attend alike, 0 when they
  attend to disjoint tokens. maps (B, T', N, L), rows summing to 1 -> ();
  0 when N = 1.
  """
  a = maps.astype(jnp.float32)
  n = a.shape[-2]
  if n < 2:
    return jnp.zeros((), jnp.float32)
  inter = jnp.sum(jnp.minimum(a[..., :, None, :], a[..., None, :, :]), -1)
  upper = jnp.triu(jnp.ones((n, n), jnp.float32), k=1)
  return jnp.mean(jnp.sum(inter * upper, (-2, -1))) / (n * (n - 1) / 2)


def video_text_alignment_loss(
  video_embed: jax.Array,
  class_text: jax.Array,
  labels: jax.Array,
  temperature: float = 0.07,
) -> jax.Array:
  """L_align: classify the video by cos(v, S̄_c) against the EMA bank.

  Trains W_v (and the backbone) so that text_selection="video_text" picks
  the video's classes when text fine-tuning is off (spec §3 reading b); S̄
  is the bank's per-class mean and gets no gradient.
  video_embed (B, D), class_text (K, D), labels (B,) -> ().
  """
  cos = (
    _normalize(video_embed) @ jax.lax.stop_gradient(_normalize(class_text)).T
  )
  return cross_entropy(cos / temperature, labels)


def video_consistency_loss(
  video_embed: jax.Array,
  agent_bank: jax.Array,
  labels: jax.Array,
  temperature: float = 0.07,
) -> jax.Array:
  """Eq. 13-14: winner-take-all video-to-text classification.

  score_c = max_m cos(v, S'_{c,m}); CE(score / κ_v, y).
  video_embed (B, D), agent_bank (K, M, D), labels (B,) -> ().
  """
  cos = jnp.einsum(
    "bd,kmd->bkm", _normalize(video_embed), _normalize(agent_bank)
  )
  return cross_entropy(jnp.max(cos, axis=-1) / temperature, labels)


def prototype_consistency_loss(
  prototypes: jax.Array,
  agent_bank: jax.Array,
  video_embed: jax.Array,
  labels: jax.Array,
  temperature: float = 0.07,
) -> jax.Array:
  """Eq. 15-16: prototypes agree with their class's text and with videos.

  S̄'_c = normalize(mean_m S'_{c,m}); Sim = cos(Π, S̄') (K, K);
  CE(Sim / κ_v, identity) + CE(cos(v, Π) / κ_v, y).
  prototypes (K, D), agent_bank (K, M, D), video_embed (B, D),
  labels (B,) -> ().
  """
  protos = _normalize(prototypes)
  centres = _normalize(jnp.mean(agent_bank.astype(jnp.float32), axis=1))
  sim = protos @ centres.T
  num_classes = protos.shape[0]
  text_term = cross_entropy(sim / temperature, jnp.arange(num_classes))
  video_term = cross_entropy(
    _normalize(video_embed) @ protos.T / temperature, labels
  )
  return text_term + video_term


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Weights and switches of Eq. 18 (hashable: safe to close over in jit).

  Attributes:
    label_smoothing: for both classification cross-entropies.
    use_global / use_final: CE(logits_g, y) / CE(logits, y). The baseline
      (Table IV setting 1) has no final head: use_final=False.
    use_mtc, lambda_mtc, use_spa / use_tem / use_trk, w_*: Eq. 8 (Table V).
    mtc_warmup_steps: ramps λ_mtc linearly from 0 over this many optimiser
      steps (0: the paper's constant λ_mtc). Not in the paper.
    margin: δ of L_tem; tracklet_temperature: κ of L_trk.
    use_ft, lambda_ft, use_vc / use_pc: Eq. 17 (Table VI).
    text_temperature: κ_v of L_vc, L_pc and L_align.
    use_align, lambda_align: L_align (`video_text_alignment_loss`), which
      trains the selection of text_selection="video_text" when text
      fine-tuning is off; not in the paper, off by default.
  """

  label_smoothing: float = 0.0
  use_global: bool = True
  use_final: bool = True
  use_mtc: bool = True
  lambda_mtc: float = 1.0
  mtc_warmup_steps: int = 0
  use_spa: bool = True
  use_tem: bool = True
  use_trk: bool = True
  w_spa: float = 1.0
  w_tem: float = 1.0
  w_trk: float = 1.0
  margin: float = 0.6
  tracklet_temperature: float = 0.1
  use_ft: bool = True
  lambda_ft: float = 1.0
  use_vc: bool = True
  use_pc: bool = True
  text_temperature: float = 0.07
  use_align: bool = False
  lambda_align: float = 1.0


def mtc_weight(cfg: LossConfig, step: jax.Array | int) -> jax.Array:
  """λ_mtc at optimiser step `step` (after cfg.mtc_warmup_steps' ramp)."""
  if cfg.mtc_warmup_steps <= 0:
    return jnp.asarray(cfg.lambda_mtc, jnp.float32)
  ramp = jnp.asarray(step, jnp.float32) / cfg.mtc_warmup_steps
  return cfg.lambda_mtc * jnp.clip(ramp, 0.0, 1.0)


def total_loss(
  outputs: Mapping[str, jax.Array],
  labels: jax.Array,
  cfg: LossConfig = LossConfig(),
  step: jax.Array | int = 0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Eq. 18: CE(logits_g) + CE(logits) + λ_mtc L_mtc + λ_ft L_ft.

  Args:
    outputs: the dict of `ART` (logits_global, logits, region_content,
      video_embed, class_text, agent_bank, prototypes; only those the
      switched-on terms read are required; response_maps, when present,
      give the 'map_overlap' diagnostic).
    labels: (B,) int class ids.
    cfg: weights and switches.
    step: optimiser steps done, read only by cfg.mtc_warmup_steps.

  Returns:
    (total (), terms) where terms holds every switched-on term unweighted
    ('ce_global', 'ce_final', 'spa', 'tem', 'trk', 'mtc', 'vc', 'pc', 'ft',
    'align'), 'total', and 'map_overlap' (not in the total) when the
    outputs hold response maps.
  """
  terms: dict[str, jax.Array] = {}
  total = jnp.zeros((), jnp.float32)
  ls = cfg.label_smoothing
  if cfg.use_global:
    terms["ce_global"] = cross_entropy(outputs["logits_global"], labels, ls)
    total += terms["ce_global"]
  if cfg.use_final:
    terms["ce_final"] = cross_entropy(outputs["logits"], labels, ls)
    total += terms["ce_final"]
  if cfg.use_mtc:
    if "region_content" not in outputs:
      raise ValueError(
        "use_mtc needs 'region_content': the baseline model "
        "(use_rssa=False) has none; switch loss.use_mtc off"
      )
    terms["mtc"], parts = mtc_loss(
      outputs["region_content"],
      w_spa=cfg.w_spa,
      w_tem=cfg.w_tem,
      w_trk=cfg.w_trk,
      use_spa=cfg.use_spa,
      use_tem=cfg.use_tem,
      use_trk=cfg.use_trk,
      margin=cfg.margin,
      temperature=cfg.tracklet_temperature,
    )
    terms.update(parts)
    total += mtc_weight(cfg, step) * terms["mtc"]
  if cfg.use_ft and (cfg.use_vc or cfg.use_pc):
    ft = jnp.zeros((), jnp.float32)
    v, agent = outputs["video_embed"], outputs["agent_bank"]
    if cfg.use_vc:
      terms["vc"] = video_consistency_loss(
        v, agent, labels, cfg.text_temperature
      )
      ft += terms["vc"]
    if cfg.use_pc:
      terms["pc"] = prototype_consistency_loss(
        outputs["prototypes"], agent, v, labels, cfg.text_temperature
      )
      ft += terms["pc"]
    terms["ft"] = ft
    total += cfg.lambda_ft * ft
  if cfg.use_align:
    terms["align"] = video_text_alignment_loss(
      outputs["video_embed"],
      outputs["class_text"],
      labels,
      cfg.text_temperature,
    )
    total += cfg.lambda_align * terms["align"]
  if "response_maps" in outputs:  # a diagnostic, never in the total
    terms["map_overlap"] = jax.lax.stop_gradient(
      map_overlap(outputs["response_maps"])
    )
  terms["total"] = total
  return total, terms


def ema_update(
  bank: jax.Array,
  agent: jax.Array,
  momentum: float | jax.Array = 0.999,
  renormalize: bool = True,
) -> jax.Array:
  """Eq. 12: S <- m S + (1 - m) S', the EMA text bank update.

  With `renormalize` (default) S' is normalised before mixing and the result
  projected back onto the unit sphere, so S stays L2-normalised as built
  (spec §2) however the norm of S' drifts under the optimiser (the L_ft
  losses are cosine-based, so they do not pin it down).
  `renormalize=False` is Eq. 12 literally. momentum = 1 freezes S.
  bank, agent (K, M, D) -> (K, M, D) in bank's dtype; no gradient.
  """
  bank = jnp.asarray(bank)
  bank32 = bank.astype(jnp.float32)
  agent32 = jax.lax.stop_gradient(agent).astype(jnp.float32)
  if renormalize:
    agent32 = _normalize(agent32)
  new = momentum * bank32 + (1.0 - momentum) * agent32
  if renormalize:
    new = _normalize(new)
  return new.astype(bank.dtype)
