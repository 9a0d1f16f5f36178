"""The text-constrained semantic bank S (spec section 2), built offline.

S has shape (K, M, D): the CLIP text embedding of each of M prompt
templates filled with each of K class names, L2-normalised, float32.
It is written once as `bank.npy` with a `bank.json` sidecar (class names,
templates, checkpoint id, D, K, M) and read by training.

  python -m art_jax.text_bank --clip=openai/clip-vit-base-patch16 \
      --classes=classes.txt --out=DIR [--templates=FILE] [--batch_size=256]

`--clip` is a local Hugging Face checkpoint directory or a hub id (fetched
with huggingface_hub; a user's machine needs internet for that). The
classes and templates files hold one entry per line; a template has one
`{}` where the class name goes.
"""

import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
import transformers
from absl import app, flags

from art_jax.models import clip_text

# In the style of ActionCLIP's prompt ensembles: M = 16 views of one action.
DEFAULT_TEMPLATES: tuple[str, ...] = (
  "a video of a person doing {}.",
  "The person is doing {}.",
  "This is a video about {}.",
  "a video of the action {}.",
  "a clip of someone doing {}.",
  "Human action of {}.",
  "{}, an action.",
  "{}, a video of an action.",
  "Playing a kind of action, {}.",
  "Doing a kind of action, {}.",
  "Look, the human is doing {}.",
  "Can you recognize the action of {}?",
  "Video classification of {}.",
  "The man is doing {}.",
  "The woman is doing {}.",
  "An athlete performing {}.",
)

BANK_FILE = "bank.npy"
META_FILE = "bank.json"


def fill_templates(
  class_names: Sequence[str], templates: Sequence[str]
) -> list[str]:
  """K class names x M templates -> K*M prompts, class-major (k * M + m)."""
  for t in templates:
    if t.count("{}") != 1:
      raise ValueError(f"template {t!r} must contain exactly one '{{}}'")
  if not class_names:
    raise ValueError("no class names")
  if not templates:
    raise ValueError("no templates")
  return [t.replace("{}", c) for c in class_names for t in templates]


# The module is static (linen modules hash by their fields), so repeated
# calls with the same module and shapes reuse one compiled encoder.
@functools.partial(jax.jit, static_argnums=(0, 1))
def _encode(
  module: clip_text.CLIPTextTransformer,
  normalize: bool,
  params: Any,
  input_ids: jax.Array,
  attention_mask: jax.Array,
) -> jax.Array:
  """(B, L) tokens -> (B, D) float32 text embeddings."""
  out = module.apply({"params": params}, input_ids, attention_mask)
  out = out["text_embeds"].astype(jnp.float32)
  if normalize:
    out = out / jnp.linalg.norm(out, axis=-1, keepdims=True)
  return out


def encode_texts(
  module: clip_text.CLIPTextTransformer,
  params: Any,
  tokenizer: Any,
  texts: Sequence[str],
  *,
  batch_size: int = 256,
  max_length: int | None = None,
  normalize: bool = True,
  progress: bool = True,
) -> np.ndarray:
  """Encodes texts -> (N, D) float32 `text_embeds`, L2-normalised if asked.

  Every batch is padded to `max_length` tokens (default: the model's
  max_position_embeddings) and to `batch_size` rows, so the jitted encoder
  compiles once. Texts longer than that are truncated (EOS kept).
  """
  max_length = max_length or module.max_position_embeddings
  texts = list(texts)
  # Long class names (FineGym's are sentences) lose their tails silently
  # otherwise.
  lengths = (
    [len(ids) for ids in tokenizer(texts, verbose=False)["input_ids"]]
    if texts
    else []
  )
  truncated = [t for t, n in zip(texts, lengths) if n > max_length]
  if truncated:
    logging.warning(
      "%d of %d texts are longer than %d tokens and are truncated, e.g. %r",
      len(truncated),
      len(texts),
      max_length,
      truncated[0],
    )
  outputs = []
  with tqdm.tqdm(
    total=len(texts), desc="text bank", unit="text", disable=not progress
  ) as bar:
    for start in range(0, len(texts), batch_size):
      chunk = texts[start : start + batch_size]
      # Pad with copies of the first text; their rows are dropped below.
      padded = chunk + [chunk[0]] * (batch_size - len(chunk))
      tokens = tokenizer(
        padded,
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="np",
      )
      emb = _encode(
        module,
        normalize,
        params,
        jnp.asarray(tokens["input_ids"], jnp.int32),
        jnp.asarray(tokens["attention_mask"], jnp.int32),
      )
      outputs.append(np.asarray(emb)[: len(chunk)])
      bar.update(len(chunk))
  if not outputs:
    return np.zeros((0, module.projection_dim), np.float32)
  return np.concatenate(outputs)


