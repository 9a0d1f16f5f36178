"""A tiny random CLIP text checkpoint, written with numpy only.

The demo runs on machines with no internet, so it cannot download a
released CLIP; it writes this instead and feeds it to the same loader
(`art_jax.models.clip_text.load_clip_text`) and tokenizer
(`transformers.AutoTokenizer`) a real checkpoint goes through.

The directory holds what a Hugging Face `CLIPTextModelWithProjection` save
holds: config.json, model.safetensors (random weights), and CLIP BPE
tokenizer files (vocab.json, merges.txt, tokenizer_config.json,
special_tokens_map.json). The vocabulary has the 256 byte-level symbols
and their end-of-word forms, so any text tokenizes, plus BPE merges that
build each given word into one token.
"""

import json
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import safetensors.numpy

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
END_OF_WORD = "</w>"

# CLIP's pre-tokenizer splits on this pattern (letters runs, single digits,
# punctuation runs, English contractions); Python's `re` has no \p{L}, so
# letters are "word characters that are neither digits nor '_'".
_PRETOKEN = re.compile(
  r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+", re.UNICODE
)


def bytes_to_unicode() -> dict[int, str]:
  """GPT-2/CLIP byte-level alphabet: each byte -> one printable character.

  Printable Latin-1 bytes map to themselves; the rest (controls, space)
  map to code points from 256 on, so BPE never sees whitespace.
  """
  keep = (
    list(range(ord("!"), ord("~") + 1))
    + list(range(ord("¡"), ord("¬") + 1))
    + list(range(ord("®"), ord("ÿ") + 1))
  )
  table = {b: chr(b) for b in keep}
  extra = 0
  for b in range(256):
    if b not in table:
      table[b] = chr(256 + extra)
      extra += 1
  return table


def pretokenize(text: str) -> list[str]:
  """Text -> byte-level pre-tokens, as CLIPTokenizer's normalizer and split."""
  byte_chars = bytes_to_unicode()
  text = re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).lower()
  return [
    "".join(byte_chars[b] for b in piece.encode("utf-8"))
    for piece in _PRETOKEN.findall(text)
  ]


def bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
  """Applies ranked merges to one pre-token (lowest rank first, leftmost)."""
  symbols = list(word[:-1]) + [word[-1] + END_OF_WORD]
  while len(symbols) > 1:
    pairs = [
      (ranks.get((a, b), len(ranks)), i)
      for i, (a, b) in enumerate(zip(symbols[:-1], symbols[1:]))
    ]
    rank, i = min(pairs)
    if rank == len(ranks):
      break
    symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
  return symbols


def build_vocab(
  words: Iterable[str],
) -> tuple[dict[str, int], list[tuple[str, str]]]:
  """Word list -> (vocab, merges) in which every pre-token is one token.

  Each pre-token gets the left-to-right merge chain c1+c2, c1c2+c3, ...;
  merges of different words can pre-empt each other, so words that do not
  come out whole get their remaining pieces chained again at the end of the
  list (late merges never change a word that is already whole).
  """
  alphabet = list(bytes_to_unicode().values())
  tokens = alphabet + [a + END_OF_WORD for a in alphabet]
  pieces = sorted(
    {p for text in words for p in pretokenize(text) if len(p) > 1}
  )
  merges: list[tuple[str, str]] = []
  ranks: dict[tuple[str, str], int] = {}

  def chain(symbols: list[str]) -> None:
    left = symbols[0]
    for right in symbols[1:]:
      if (left, right) not in ranks:
        ranks[(left, right)] = len(merges)
        merges.append((left, right))
      left = left + right

  for p in pieces:
    chain(list(p[:-1]) + [p[-1] + END_OF_WORD])
  # Each round strictly shortens every word still in pieces, so this ends.
  while True:
    broken = [s for s in (bpe(p, ranks) for p in pieces) if len(s) > 1]
    if not broken:
      break
    for symbols in broken:
      chain(symbols)
  seen = set(tokens)
  for a, b in merges:
    if a + b not in seen:
      seen.add(a + b)
      tokens.append(a + b)
  tokens += [BOS, EOS]
  return {t: i for i, t in enumerate(tokens)}, merges


def _default_words() -> list[str]:
  # Imported here: text_bank pulls in jax, which writing files does not need.
  from art_jax import text_bank

  return [t.replace("{}", " ") for t in text_bank.DEFAULT_TEMPLATES]


