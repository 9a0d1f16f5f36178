"""Captioned random motions of the synthetic figure: the demo CLIP's data.

Each example is a clip of the stick figure (`synthetic.render_events`:
the same renderer, nuisances and motion timing as the demo's classes)
doing one or two local motions drawn from a compositional space that
ignores the demo's class list: any limb of `synthetic.LIMBS`, any motion of
`synthetic.MOTIONS` (a flick of a lower leg is a kick), two motions on
distinct limbs in either order, nuisances at a random difficulty. Its
caption is generated from those events (which limb, which motion, in which
order), in one of many phrasings, none of them a demo class name:

  "the figure snaps its left forearm up"
  "first the right forearm turns a full circle, then the left shin kicks out"

In every phrasing the motions are named in time order (a position-aware
text tower can read the order off the caption). Example i of seed s draws
its events, pixels and wording from three separate random streams
[s, 9, i, 0|1|2] (9 keeps them apart from the clips' [seed, split, i] and
pose pretraining's 7 and 8), so `caption(events, rng)` can re-phrase a clip
without changing it. `parse_caption` reads the events back (tests).
"""

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from art_jax.data import synthetic

STREAM = 9
Events = tuple[tuple[str, str], ...]

# Limb words per part (the side comes first: the figure's own left/right).
PART_WORDS = {
  "arm": ("forearm", "forearm", "lower arm"),
  "leg": ("lower leg", "lower-leg", "shin"),
}
# (subject, possessive) of the sentences that name the figure.
SUBJECTS = (
  ("the figure", "its"),
  ("the stick figure", "its"),
  ("the person", "their"),
  ("someone", "their"),
)
# Per motion (a leg's flick is a kick), four forms; {L} is the limb,
# {P} the subject's possessive:
#   base: after "watch <subject> ..."; agent: after "<subject> ...";
#   clause: a whole clause with the limb as subject; noun: a noun phrase.
PHRASES = {
  "flick": {
    "base": ("flick {P} {L}", "flick {P} {L} up", "snap {P} {L} up"),
    "agent": ("flicks {P} {L}", "snaps {P} {L} up", "flicks {P} {L} up"),
    "clause": (
      "the {L} flicks up",
      "the {L} flicks up and back",
      "the {L} snaps up",
    ),
    "noun": (
      "a flick of the {L}",
      "a quick flick of the {L}",
      "a snap of the {L}",
    ),
  },
  "kick": {
    "base": ("kick with {P} {L}", "kick {P} {L} out"),
    "agent": ("kicks with {P} {L}", "kicks {P} {L} out"),
    "clause": (
      "the {L} kicks",
      "the {L} kicks out",
      "the {L} kicks up and back",
    ),
    "noun": (
      "a kick of the {L}",
      "a quick kick of the {L}",
      "a kick with the {L}",
    ),
  },
  "circle": {
    "base": (
      "circle {P} {L}",
      "turn {P} {L} in a full circle",
      "swing {P} {L} round once",
    ),
    "agent": (
      "circles {P} {L}",
      "turns {P} {L} in a full circle",
      "swings {P} {L} round once",
    ),
    "clause": (
      "the {L} circles",
      "the {L} turns a full circle",
      "the {L} goes round in a circle",
      "the {L} spins round once",
    ),
    "noun": (
      "a circle of the {L}",
      "a full circle of the {L}",
      "a full turn of the {L}",
    ),
  },
  "hold": {
    "base": ("hold {P} {L} up", "hold {P} {L} straight up"),
    "agent": (
      "holds {P} {L} up",
      "holds {P} {L} straight up",
      "raises {P} {L} and holds it",
    ),
    "clause": (
      "the {L} is held straight up",
      "the {L} points straight up for a while",
      "the {L} stays raised",
    ),
    "noun": (
      "a hold of the {L}",
      "a long hold of the {L} straight up",
      "a raise and hold of the {L}",
    ),
  },
}
# Sentences: {S} subject, then per event k = 1, 2 a form {base1}, {agent1},
# {clause1}, {noun1}. Events appear in time order in all of them.
SINGLE = (
  "{clause1}",
  "{S} {agent1}",
  "{noun1}",
  "watch {S} {base1}",
  "in this clip {clause1}",
  "{S} does {noun1}",
  "a clip of {noun1}",
)
PAIR = (
  "first {clause1}, then {clause2}",
  "{clause1}, and then {clause2}",
  "first {clause1}, after that {clause2}",
  "{clause1} before {clause2}",
  "{noun1}, then {noun2}",
  "{noun1} followed by {noun2}",
  "{noun1} and afterwards {noun2}",
  "{S} first {agent1}, then {agent2}",
  "{S} {agent1} and then {agent2}",
  "watch {S} {base1}, then {base2}",
)
SUFFIXES = ("", "", "", "", " while squatting", " during the squat", ".")
# Splits a pair caption into its two events' parts (`parse_caption`).
_CONNECTOR = re.compile(
  r", and then |, after that |, then | and then | before | followed by "
  r"| and afterwards "
)
_MOTION_WORDS = {
  "flick": ("flick", "flicks", "snap", "snaps"),
  "kick": ("kick", "kicks"),
  "circle": ("circle", "circles", "turn", "turns", "round", "spins"),
  "hold": (
    "hold",
    "holds",
    "held",
    "raised",
    "raise",
    "raises",
    "points",
    "stays",
  ),
}
_LIMB = re.compile(
  r"\b(left|right) (forearm|lower arm|lower leg|lower-leg|shin)\b"
)


