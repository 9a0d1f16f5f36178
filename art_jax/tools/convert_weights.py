r"""Converts UniFormerV2 / CLIP / TEA / Res2Net weights to a params file.

  python -m art_jax.tools.convert_weights \
      --src=k400+k710_uniformerv2_b16_8x224.pyth --dst=uv2_k400_b16.msgpack
  python -m art_jax.tools.convert_weights --src=clip-vit-base-patch16/ \
      --dst=clip_b16.msgpack --preset=b16 --num_classes=99
  python -m art_jax.tools.convert_weights \
      --src=uniformerv2-base-p16-res224_clip-pre_u8_kinetics710-rgb_*.pth \
      --dst=uv2_k400_b16.msgpack --channel_map=map_k400.json
  python -m art_jax.tools.convert_weights \
      --src=res2net50_26w_4s-06e79181.pth \
      --dst=weights/res2net50_26w_4s.msgpack --num_classes=99

--src: an official UniFormerV2 .pth/.pyth or an mmaction2 UniFormerV2
checkpoint (read with torch.load and weights_only=True, so no pickled code
runs; torch is imported only then), an OpenAI CLIP visual state dict or
CLIP visual extract (.pth/.pt), a .npz or .safetensors state dict, or a
Hugging Face CLIP directory (config.json + model.safetensors).
--channel_map: a JSON list of class indices (mmaction2's
configs/recognition/uniformerv2/k710_channel_map/map_k400.json): the head
keeps those rows of the checkpoint's classifier, in that order, so a
Kinetics-710 head becomes a Kinetics-400/600/700 one (num_classes follows).
--preset picks the architecture (b16, l14, l14_336); without it the
architecture is inferred from the weights (see
art_jax.weights.infer_model_kwargs: CLIP's head width 64 is assumed, so
give --set=heads=N --set=n_head=N otherwise). The presets have Local MHRA
and temporal downsampling; Kinetics checkpoints (official and mmaction2)
have neither, so convert those without --preset, or add
--set=no_lmhra=true --set=temporal_downsample=false. --set=NAME=VALUE overrides
any UniFormerV2 field (VALUE is JSON). The output is one msgpack file
(flax.serialization) with the variables and JSON metadata; a training
config reads it with art_jax.weights.load_params_file (its `init_from`).
Prints the load report: arrays loaded, initialised fresh, keys ignored.

--arch=tea (inferred from the keys when unset: Res2Net `convs` or TEA's
ME / MTA keys): an ImageNet Res2Net-50 26w_4s (gasvn/Res2Net .pth, timm
.pth or model.safetensors) or an official TEA checkpoint becomes a TEA-R50
params file (art_jax.models.tea.tea_from_torch; --preset r50, --set
overrides TEA fields such as layers). From ImageNet weights ME, the MTA
temporal convs and fc keep their init and the file records them as such,
which a run's init_from report repeats ("initialised_in_file").
"""

import json
from collections.abc import Sequence
from typing import Any

from absl import app, flags

from art_jax import weights
from art_jax.models import backbones, tea
from art_jax.models import uniformerv2 as uv2


def define_flags() -> None:
  """Command-line flags (defined only when run as a program)."""
  flags.DEFINE_string("src", None, "checkpoint file or HF directory")
  flags.DEFINE_string("dst", None, "output params file (.msgpack)")
  flags.DEFINE_enum(
    "arch", None, sorted(backbones.KINDS), "backbone kind; inferred if unset"
  )
  flags.DEFINE_enum(
    "preset",
    None,
    sorted({*uv2.PRESETS, *tea.PRESETS}),
    "architecture; inferred if unset (TEA: r50)",
  )
  flags.DEFINE_integer(
    "num_classes", None, "head classes (default: preset's / checkpoint's)"
  )
  flags.DEFINE_bool("scan", True, "write the nn.scan layout")
  flags.DEFINE_multi_string(
    "set", [], "model field override NAME=JSON_VALUE, e.g. --set=heads=12"
  )
  flags.DEFINE_integer("seed", 0, "init seed for arrays not loaded")
  flags.DEFINE_string(
    "channel_map", None, "JSON list of classifier rows to keep (K710 -> K400)"
  )
  flags.mark_flags_as_required(["src", "dst"])


def convert(
  src: str,
  dst: str,
  preset: str | None = None,
  num_classes: int | None = None,
  scan: bool = True,
  seed: int = 0,
  overrides: dict[str, Any] | None = None,
  channel_map: str | None = None,
  arch: str | None = None,
) -> weights.LoadReport:
  """Reads `src`, converts it for UniFormerV2 or TEA (`arch`, else inferred
  from the keys) and writes `dst`."""
  state = weights.read_source(src)
  if (arch or detect_arch(state)) == "tea":
    if channel_map is not None:
      raise ValueError("--channel_map picks UniFormerV2 classifier rows")
    return _convert_tea(state, src, dst, preset, num_classes, seed, overrides)
  if channel_map is not None:
    state = weights.select_head_channels(
      state, weights.read_channel_map(channel_map)
    )
  overrides = dict(overrides or {}, scan=scan)
  if num_classes is not None:
    overrides["num_classes"] = num_classes
  if preset is not None:
    kwargs = uv2.preset_kwargs(preset, **overrides)
  else:
    kwargs = dict(weights.infer_model_kwargs(state), **overrides)
  model = uv2.UniFormerV2(**kwargs)
  variables, report = weights.load_uniformerv2(state, model, rng=seed)
  if channel_map is not None:
    report.notes.append(f"classifier rows picked by {channel_map}")
  weights.save_params_file(dst, variables, model, source=src)
  return report


def detect_arch(state: dict[str, Any]) -> str:
  """'tea' for TEA / Res2Net keys, else 'uniformerv2' (UniFormerV2, CLIP)."""
  try:
    tea.detect_format(state)
  except ValueError:
    return "uniformerv2"
  return "tea"


def _convert_tea(
  state: dict[str, Any],
  src: str,
  dst: str,
  preset: str | None,
  num_classes: int | None,
  seed: int,
  overrides: dict[str, Any] | None,
) -> weights.LoadReport:
  """TEA (official) or ImageNet Res2Net -> a TEA params file."""
  fields = dict(overrides or {})
  if num_classes is not None:
    fields["num_classes"] = num_classes
  model = backbones.build(
    "tea", backbones.preset_kwargs("tea", preset or "r50", **fields)
  )
  variables, report = tea.tea_from_torch(state, model, rng=seed)
  weights.save_params_file(
    dst, variables, model, source=src, initialised=report.initialised
  )
  return report


def _parse_override(text: str) -> tuple[str, Any]:
  name, sep, value = text.partition("=")
  if not sep:
    raise app.UsageError(f"--set expects NAME=VALUE, got {text!r}")
  try:
    return name, json.loads(value)
  except json.JSONDecodeError:
    return name, value


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  report = convert(
    f.src,
    f.dst,
    preset=f.preset,
    num_classes=f.num_classes,
    scan=f.scan,
    seed=f.seed,
    overrides=dict(_parse_override(s) for s in f.set),
    channel_map=f.channel_map,
    arch=f.arch,
  )
  print(report)
  print(f"wrote {f.dst}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