def write_tiny_clip_checkpoint(
  out_dir: str,
  words: Iterable[str] | None = None,
  width: int = 64,
  layers: int = 2,
  heads: int = 4,
  projection_dim: int = 64,
  max_length: int = 77,
  seed: int = 0,
) -> str:
  """Writes a random CLIPTextModelWithProjection checkpoint to `out_dir`.

  Args:
    out_dir: created if needed; existing files of the same names are
      replaced.
    words: texts whose words (pre-tokens) each become one vocabulary entry,
      e.g. class names and prompt templates; default: the words of
      `text_bank.DEFAULT_TEMPLATES`. Other text still tokenizes, byte by
      byte.
    width, layers, heads, projection_dim: hidden size C, blocks, attention
      heads, joint embedding width D.
    max_length: max_position_embeddings and the tokenizer's max length.
    seed: numpy seed of the random weights.

  Returns:
    out_dir.
  """
  if width % heads:
    raise ValueError(f"width {width} is not divisible by heads {heads}")
  words = _default_words() if words is None else list(words)
  vocab, merges = build_vocab(words)

  rng = np.random.default_rng(seed)

  def normal(std: float, *shape: int) -> np.ndarray:
    return (std * rng.standard_normal(shape)).astype(np.float32)

  # CLIP's init scales (std C^-0.5 for attention, smaller for residual
  # outputs); biases and LN get small noise so that loaders that drop or
  # transpose them are caught by parity tests.
  mlp = 4 * width
  attn_std = width**-0.5
  proj_std = attn_std * (2 * layers) ** -0.5
  t = "text_model"
  sd = {
    f"{t}.embeddings.token_embedding.weight": normal(0.02, len(vocab), width),
    f"{t}.embeddings.position_embedding.weight": normal(
      0.01, max_length, width
    ),
    f"{t}.final_layer_norm.weight": 1 + normal(0.02, width),
    f"{t}.final_layer_norm.bias": normal(0.02, width),
    "text_projection.weight": normal(attn_std, projection_dim, width),
  }
  for i in range(layers):
    p = f"{t}.encoder.layers.{i}"
    for name in ("q_proj", "k_proj", "v_proj"):
      sd[f"{p}.self_attn.{name}.weight"] = normal(attn_std, width, width)
      sd[f"{p}.self_attn.{name}.bias"] = normal(0.02, width)
    sd[f"{p}.self_attn.out_proj.weight"] = normal(proj_std, width, width)
    sd[f"{p}.self_attn.out_proj.bias"] = normal(0.02, width)
    for ln in ("layer_norm1", "layer_norm2"):
      sd[f"{p}.{ln}.weight"] = 1 + normal(0.02, width)
      sd[f"{p}.{ln}.bias"] = normal(0.02, width)
    sd[f"{p}.mlp.fc1.weight"] = normal((2 * width) ** -0.5, mlp, width)
    sd[f"{p}.mlp.fc1.bias"] = normal(0.02, mlp)
    sd[f"{p}.mlp.fc2.weight"] = normal(proj_std, width, mlp)
    sd[f"{p}.mlp.fc2.bias"] = normal(0.02, width)
  return write_checkpoint(out_dir, sd, vocab, merges, heads=heads)


def write_checkpoint(
  out_dir: str,
  state_dict: Mapping[str, np.ndarray],
  vocab: Mapping[str, int],
  merges: Sequence[tuple[str, str]],
  *,
  heads: int,
) -> str:
  """Writes a CLIPTextModelWithProjection checkpoint directory.

  state_dict: Hugging Face names (`text_model.*`, `text_projection.weight`),
  float32; the sizes (and the tokenizer's max length, the position table's
  rows) are read from it. vocab and merges as `build_vocab` makes them.
  Files of the same names in out_dir are replaced. -> out_dir.
  """
  t = "text_model"
  width = state_dict[f"{t}.final_layer_norm.weight"].shape[0]
  mlp = state_dict[f"{t}.encoder.layers.0.mlp.fc1.weight"].shape[0]
  layers = 1 + max(
    int(k.split(".")[3]) for k in state_dict if k.startswith(f"{t}.encoder.")
  )
  projection_dim = state_dict["text_projection.weight"].shape[0]
  max_length = state_dict[f"{t}.embeddings.position_embedding.weight"].shape[0]
  os.makedirs(out_dir, exist_ok=True)
  safetensors.numpy.save_file(
    {k: np.asarray(v, np.float32) for k, v in state_dict.items()},
    os.path.join(out_dir, "model.safetensors"),
    {"format": "pt"},
  )

  bos_id, eos_id = vocab[BOS], vocab[EOS]
  config = {
    "architectures": ["CLIPTextModelWithProjection"],
    "model_type": "clip_text_model",
    "vocab_size": len(vocab),
    "hidden_size": width,
    "intermediate_size": mlp,
    "num_hidden_layers": layers,
    "num_attention_heads": heads,
    "max_position_embeddings": max_length,
    "projection_dim": projection_dim,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "initializer_factor": 1.0,
    "bos_token_id": bos_id,
    "eos_token_id": eos_id,
    "pad_token_id": eos_id,
    "dtype": "float32",
  }
  special = {
    "bos_token": BOS,
    "eos_token": EOS,
    "unk_token": EOS,
    "pad_token": EOS,
  }
  tokenizer_config = {
    "tokenizer_class": "CLIPTokenizer",
    "model_max_length": max_length,
    "do_lower_case": True,
    "errors": "replace",
    "clean_up_tokenization_spaces": False,
    "added_tokens_decoder": {
      str(vocab[tok]): {
        "content": tok,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
        "special": True,
      }
      for tok in (BOS, EOS)
    },
    **special,
  }
  files = {
    "config.json": config,
    "vocab.json": vocab,
    "tokenizer_config.json": tokenizer_config,
    "special_tokens_map.json": special,
  }
  for name, content in files.items():
    with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
      json.dump(content, f, ensure_ascii=False, indent=1)
  with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n")
    f.writelines(f"{a} {b}\n" for a, b in merges)
  return out_dir
