"""The demo's tiny CLIP: captioned random motions, contrastive pretraining,
the written checkpoints and the probe."""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import transformers
from test_config import load_config

from art_jax import config_lib, text_bank, weights
from art_jax.data import synthetic
from art_jax.demo import clip_pretrain, inputs, tiny_clip
from art_jax.demo import motion_captions as mc
from art_jax.models import build, clip_text
from art_jax.tools import clip_probe

NAMES = list(synthetic.CLASS_NAMES)
TEMPLATES = list(text_bank.DEFAULT_TEMPLATES[:4])


def tiny_config(tmp_path, **pretrain):
  """The demo config at runlocal size with a tiny CLIP of a few steps."""
  c = load_config("demo", "runlocal")
  c.unlock()
  c.data.dir = str(tmp_path / "data")
  c.data.crop_size = 32
  c.model.backbone.update(
    width=32,
    layers=2,
    heads=2,
    patch_size=8,
    return_list=(0, 1),
    n_layers=2,
    n_dim=32,
    n_head=2,
  )
  c.text_bank.clip = clip_pretrain.CLIP_NAME
  c.text_bank.dir = str(tmp_path / "bank")
  c.init_from.path = None
  c.init_from.pose_pretrain.steps = 0
  c.text_bank.pretrain.update(
    dict(
      steps=4,
      batch_size=8,
      num_clips=16,
      width=32,
      layers=1,
      heads=2,
      projection_dim=16,
    )
  )
  # The demo's tiny CLIP follows its pose backbone, locked; these tests
  # start the video tower from scratch unless they say otherwise.
  c.text_bank.pretrain.update(init_backbone=None, lock_video=False)
  c.text_bank.pretrain.update(pretrain)
  return c


# --- captioned random motions ----------------------------------------------


def test_captions_name_the_clip_events_in_time_order():
  seen_pairs, seen_kinds = set(), set()
  for i in range(400):
    rng = np.random.default_rng([3, i])
    events = mc.sample_events(rng, pair_fraction=0.5)
    text = mc.caption(events, rng)
    assert mc.parse_caption(text) == events, text
    if len(events) == 2:
      assert events[0][0] != events[1][0]  # distinct limbs
      seen_pairs.add(events)
    seen_kinds |= set(events)
  # The whole compositional space, not the demo's 12 classes.
  assert len(seen_kinds) == len(synthetic.LIMBS) * len(synthetic.MOTIONS)
  assert len(seen_pairs) > 60
  for i in range(8):
    clip = mc.render_captioned(0, i, size=32, num_frames=8)
    assert mc.parse_caption(clip.caption) == clip.events
    assert clip.frames.shape == (8, 32, 32, 3) and clip.frames.dtype == np.uint8
    assert 0.0 <= clip.difficulty <= 1.0


def test_both_orders_of_a_pair_are_phrased_with_order_words():
  e = (("left_arm", "flick"), ("right_arm", "circle"))
  rng = np.random.default_rng(0)
  forward = {mc.caption(e, rng) for _ in range(200)}
  backward = {mc.caption(e[::-1], rng) for _ in range(200)}
  assert not forward & backward
  assert all(mc.parse_caption(t) == e[::-1] for t in backward)
  assert len(forward) > 50  # many phrasings


def test_captioned_clips_are_deterministic_and_rephrasing_keeps_pixels():
  a = mc.render_captioned(5, 7, size=32)
  b = mc.render_captioned(5, 7, size=32)
  np.testing.assert_array_equal(a.frames, b.frames)
  assert (a.caption, a.events, a.difficulty) == (
    b.caption,
    b.events,
    b.difficulty,
  )
  c = mc.render_captioned(5, 8, size=32)
  assert not np.array_equal(a.frames, c.frames)
  # The event stream is apart from the wording stream.
  other = mc.caption(a.events, np.random.default_rng(123))
  assert mc.parse_caption(other) == a.events


def test_render_events_is_render_for_class_events():
  for label in (0, 9):
    t = np.linspace(0, 1, 8)
    ours = synthetic.render_events(
      synthetic.CLASSES[label][1], np.random.default_rng(4), t, 32, 0.5
    )
    np.testing.assert_array_equal(ours, synthetic.render(label, 4, 8, 32, 0.5))
  # Motions no class has: a leg held up differs from a leg circling.
  t = np.linspace(0, 1, 8)
  hold = synthetic.render_events(
    (("right_leg", "hold"),), np.random.default_rng(1), t, 32
  )
  circle = synthetic.render_events(
    (("right_leg", "circle"),), np.random.default_rng(1), t, 32
  )
  assert np.abs(hold.astype(int) - circle).mean() > 0.5


