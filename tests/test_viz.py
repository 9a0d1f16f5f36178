"""Tracklet pictures: titles and the per-clip PNGs of an evaluation."""

import numpy as np
from PIL import Image

from art_jax import viz


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
  plain = viz.write_tracklet_pictures(*args, str(tmp_path / "p"), 7)
  labelled = viz.write_tracklet_pictures(
    *args, str(tmp_path / "l"), 7, labels=np.array([4, 0, 2])
  )
  assert [p.rsplit("/", 1)[1] for p in labelled] == [
    f"step7_clip{i}.png" for i in range(b)
  ]
  # Out of a bigger batch, clips spread from first to last.
  big = 10
  explained = _explained(big, 2, 2, 4, 8, classes)
  frames = np.zeros((big, 4, 16, 16, 3), np.uint8)
  spread = viz.write_tracklet_pictures(
    explained, frames, weights, names, (4, 4), str(tmp_path / "s"), 3
  )
  assert [p.rsplit("/", 1)[1] for p in spread] == [
    f"step3_clip{i}.png" for i in (0, 3, 6, 9)
  ]
  for p, q in zip(plain, labelled, strict=True):
    h_plain = np.asarray(Image.open(p)).shape[0]
    assert np.asarray(Image.open(q)).shape[0] == h_plain + viz.LABEL_HEIGHT


def test_confusion_shows_full_class_names_and_per_cell_rates(tmp_path):
  names = [
    "left forearm flick then right forearm circle",
    "right forearm circle then left forearm flick",
    "(VT) round-off, flic-flac with 0.5 turn on, stretched salto forward "
    "with 0.5 turn off",
    "hold",
  ]
  confusion = np.array([[3, 1, 0, 0], [0, 4, 0, 0], [0, 0, 2, 2], [0] * 4])
  fig = viz.confusion_figure(confusion, names, "step 1")
  ax = fig.axes[0]
  for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
    assert [t.get_text().replace("\n", " ") for t in ticks] == names
  cells = [t.get_text() for t in ax.texts]
  assert len(cells) == 4 * 4
  assert cells[:2] == ["0.75", "0.25"] and cells[10:12] == ["0.50", "0.50"]
  assert cells[12:] == ["0.00"] * 4  # a class without examples
  # Many classes: no numbers in the cells, a colour bar instead.
  many = viz.confusion_figure(
    np.eye(40, dtype=int), [str(i) for i in range(40)]
  )
  assert not many.axes[0].texts and len(many.axes) == 2
  path = viz.plot_confusion(confusion, names, str(tmp_path / "c.png"))
  assert np.asarray(Image.open(path)).shape[0] > 300