def resolve_checkpoint(clip: str) -> str:
  """A local checkpoint dir as is; a hub id -> its downloaded snapshot dir."""
  if os.path.isdir(clip):
    return clip
  if clip.startswith(("/", ".", "~")) or os.path.exists(clip):
    raise FileNotFoundError(f"{clip} is not a checkpoint directory")
  import huggingface_hub  # Only needed for hub ids.

  # Configs, tokenizer files and safetensors only: not the duplicate
  # pytorch/tf/flax weights most CLIP repos also carry.
  local = huggingface_hub.snapshot_download(
    clip, allow_patterns=["*.json", "*.txt", "*.safetensors"]
  )
  if not any(f.endswith(".safetensors") for f in os.listdir(local)):
    local = huggingface_hub.snapshot_download(
      clip, allow_patterns=["*.json", "*.txt", "pytorch_model.bin"]
    )
  return local


def build_text_bank(
  checkpoint_dir: str,
  class_names: Sequence[str],
  templates: Sequence[str] = DEFAULT_TEMPLATES,
  batch_size: int = 256,
  progress: bool = True,
) -> np.ndarray:
  """Class names x templates -> L2-normalised bank (K, M, D) float32.

  The tokenizer and text tower both come from `checkpoint_dir`, a local
  Hugging Face CLIP checkpoint directory.
  """
  prompts = fill_templates(class_names, templates)
  module, params, _ = clip_text.load_clip_text(checkpoint_dir)
  tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint_dir)
  # Some tokenizer configs leave model_max_length "infinite"; the position
  # table is the real limit.
  max_length = min(tokenizer.model_max_length, module.max_position_embeddings)
  batch_size = max(1, min(batch_size, len(prompts)))
  emb = encode_texts(
    module,
    params,
    tokenizer,
    prompts,
    batch_size=batch_size,
    max_length=max_length,
    progress=progress,
  )
  return emb.reshape(len(class_names), len(templates), -1)


def save_text_bank(out_dir: str, bank: np.ndarray, meta: Mapping) -> None:
  """Writes bank.npy and the bank.json sidecar.

  `meta` holds class_names (K), templates (M) and checkpoint (an id or
  path); D, K and M are taken from `bank` (K, M, D) and must agree.
  """
  bank = np.asarray(bank)
  if bank.ndim != 3:
    raise ValueError(f"bank must be (K, M, D), got shape {bank.shape}")
  required = ("class_names", "templates", "checkpoint")
  missing = [k for k in required if k not in meta]
  if missing:
    raise ValueError(f"meta lacks {missing}")
  k, m, d = bank.shape
  if len(meta["class_names"]) != k or len(meta["templates"]) != m:
    raise ValueError(
      f"bank shape {bank.shape} does not match {len(meta['class_names'])} "
      f"class names x {len(meta['templates'])} templates"
    )
  sidecar = dict(meta)
  sidecar.update(
    class_names=list(meta["class_names"]),
    templates=list(meta["templates"]),
    K=k,
    M=m,
    D=d,
  )
  os.makedirs(out_dir, exist_ok=True)
  np.save(os.path.join(out_dir, BANK_FILE), bank.astype(np.float32))
  with open(os.path.join(out_dir, META_FILE), "w", encoding="utf-8") as f:
    json.dump(sidecar, f, ensure_ascii=False, indent=1)