def test_no_caption_is_a_class_name_and_every_word_is_one_token():
  names = [re.compile(rf"\b{re.escape(n)}\b") for n in NAMES]
  vocab, _ = tiny_clip.build_vocab(clip_pretrain.text_words(NAMES, TEMPLATES))
  for i in range(2000):
    rng = np.random.default_rng([11, i])
    text = mc.caption(mc.sample_events(rng), rng)
    assert text not in NAMES
    assert not any(n.search(text) for n in names), text
    for piece in tiny_clip.pretokenize(text):
      assert piece + tiny_clip.END_OF_WORD in vocab, (piece, text)
  for text in NAMES + TEMPLATES:
    for piece in tiny_clip.pretokenize(text.replace("{}", " ")):
      assert piece + tiny_clip.END_OF_WORD in vocab, piece


def test_frame_times_follow_the_demo_sampling():
  c = load_config("demo")
  t = clip_pretrain.frame_times(c, np.random.default_rng(0))
  assert len(t) == c.data.num_frames
  np.testing.assert_allclose(np.diff(t), 2 / 15, rtol=1e-6)


# --- the loss and the checkpoints ------------------------------------------


def test_contrastive_loss_rewards_alignment_and_shares_duplicates():
  x = jax.random.normal(jax.random.key(0), (6, 8))
  aligned, m = clip_pretrain.contrastive_loss(x, x, jnp.log(1 / 0.07))
  shuffled, _ = clip_pretrain.contrastive_loss(x, x[::-1], jnp.log(1 / 0.07))
  assert float(aligned) < 0.5 < float(shuffled)
  assert float(m["accuracy"]) == 1.0
  np.testing.assert_allclose(float(m["temperature"]), 0.07, rtol=1e-5)
  same_all = jnp.ones((6, 6))
  collapsed, _ = clip_pretrain.contrastive_loss(
    jnp.ones((6, 8)), jnp.ones((6, 8)), jnp.log(1 / 0.07), same_all
  )
  # All captions alike: the target is uniform, the loss its entropy.
  np.testing.assert_allclose(float(collapsed), np.log(6), rtol=1e-5)
  same = mc.same_events(
    [(("left_arm", "flick"),)] * 2 + [(("left_arm", "hold"),)]
  )
  np.testing.assert_array_equal(same, [[1, 1, 0], [1, 1, 0], [0, 0, 1]])


def test_params_to_hf_inverts_params_from_hf(tmp_path):
  d = tiny_clip.write_tiny_clip_checkpoint(
    str(tmp_path / "c"), words=NAMES, width=32, layers=2, heads=2
  )
  sd = clip_text.read_state_dict(d)
  for scan in (True, False):
    _, params, _ = clip_text.load_clip_text(d, scan=scan)
    back = clip_text.params_to_hf(params)
    assert sorted(back) == sorted(sd)
    for k, v in sd.items():
      np.testing.assert_array_equal(back[k], v, err_msg=k)


@pytest.mark.slow  # compiles a UniFormerV2 train step (~30-120 s)
def test_contrastive_loss_decreases_on_a_tiny_batch(tmp_path):
  c = tiny_config(tmp_path)
  videos, events = clip_pretrain.render(c, 0, 8)
  d = tiny_clip.write_tiny_clip_checkpoint(
    str(tmp_path / "t"),
    words=clip_pretrain.text_words(NAMES, TEMPLATES),
    width=32,
    layers=1,
    heads=2,
    projection_dim=16,
  )
  tok = transformers.AutoTokenizer.from_pretrained(d)
  text_module, text_params, _ = clip_text.load_clip_text(d, scan=False)
  rng = np.random.default_rng(0)
  ids = clip_pretrain.tokenize(tok, [mc.caption(e, rng) for e in events], 32)
  video = clip_pretrain.video_model(c)
  variables = video.init(jax.random.key(0), jnp.zeros(videos[:1].shape))
  params = {
    "video": variables["params"],
    "text": text_params,
    "logit_scale": jnp.log(1 / 0.07),
  }
  stats = variables["batch_stats"]
  tx = optax.adam(3e-3)
  opt = tx.init(params)
  step = clip_pretrain.make_train_step(video, text_module, tx)
  same = mc.same_events(events)
  losses = []
  for i in range(12):
    params, stats, opt, m = step(
      params, stats, opt, videos, ids, same, jax.random.key(i)
    )
    losses.append(float(m["loss"]))
  assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.slow  # compiles a UniFormerV2 train step (~30-120 s)