@dataclasses.dataclass(frozen=True)
class CaptionedClip:
  """frames uint8 (T, S, S, 3); events ((limb, motion), ...) in time order,
  as `synthetic.CLASSES`; caption; the nuisance difficulty drawn."""

  frames: np.ndarray
  events: Events
  caption: str
  difficulty: float


def motion_name(limb: str, motion: str) -> str:
  """The renderer's motion -> its word: a leg's "flick" is a "kick"."""
  return "kick" if motion == "flick" and limb.endswith("leg") else motion


def sample_events(
  rng: np.random.Generator, pair_fraction: float = 0.5
) -> Events:
  """One event, or two on distinct limbs (probability `pair_fraction`),
  each limb and motion uniform."""
  n = 2 if rng.random() < pair_fraction else 1
  limbs = rng.choice(len(synthetic.LIMBS), size=n, replace=False)
  motions = rng.integers(len(synthetic.MOTIONS), size=n)
  return tuple(
    (synthetic.LIMBS[a], synthetic.MOTIONS[m]) for a, m in zip(limbs, motions)
  )


def caption(events: Events, rng: np.random.Generator) -> str:
  """A random phrasing of one or two events in time order."""
  subject, possessive = SUBJECTS[rng.integers(len(SUBJECTS))]
  fill = {"S": subject}
  for k, (limb, motion) in enumerate(events, 1):
    side, part = limb.split("_")
    words = PART_WORDS[part]
    limb_words = f"{side} {words[rng.integers(len(words))]}"
    for form, options in PHRASES[motion_name(limb, motion)].items():
      text = options[rng.integers(len(options))]
      fill[f"{form}{k}"] = text.replace("{L}", limb_words).replace(
        "{P}", possessive
      )
  sentences = SINGLE if len(events) == 1 else PAIR
  text = sentences[rng.integers(len(sentences))].format(**fill)
  return text + SUFFIXES[rng.integers(len(SUFFIXES))]


def parse_caption(text: str) -> Events:
  """Reads the events back from a `caption` (in time order)."""
  text = text.rstrip(".").removesuffix(" while squatting")
  text = text.removesuffix(" during the squat")
  events = []
  for part in _CONNECTOR.split(text):
    limbs = _LIMB.findall(part)
    if len(limbs) != 1:
      raise ValueError(f"{part!r}: expected one limb, found {limbs}")
    side, word = limbs[0]
    limb = f"{side}_{'arm' if 'arm' in word else 'leg'}"
    found = {
      m
      for m, keys in _MOTION_WORDS.items()
      for w in re.findall(r"[a-z]+", part)
      if w in keys
    }
    if len(found) != 1:
      raise ValueError(f"{part!r}: expected one motion, found {found}")
    motion = found.pop()
    events.append((limb, "flick" if motion == "kick" else motion))
  return tuple(events)


def vocabulary() -> list[str]:
  """Texts holding every word a caption can contain (for the tokenizer)."""
  texts = [s for s, _ in SUBJECTS] + [p for _, p in SUBJECTS]
  texts += ["left right"] + [w for ws in PART_WORDS.values() for w in ws]
  for forms in PHRASES.values():
    texts += [t for options in forms.values() for t in options]
  texts += list(SINGLE) + list(PAIR) + list(SUFFIXES)
  return [re.sub(r"\{\w+\}", " ", t) for t in texts]


def clip_times(
  rng: np.random.Generator, source_frames: int, num_frames: int, stride: int
) -> np.ndarray:
  """The times in [0, 1] of `num_frames` frames taken every `stride` of
  `source_frames` evenly spaced ones, from a random start (dense sampling
  of a rendered clip, as the demo's input pipeline does). -> (T,)."""
  window = (num_frames - 1) * stride + 1
  if window > source_frames:
    raise ValueError(
      f"{num_frames} frames every {stride} need {window} > {source_frames}"
    )
  start = rng.integers(source_frames - window + 1)
  t = np.linspace(0.0, 1.0, source_frames)
  return t[start : start + window : stride]


def render_captioned(
  seed: int,
  index: int,
  *,
  size: int = 48,
  num_frames: int = 8,
  source_frames: int = 16,
  stride: int = 2,
  difficulty: tuple[float, float] = (0.0, 1.0),
  pair_fraction: float = 0.5,
) -> CaptionedClip:
  """Example `index` of `seed`: events, difficulty (uniform in the range),
  frame times (`clip_times`), pixels, then a caption."""
  rng = np.random.default_rng([seed, STREAM, index, 0])
  d = float(rng.uniform(*difficulty))
  events = sample_events(rng, pair_fraction)
  t = clip_times(rng, source_frames, num_frames, stride)
  frames = synthetic.render_events(
    events, np.random.default_rng([seed, STREAM, index, 1]), t, size, d
  )
  text = caption(events, np.random.default_rng([seed, STREAM, index, 2]))
  return CaptionedClip(frames, events, text, d)


def render_dataset(
  seed: int, count: int, **kwargs
) -> tuple[np.ndarray, list[Events], list[str]]:
  """`render_captioned` for indices 0..count-1 (kwargs passed on).

  Returns (uint8 (count, T, S, S, 3), events per clip, captions)."""
  clips = [render_captioned(seed, i, **kwargs) for i in range(count)]
  return (
    np.stack([c.frames for c in clips]),
    [c.events for c in clips],
    [c.caption for c in clips],
  )


def same_events(events: Sequence[Events]) -> np.ndarray:
  """(B, B) float32: 1 where two clips show the same events in the same
  order (their captions describe the same thing), else 0."""
  keys = [hash(e) for e in events]
  return np.array([[a == b for b in keys] for a in keys], np.float32)