def load_text_bank(bank_dir: str) -> tuple[np.ndarray, dict[str, Any]]:
  """Reads (bank (K, M, D) float32, meta) and checks them against each other."""
  bank_path = os.path.join(bank_dir, BANK_FILE)
  meta_path = os.path.join(bank_dir, META_FILE)
  for path in (bank_path, meta_path):
    if not os.path.exists(path):
      raise FileNotFoundError(
        f"{path} not found: build the bank with "
        "`python -m art_jax.text_bank --clip=... --classes=... --out=...`"
      )
  with open(meta_path, encoding="utf-8") as f:
    meta = json.load(f)
  bank = np.load(bank_path)
  problems = []
  for key in ("class_names", "templates", "checkpoint", "K", "M", "D"):
    if key not in meta:
      problems.append(f"{META_FILE} lacks {key!r}")
  if not problems:
    want = (meta["K"], meta["M"], meta["D"])
    if bank.shape != want:
      problems.append(
        f"{BANK_FILE} has shape {bank.shape}, sidecar says {want}"
      )
    n_classes, n_templates = len(meta["class_names"]), len(meta["templates"])
    if n_classes != meta["K"]:
      problems.append(f"{n_classes} class names but K={meta['K']}")
    if n_templates != meta["M"]:
      problems.append(f"{n_templates} templates but M={meta['M']}")
  if bank.dtype != np.float32:
    problems.append(f"{BANK_FILE} has dtype {bank.dtype}, expected float32")
  elif not np.all(np.isfinite(bank)):
    problems.append(f"{BANK_FILE} has non-finite values")
  if problems:
    raise ValueError(f"invalid text bank in {bank_dir}: " + "; ".join(problems))
  return bank, meta


def blank_bank(num_classes: int) -> np.ndarray:
  """The bank of a model that reads no text (model.heads.use_text=False):
  one zero template of width 1 per class, (K, 1, 1). The heads take only
  its class count; it keeps the train state's shape and the (unused) text
  fine-tuning parameters tiny."""
  return np.zeros((num_classes, 1, 1), np.float32)


def load_for_config(
  config: ml_collections.ConfigDict,
) -> tuple[np.ndarray, dict[str, Any]]:
  """(bank, meta) a run reads: text_bank.dir's, or the blank bank (and no
  meta) when the model reads no text."""
  if not config.model.heads.get("use_text", True):
    return blank_bank(config.data.num_classes), {}
  return load_text_bank(config.text_bank.dir)


def read_lines(path: str) -> list[str]:
  """Non-empty stripped lines of a text file."""
  with open(path, encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip()]


def define_flags() -> None:
  """Command-line flags (defined only when run as a program)."""
  flags.DEFINE_string(
    "clip",
    "openai/clip-vit-base-patch16",
    "Hugging Face CLIP checkpoint: local directory or hub id",
  )
  flags.DEFINE_string("classes", None, "text file, one class name per line")
  flags.DEFINE_string("out", None, "output directory")
  flags.DEFINE_string(
    "templates",
    None,
    "text file, one template with '{}' per line (default: built in)",
  )
  flags.DEFINE_integer("batch_size", 256, "texts per encoder call")
  flags.mark_flags_as_required(["classes", "out"])


def main(argv: Sequence[str]) -> None:
  del argv
  f = flags.FLAGS
  class_names = read_lines(f.classes)
  templates = (
    read_lines(f.templates) if f.templates else list(DEFAULT_TEMPLATES)
  )
  checkpoint_dir = resolve_checkpoint(f.clip)
  bank = build_text_bank(
    checkpoint_dir, class_names, templates, batch_size=f.batch_size
  )
  meta = {
    "class_names": class_names,
    "templates": templates,
    "checkpoint": f.clip,
  }
  save_text_bank(f.out, bank, meta)
  k, m, d = bank.shape
  print(f"wrote {os.path.join(f.out, BANK_FILE)}: K={k} M={m} D={d}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
