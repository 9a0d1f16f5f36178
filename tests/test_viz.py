"""Tracklet pictures: titles and the per-clip PNGs of an evaluation."""

import numpy as np
from PIL import Image

from art_jax import train, viz


def _explained(b, steps, queries, grid, dim, classes, seed=0):
  rng = np.random.default_rng(seed)
  probs = rng.dirichlet(np.ones(classes), size=b).astype(np.float32)
  return {
    "probs": probs,
    "response_maps": rng.random((b, steps, queries, grid * grid)),
    "tokens": rng.normal(size=(b, steps, grid * grid, dim)),
  }


def test_title_lines_stack_above_the_grids():
  frames = np.zeros((4, 16, 16, 3), np.uint8)
  maps = np.random.default_rng(0).random((2, 2, 16))
  one = viz.clip_picture(frames, maps, None, None, (4, 4), title="a")
  two = viz.clip_picture(frames, maps, None, None, (4, 4), title="a\nb")
  assert two.shape[0] == one.shape[0] + viz.LABEL_HEIGHT
  none = viz.clip_picture(frames, maps, None, None, (4, 4))
  assert one.shape[0] == none.shape[0] + viz.LABEL_HEIGHT + 4


def test_pictures_name_the_true_class_when_labels_are_given(tmp_path):
  b, classes = 3, 5
  explained = _explained(b, 2, 2, 4, 8, classes)
  frames = np.random.default_rng(1).integers(0, 255, (b, 4, 16, 16, 3))
  frames = frames.astype(np.uint8)
  weights = np.ones((8, classes), np.float32)
  names = [f"class {k}" for k in range(classes)]
  args = (explained, frames, weights, names, (4, 4))
  plain = train.write_tracklet_pictures(*args, str(tmp_path / "p"), 7)
  labelled = train.write_tracklet_pictures(
    *args, str(tmp_path / "l"), 7, labels=np.array([4, 0, 2])
  )
  assert [p.rsplit("/", 1)[1] for p in labelled] == [
    f"step7_clip{i}.png" for i in range(b)
  ]
  # Out of a bigger batch, clips spread from first to last.
  big = 10
  explained = _explained(big, 2, 2, 4, 8, classes)
  frames = np.zeros((big, 4, 16, 16, 3), np.uint8)
  spread = train.write_tracklet_pictures(
    explained, frames, weights, names, (4, 4), str(tmp_path / "s"), 3
  )
  assert [p.rsplit("/", 1)[1] for p in spread] == [
    f"step3_clip{i}.png" for i in (0, 3, 6, 9)
  ]
  for p, q in zip(plain, labelled, strict=True):
    h_plain = np.asarray(Image.open(p)).shape[0]
    assert np.asarray(Image.open(q)).shape[0] == h_plain + viz.LABEL_HEIGHT