def test_pretraining_writes_a_clip_checkpoint_the_bank_reads(tmp_path):
  c = tiny_config(tmp_path)
  summary = clip_pretrain.pretrain(c, NAMES, TEMPLATES)
  assert summary["steps"] == 4 and np.isfinite(summary["loss_last"])
  d = clip_pretrain.text_dir(c)
  # Exactly the files tiny_clip writes.
  ref = tiny_clip.write_tiny_clip_checkpoint(str(tmp_path / "ref"), NAMES)
  assert sorted(os.listdir(d)) == sorted(os.listdir(ref))
  # The bank through the same code path as any CLIP equals the trained
  # Flax text tower's (normalised) text features.
  bank = text_bank.build_text_bank(d, NAMES, TEMPLATES, progress=False)
  module, params, _ = clip_text.load_clip_text(d, scan=False)
  tok = transformers.AutoTokenizer.from_pretrained(d)
  prompts = text_bank.fill_templates(NAMES, TEMPLATES)
  ids = clip_pretrain.tokenize(tok, prompts, clip_pretrain.TRAIN_TOKENS)
  feats = np.asarray(
    clip_pretrain.normalize(
      module.apply({"params": params}, ids)["text_embeds"]
    )
  )
  np.testing.assert_allclose(bank.reshape(feats.shape), feats, atol=2e-5)
  # Trained: the weights moved away from the random start.
  start = clip_text.read_state_dict(
    tiny_clip.write_tiny_clip_checkpoint(
      str(tmp_path / "start"),
      words=clip_pretrain.text_words(NAMES, TEMPLATES),
      width=32,
      layers=1,
      heads=2,
      projection_dim=16,
    )
  )
  trained = clip_text.read_state_dict(d)
  key = "text_projection.weight"
  assert np.abs(start[key] - trained[key]).max() > 1e-4
  # The video tower is a params file init_from loads (head re-initialised).
  path = clip_pretrain.video_backbone_path(c)
  variables, meta = weights.read_params_file(path)
  assert json.loads(meta["source"])["clip_pretrain"]["steps"] == 4
  backbone = dict(build.build_model(c).backbone)
  loaded = weights.load_params_file(
    path, clip_pretrain.uniformerv2.UniFormerV2(**backbone)
  )
  assert loaded["params"]["proj_2"]["kernel"].shape[-1] == 16
  assert clip_pretrain.is_built(c)


def test_ensure_text_bank_pretrains_once_and_the_probe_reads_it(tmp_path):
  c = tiny_config(tmp_path)
  c.data.synthetic.update(num_train=24, num_val=12)
  inputs.ensure_synthetic_data(c)
  inputs.ensure_text_bank(c)
  bank, meta = text_bank.load_text_bank(c.text_bank.dir)
  assert meta["checkpoint"] == clip_pretrain.CLIP_NAME
  assert bank.shape[:2] == (12, c.text_bank.num_templates)
  path = clip_pretrain.video_backbone_path(c)
  mtime = os.path.getmtime(path)
  inputs.ensure_text_bank(c)
  assert os.path.getmtime(path) == mtime
  result = clip_probe.zero_shot(c, bank, batch_size=8)
  assert result["num_clips"] == 12 and 0 <= result["top1"] <= 1
  s = clip_probe.bank_structure(bank, meta["class_names"])
  assert len(s["reversed_pairs"]) == 2
  for key in ("same_limb", "same_motion", "unrelated", "single_in_pair"):
    assert -1 <= s[key] <= 1


def test_bank_structure_of_a_bag_of_words_bank():
  # Each class embedding the sum of its word vectors: reversed pairs are 1.
  words = sorted({w for n in NAMES for w in n.split()})
  vec = dict(zip(words, np.random.default_rng(0).normal(size=(len(words), 8))))
  bank = np.stack([sum(vec[w] for w in n.split()) for n in NAMES])[:, None]
  s = clip_probe.bank_structure(bank, NAMES)
  assert all(abs(v - 1) < 1e-6 for v in s["reversed_pairs"].values())
  assert s["same_limb"] > s["unrelated"]


