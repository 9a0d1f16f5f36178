"""Logical axis names and the one table that maps them onto mesh axes.

Every parameter and every constrained activation in art_jax names its axes
with the constants below. `LOGICAL_RULES` turns those names into mesh axes of
a `("data", "fsdp", "tensor")` mesh:

  * batch-like axes are split over data and fsdp (data parallelism),
  * the model width (`embed`) is split over fsdp (parameters are gathered
    per layer, ZeRO-3 style),
  * MLP hidden units, attention heads and classes are split over tensor.

A config may replace the table (`config.sharding.rules`), but the names here
are the vocabulary every module uses.
"""

from collections.abc import Sequence

# Activation axes.
BATCH = "batch"
TIME = "time"  # frames / backbone time steps
LENGTH = "length"  # tokens within one frame or one sentence
QUERIES = "queries"  # ART region queries / text tokens in the heads

# Parameter axes.
EMBED = "embed"  # model width C (backbone) or d (ART heads)
MLP = "mlp"  # hidden width of an MLP
HEADS = "heads"
KV = "kv"  # per-head width
LAYERS = "layers"  # the stacked axis created by nn.scan
CLASSES = "classes"
TEMPLATES = "templates"  # prompt templates of the text bank
TEXT_EMBED = "text_embed"  # CLIP joint embedding width D
VOCAB = "vocab"
CONV_SPATIAL = "conv_spatial"  # kernel extents of convolutions
NORM = "norm"  # LayerNorm / BatchNorm feature axis when it is not `embed`

LogicalRules = Sequence[tuple[str, str | tuple[str, ...] | None]]

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_RULES: LogicalRules = (
    (BATCH, ("data", "fsdp")),
    (EMBED, "fsdp"),
    (MLP, "tensor"),
    (HEADS, "tensor"),
    (CLASSES, "tensor"),
    (KV, None),
    (LAYERS, None),
    (TIME, None),
    (LENGTH, None),
    (QUERIES, None),
    (TEMPLATES, None),
    (TEXT_EMBED, None),
    (VOCAB, None),
    (CONV_SPATIAL, None),
    (NORM, None),
)
