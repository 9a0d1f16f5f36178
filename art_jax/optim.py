"""Optimisers: AdamW + warmup/cosine (ViT default) or SGD + step decay.

Parameters under the `backbone` subtree (UniFormerV2, usually pretrained)
train at `lr * backbone_lr_mult`; ART's heads at `lr`. Weight decay touches
only layer kernels, never biases, norm scales, embeddings, prompts, the
agent text bank or the class prototypes (`weight_decay_mask`).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

# Leaf names that get weight decay: the weights of dense, attention and
# convolution layers. Everything else (biases, LayerNorm / BatchNorm scales,
# class / positional embeddings and tokens, the query prompts, the agent
# text bank, the class prototypes, the fusion balance) never decays,
# whatever its rank: under nn.scan a bias is (layers, C) and a q/k/v bias is
# (heads, head_dim) even unscanned, so rank cannot tell them apart.
DECAY_LEAF_NAMES = ("kernel",)


def path_str(path: tuple) -> str:
  """'backbone/resblocks/attn/query/kernel' from a jax tree path."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def weight_decay_mask(params):
  """True for the leaves named in DECAY_LEAF_NAMES (layer kernels)."""

  def decays(path, _):
    return path_str(path).split("/")[-1] in DECAY_LEAF_NAMES

  return jax.tree_util.tree_map_with_path(decays, params)


def param_groups(params):
  """'backbone' for the UniFormerV2 subtree, 'heads' for everything else."""
  return jax.tree_util.tree_map_with_path(
    lambda p, _: "backbone" if path_str(p).startswith("backbone") else "heads",
    params,
  )


def learning_rate_schedule(
  optim: ml_collections.ConfigDict,
  total_steps: int,
  warmup_steps: int,
  decay_steps: int,
) -> optax.Schedule:
  """Peak-lr schedule (before the backbone multiplier)."""
  if optim.name == "adamw":
    if warmup_steps == 0:
      return optax.cosine_decay_schedule(
        optim.lr, max(1, total_steps), alpha=optim.min_lr / optim.lr
      )
    return optax.warmup_cosine_decay_schedule(
      0.0,
      optim.lr,
      warmup_steps,
      decay_steps=max(total_steps, warmup_steps + 1),
      end_value=optim.min_lr,
    )
  # SGD: x decay_factor every decay_steps (the paper: 0.01, x0.1 / 20 ep).
  step_decay = optax.exponential_decay(
    optim.lr, decay_steps, optim.decay_factor, staircase=True
  )
  if warmup_steps == 0:
    return step_decay
  warmup = optax.linear_schedule(0.0, optim.lr, warmup_steps)
  return optax.join_schedules([warmup, step_decay], [warmup_steps])


def make_optimizer(
  optim: ml_collections.ConfigDict, schedule: optax.Schedule
) -> optax.GradientTransformation:
  """Clipping + per-group optimiser with lr multipliers and a decay mask."""

  def group(mult: float) -> optax.GradientTransformation:
    lr: Callable = lambda step: mult * schedule(step)
    if optim.name == "adamw":
      return optax.adamw(
        lr,
        b1=optim.b1,
        b2=optim.b2,
        weight_decay=optim.weight_decay,
        mask=weight_decay_mask,
      )
    return optax.chain(
      optax.add_decayed_weights(optim.weight_decay, weight_decay_mask),
      optax.sgd(lr, momentum=optim.momentum),
    )

  chain = []
  if optim.clip_grad_norm:
    chain.append(optax.clip_by_global_norm(optim.clip_grad_norm))
  chain.append(
    optax.partition(
      {"backbone": group(optim.backbone_lr_mult), "heads": group(1.0)},
      param_groups,
    )
  )
  return optax.chain(*chain)


def global_norm(tree) -> jax.Array:
  """L2 norm over every leaf, in float32."""
  leaves = jax.tree.leaves(tree)
  return jnp.sqrt(
    sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves)
  )