# --- config validation -------------------------------------------------------


@pytest.mark.parametrize(
  "change,message",
  [
    (dict(steps=0), "text_bank.pretrain.steps=0 must be >= 1"),
    (dict(batch_size=1), "batch_size=1 must be in [2, num_clips=16]"),
    (dict(batch_size=32), "batch_size=32 must be in [2, num_clips=16]"),
    (dict(lr=0.0), "lr=0.0 must be > 0"),
    (dict(temperature=0.0), "temperature=0.0 must be in (0, 1]"),
    (dict(pair_fraction=1.5), "pair_fraction=1.5 must be in [0, 1]"),
    (dict(min_difficulty=0.8, max_difficulty=0.2), "min_difficulty <= max"),
    (dict(width=30, heads=4), "width=30 is not divisible by heads=4"),
    (dict(init_backbone="/nonexistent.msgpack"), "does not exist"),
  ],
)
def test_pretrain_config_errors_say_what_to_change(tmp_path, change, message):
  c = tiny_config(tmp_path, **change)
  problems = clip_pretrain.config_problems(c)
  assert any(message in p for p in problems), problems
  with pytest.raises(config_lib.ConfigError, match=re.escape(message)):
    clip_pretrain.ensure_tiny_clip(c, NAMES, TEMPLATES)


def test_pretrain_config_conflicts_with_pose_pretraining(tmp_path):
  c = tiny_config(tmp_path)
  assert clip_pretrain.config_problems(c) == []
  c.init_from.path = clip_pretrain.video_backbone_path(c)
  c.init_from.pose_pretrain.steps = 10
  (problem,) = clip_pretrain.config_problems(c)
  assert "would never run" in problem
  c.text_bank.pretrain.init_backbone = str(tmp_path / "pose.msgpack")
  assert clip_pretrain.config_problems(c) == []  # CLIP follows pose
  c.text_bank.pretrain.init_backbone = c.init_from.path
  assert any("same file" in p for p in clip_pretrain.config_problems(c))
  c.data.frame_stride = 4  # 8 frames every 4 need 29 of the 16 rendered
  assert any("need 29 > 16" in p for p in clip_pretrain.config_problems(c))
  c.text_bank.clip = "tiny"  # unused: never checked
  assert clip_pretrain.config_problems(c) == []


def test_locked_video_tower_trains_only_a_head_on_its_tokens(tmp_path):
  """lock_video (LiT): the backbone file stays the video tower; the head
  and the text tower are written, the probe embeds through both."""
  from art_jax import weights  # noqa: PLC0415

  c = tiny_config(tmp_path, lock_video=True)
  c.data.synthetic.update(num_train=24, num_val=12)
  video = clip_pretrain.video_model(c)
  start = str(tmp_path / "start.msgpack")
  weights.save_params_file(
    start, weights.init_variables(video, jax.random.key(5)), video
  )
  c.text_bank.pretrain.init_backbone = start
  inputs.ensure_synthetic_data(c)
  inputs.ensure_text_bank(c)
  assert os.path.exists(clip_pretrain.head_path(c))
  assert not os.path.exists(clip_pretrain.video_backbone_path(c))
  assert clip_pretrain.is_built(c)
  bank, _ = text_bank.load_text_bank(c.text_bank.dir)
  result = clip_probe.zero_shot(c, bank, batch_size=8)
  assert result["num_clips"] == 12 and 0 <= result["top1"] <= 1
  c.text_bank.pretrain.init_backbone = None
  (problem,) = [
    p for p in clip_pretrain.config_problems(c) if "lock_video" in p
  ]
  assert "init_backbone" in problem


def test_locked_head_reads_time_order():
  """The head flattens its pooled features in time order: the same tokens
  in reversed time give another embedding (order classes differ)."""
  head = clip_pretrain.LockedVideoHead(projection_dim=8)
  tokens = jax.random.normal(jax.random.key(0), (2, 4, 6, 16))
  params = head.init(jax.random.key(1), tokens)
  forward = head.apply(params, tokens)
  backward = head.apply(params, tokens[:, ::-1])
  assert forward.shape == (2, 8)
  assert not np.allclose(forward, backward, atol=1e-4)
