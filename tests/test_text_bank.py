"""Text bank: building, saving, the CLI, and the tiny CLIP checkpoint."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

from art_jax import text_bank
from art_jax.demo import tiny_clip
from art_jax.models import clip_text

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLASSES = ["front flip", "salto backward tucked", "split leap"]
TEMPLATES = ["a video of a person doing {}.", "{}", "The person is doing {}."]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("tiny_clip"))
  return tiny_clip.write_tiny_clip_checkpoint(
    d,
    words=CLASSES + TEMPLATES,
    width=32,
    layers=2,
    heads=4,
    projection_dim=24,
    max_length=32,
  )


@pytest.fixture(scope="module")
def bank(clip_dir):
  return text_bank.build_text_bank(
    clip_dir, CLASSES, TEMPLATES, batch_size=4, progress=False
  )


def test_default_templates():
  templates = text_bank.DEFAULT_TEMPLATES
  assert 8 <= len(templates) <= 16
  for required in (
    "a video of a person doing {}.",
    "The person is doing {}.",
    "This is a video about {}.",
  ):
    assert required in templates
  assert all(t.count("{}") == 1 for t in templates)
  assert len(set(templates)) == len(templates)


def test_fill_templates_order_and_errors():
  prompts = text_bank.fill_templates(["a", "b"], ["x {}", "{} y"])
  assert prompts == ["x a", "a y", "x b", "b y"]
  with pytest.raises(ValueError, match="exactly one"):
    text_bank.fill_templates(["a"], ["no slot"])
  with pytest.raises(ValueError, match="no class names"):
    text_bank.fill_templates([], ["{}"])


def test_bank_shape_norm_and_single_encodes(clip_dir, bank):
  assert bank.shape == (3, 3, 24) and bank.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(bank, axis=-1), 1.0, atol=1e-6)
  # Distinct prompts give distinct embeddings.
  flat = bank.reshape(9, 24)
  assert np.max(flat @ flat.T - np.eye(9)) < 0.9999

  module, params, _ = clip_text.load_clip_text(clip_dir)
  tokenizer = transformers.AutoTokenizer.from_pretrained(clip_dir)
  for k, name in enumerate(CLASSES):
    for m, template in enumerate(TEMPLATES):
      one = text_bank.encode_texts(
        module,
        params,
        tokenizer,
        [template.format(name)],
        batch_size=1,
        progress=False,
      )
      np.testing.assert_allclose(one[0], bank[k, m], atol=1e-6)


def test_bank_matches_transformers(clip_dir, bank):
  """tiny_clip loads in transformers; its text_embeds agree with ours."""
  tokenizer = transformers.CLIPTokenizer.from_pretrained(clip_dir)
  model = transformers.CLIPTextModelWithProjection.from_pretrained(clip_dir)
  prompts = text_bank.fill_templates(CLASSES, TEMPLATES)
  tokens = tokenizer(prompts, padding=True, return_tensors="pt")
  with torch.no_grad():
    ref = model.eval()(**tokens).text_embeds.numpy()
  ref /= np.linalg.norm(ref, axis=-1, keepdims=True)
  np.testing.assert_allclose(bank.reshape(9, -1), ref, atol=1e-5)


def test_tiny_clip_words_are_single_tokens(tmp_path):
  d = tiny_clip.write_tiny_clip_checkpoint(
    str(tmp_path), width=16, layers=1, heads=2, projection_dim=8
  )
  tokenizer = transformers.CLIPTokenizer.from_pretrained(d)
  with open(os.path.join(d, "config.json")) as f:
    config = json.load(f)
  assert config["model_type"] == "clip_text_model"
  assert config["architectures"] == ["CLIPTextModelWithProjection"]
  assert config["vocab_size"] == len(tokenizer)
  assert config["eos_token_id"] == tokenizer.eos_token_id
  ids = tokenizer("The person is doing cartwheel.")["input_ids"]
  tokens = tokenizer.convert_ids_to_tokens(ids)
  # Default words come from the templates; unseen words fall back to bytes.
  assert tokens[:5] == [
    "<|startoftext|>",
    "the</w>",
    "person</w>",
    "is</w>",
    "doing</w>",
  ]
  assert tokens[-2:] == [".</w>", "<|endoftext|>"]
  assert "".join(tokens[5:-2]) == "cartwheel</w>"
  # Any byte sequence tokenizes without unknown tokens.
  ids = tokenizer("Ünïcode 中文 ~\t42")["input_ids"]
  assert tokenizer.unk_token_id not in ids[1:-1]


def test_tiny_clip_vocab_merges_words_whole():
  words = ["aaa aaaa abab baba ab ba bab", "round-off, it's 10.5"]
  vocab, merges = tiny_clip.build_vocab(words)
  ranks = {m: i for i, m in enumerate(merges)}
  for piece in {p for w in words for p in tiny_clip.pretokenize(w)}:
    assert tiny_clip.bpe(piece, ranks) == [piece + "</w>"]
    assert piece + "</w>" in vocab
  assert len(set(vocab.values())) == len(vocab)


def test_save_load_round_trip(tmp_path, bank):
  meta = {"class_names": CLASSES, "templates": TEMPLATES, "checkpoint": "x"}
  text_bank.save_text_bank(str(tmp_path), bank, meta)
  loaded, loaded_meta = text_bank.load_text_bank(str(tmp_path))
  np.testing.assert_array_equal(loaded, bank)
  assert loaded_meta["class_names"] == CLASSES
  assert loaded_meta["templates"] == TEMPLATES
  assert loaded_meta["checkpoint"] == "x"
  assert (loaded_meta["K"], loaded_meta["M"], loaded_meta["D"]) == (3, 3, 24)


def test_save_validates(tmp_path, bank):
  meta = {"class_names": CLASSES[:2], "templates": TEMPLATES, "checkpoint": "x"}
  with pytest.raises(ValueError, match="does not match 2 class names"):
    text_bank.save_text_bank(str(tmp_path), bank, meta)
  with pytest.raises(ValueError, match="lacks"):
    text_bank.save_text_bank(str(tmp_path), bank, {"class_names": CLASSES})
  with pytest.raises(ValueError, match=r"\(K, M, D\)"):
    text_bank.save_text_bank(str(tmp_path), bank[0], meta)


def test_load_validates(tmp_path, bank):
  with pytest.raises(FileNotFoundError, match="bank.npy"):
    text_bank.load_text_bank(str(tmp_path))
  meta = {"class_names": CLASSES, "templates": TEMPLATES, "checkpoint": "x"}
  text_bank.save_text_bank(str(tmp_path), bank, meta)
  np.save(tmp_path / "bank.npy", bank[:2])
  with pytest.raises(ValueError, match=r"shape \(2, 3, 24\), sidecar says"):
    text_bank.load_text_bank(str(tmp_path))
  np.save(tmp_path / "bank.npy", bank.astype(np.float64))
  with pytest.raises(ValueError, match="float64"):
    text_bank.load_text_bank(str(tmp_path))
  np.save(tmp_path / "bank.npy", bank)
  sidecar = json.loads((tmp_path / "bank.json").read_text())
  sidecar["class_names"] = CLASSES[:1]
  del sidecar["checkpoint"]
  (tmp_path / "bank.json").write_text(json.dumps(sidecar))
  with pytest.raises(ValueError, match="lacks 'checkpoint'"):
    text_bank.load_text_bank(str(tmp_path))


def test_cli_end_to_end(tmp_path, clip_dir, bank):
  classes = tmp_path / "classes.txt"
  classes.write_text("\n".join(CLASSES) + "\n\n")
  templates = tmp_path / "templates.txt"
  templates.write_text("\n".join(TEMPLATES) + "\n")
  out = tmp_path / "out"
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "art_jax.text_bank",
      f"--clip={clip_dir}",
      f"--classes={classes}",
      f"--out={out}",
      f"--templates={templates}",
      "--batch_size=5",
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "K=3 M=3 D=24" in proc.stdout
  loaded, meta = text_bank.load_text_bank(str(out))
  assert meta["checkpoint"] == clip_dir
  assert meta["class_names"] == CLASSES and meta["templates"] == TEMPLATES
  np.testing.assert_allclose(loaded, bank, atol=1e-6)


def test_long_texts_are_truncated_with_a_warning(clip_dir, caplog):
  module, params, _ = clip_text.load_clip_text(clip_dir)
  tokenizer = transformers.AutoTokenizer.from_pretrained(clip_dir)
  long = " ".join(["salto backward tucked"] * 20)
  with caplog.at_level("WARNING"):
    emb = text_bank.encode_texts(
      module, params, tokenizer, [long, "front flip"], progress=False
    )
  assert "1 of 2 texts are longer than 32 tokens" in caplog.text
  assert emb.shape == (2, 24) and np.all(np.isfinite(emb))
