"""The backbones ART runs on, and what the trainer needs to know of each.

`config.model.backbone_kind` picks one (paper Table I):
  * "uniformerv2" (default): UniFormerV2 (models/uniformerv2.py), the ViT
    rows; `model.preset` is b16, l14 or l14_336;
  * "tea": TEA-R50 (models/tea.py), the CNN rows; `model.preset` is r50.
`model.backbone` overrides fields of the preset (UniFormerV2 fields or TEA
fields, whichever the kind is). Every backbone's `__call__(video, train)`
returns `tokens` (B, T', L, C), `global` (B, C) and `logits` (B, K), which
is all ARTHeads read; everything else that differs between the kinds is in
`KINDS` and the functions below (the trainer, the tools and `ART` ask here).
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import ml_collections

from art_jax import weights
from art_jax.models import tea, uniformerv2

Variables = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Kind:
  """What differs between backbone kinds.

  Attributes:
    module: the linen module class.
    presets: `model.preset` name -> fields that differ from the defaults.
    classifier: the backbone head's module name (params/backbone/<it>/):
      leaves a pretrained file may have with another class count, and the
      class weights (C, K) of the class-activation maps.
    shared: `config.model` fields the module also takes.
    grid: (module kwargs, crop size) -> tokens per side of `tokens`.
  """

  module: type[nn.Module]
  presets: Mapping[str, Mapping[str, Any]]
  classifier: str
  shared: tuple[str, ...]
  grid: Callable[[Mapping[str, Any], int], int]


KINDS: dict[str, Kind] = {
  "uniformerv2": Kind(
    module=uniformerv2.UniFormerV2,
    presets=uniformerv2.PRESETS,
    classifier=uniformerv2.CLASSIFIER,
    shared=("remat_policy", "scan", "attention_impl"),
    grid=lambda kw, crop: crop // kw["patch_size"],
  ),
  "tea": Kind(
    module=tea.TEA,
    presets=tea.PRESETS,
    classifier="fc",
    # No attention and no scanned stack: attention_impl and scan are the
    # heads' alone.
    shared=("remat_policy",),
    grid=lambda kw, crop: tea.feature_size(crop, len(kw["layers"])),
  ),
}


def get(kind: str) -> Kind:
  """The `Kind` named `kind`; ValueError listing the choices otherwise."""
  if kind not in KINDS:
    raise ValueError(f"model.backbone_kind={kind!r}: use one of {tuple(KINDS)}")
  return KINDS[kind]


def preset_kwargs(kind: str, preset: str, **overrides: Any) -> dict[str, Any]:
  """Module fields of `preset` of `kind`, updated by `overrides`."""
  k = get(kind)
  if preset not in k.presets:
    raise ValueError(
      f"model.preset={preset!r} is no {k.module.__name__} size; use one of "
      f"{tuple(k.presets)}"
    )
  known = {f.name for f in dataclasses.fields(k.module)}
  unknown = sorted(set(overrides) - known)
  if unknown:
    raise ValueError(
      f"model.backbone has fields {k.module.__name__} does not take: {unknown}"
    )
  return dict(k.presets[preset], **overrides)


def kwargs_from_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The backbone's module fields from `config.model` and `config.data`
  (classes, frames, crop), without dtypes (the model sets those)."""
  m, d = config.model, config.data
  kind = m.get("backbone_kind", "uniformerv2")
  data = (
    dict(t_size=d.num_frames, input_resolution=d.crop_size)
    if kind == "uniformerv2"
    else dict(num_segments=d.num_frames)
  )
  kw = preset_kwargs(
    kind,
    m.preset,
    num_classes=d.num_classes,
    **data,
    **m.backbone.to_dict(),
  )
  kw.update({name: m[name] for name in get(kind).shared})
  return kw


def build(kind: str, kwargs: Mapping[str, Any], **fields: Any) -> nn.Module:
  """An unbound backbone module of `kind` (`fields` add to `kwargs`)."""
  return get(kind).module(**kwargs, **fields)


def config_problems(config: ml_collections.ConfigDict) -> list[str]:
  """What keeps the config's backbone from being built (empty if fine)."""
  try:
    kind = config.model.get("backbone_kind", "uniformerv2")
    module = build(kind, kwargs_from_config(config))
    module.check_config()
  except ValueError as e:
    return [str(e)]
  return []


def token_grid(kind: str, kwargs: Mapping[str, Any], crop: int) -> int:
  """Tokens per side of the backbone's `tokens` for `crop`-pixel frames."""
  return get(kind).grid(kwargs, crop)


def classifier_prefix(kind: str) -> str:
  """The backbone head's leaves, relative to params/backbone/."""
  return get(kind).classifier + "/"


def classifier_kernel(kind: str, backbone_params: Mapping[str, Any]) -> Any:
  """The class weights (C, K) the head applies to pooled tokens (CAMs)."""
  return backbone_params[get(kind).classifier]["kernel"]


def params_file_kind(meta: Mapping[str, Any]) -> str:
  """The backbone kind a params file holds (weights.save_params_file)."""
  name = weights.params_file_module(meta)
  for kind, k in KINDS.items():
    if name == k.module.__name__.lower():
      return kind
  raise ValueError(f"params file of unknown format {meta.get('format')!r}")


def load_variables(
  kind: str, path: str, kwargs: Mapping[str, Any]
) -> tuple[Variables, dict[str, Any]]:
  """(variables, metadata) of a params file, in the layout of the backbone
  `kwargs` describe; ValueError if the file holds another kind
  (`weights.load_backbone_file`)."""
  return weights.load_backbone_file(path, build(kind, kwargs))
