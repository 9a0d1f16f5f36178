"""Converts UniFormerV2 / CLIP weights into an art_jax params file.

  python -m art_jax.tools.convert_weights --src=k400_b16.pyth \
      --dst=uniformerv2_b16.msgpack --preset=b16 --num_classes=400
  python -m art_jax.tools.convert_weights --src=clip-vit-base-patch16/ \
      --dst=clip_b16.msgpack --preset=b16 --num_classes=99

--src: an official UniFormerV2 .pth/.pyth (read with torch.load and
weights_only=True, so no pickled code runs; torch is imported only then),
an OpenAI CLIP visual state dict (.pth/.pt), a .npz or .safetensors state
dict, or a Hugging Face CLIP directory (config.json + model.safetensors).
--preset picks the architecture (b16, l14, l14_336); without it the
architecture is inferred from the weights (see
art_jax.weights.infer_model_kwargs: CLIP's head width 64 is assumed, so
give --set=heads=N --set=n_head=N otherwise). --set=NAME=VALUE overrides
any UniFormerV2 field (VALUE is JSON). The output is one msgpack file
(flax.serialization) with the variables and JSON metadata; a training
config reads it with art_jax.weights.load_params_file (its `init_from`).
Prints the load report: arrays loaded, initialised fresh, keys ignored.
"""

import json
from collections.abc import Sequence
from typing import Any

from absl import app, flags

from art_jax import weights
from art_jax.models import uniformerv2 as uv2

_SRC = flags.DEFINE_string("src", None, "checkpoint file or HF directory")
_DST = flags.DEFINE_string("dst", None, "output params file (.msgpack)")
_PRESET = flags.DEFINE_enum(
  "preset", None, sorted(uv2.PRESETS), "architecture; inferred if unset"
)
_NUM_CLASSES = flags.DEFINE_integer(
  "num_classes", None, "head classes (default: preset's / checkpoint's)"
)
_SCAN = flags.DEFINE_bool("scan", True, "write the nn.scan layout")
_SET = flags.DEFINE_multi_string(
  "set", [], "model field override NAME=JSON_VALUE, e.g. --set=heads=12"
)
_SEED = flags.DEFINE_integer("seed", 0, "init seed for arrays not loaded")


def convert(
  src: str,
  dst: str,
  preset: str | None = None,
  num_classes: int | None = None,
  scan: bool = True,
  seed: int = 0,
  overrides: dict[str, Any] | None = None,
) -> weights.LoadReport:
  """Reads `src`, converts it for UniFormerV2 and writes `dst`."""
  state = weights.read_source(src)
  overrides = dict(overrides or {}, scan=scan)
  if num_classes is not None:
    overrides["num_classes"] = num_classes
  if preset is not None:
    kwargs = uv2.preset_kwargs(preset, **overrides)
  else:
    kwargs = dict(weights.infer_model_kwargs(state), **overrides)
  model = uv2.UniFormerV2(**kwargs)
  variables, report = weights.load_uniformerv2(state, model, rng=seed)
  weights.save_params_file(dst, variables, model, source=src)
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
  report = convert(
    _SRC.value,
    _DST.value,
    preset=_PRESET.value,
    num_classes=_NUM_CLASSES.value,
    scan=_SCAN.value,
    seed=_SEED.value,
    overrides=dict(_parse_override(s) for s in _SET.value),
  )
  print(report)
  print(f"wrote {_DST.value}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["src", "dst"])
  app.run(main)
