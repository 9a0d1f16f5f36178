"""Multi-view evaluation metrics against hand-computed values."""

import json

import numpy as np
import pytest

from art_jax import evaluate


def test_views_are_averaged_per_video_and_padding_ignored():
  scores = evaluate.VideoScores(num_classes=3)
  # Video 0: two views disagree, their mean prefers class 2.
  scores.add(
    np.array([[0.6, 0.0, 0.4], [0.0, 0.1, 0.9], [1.0, 0.0, 0.0]]),
    labels=np.array([2, 2, 0]),
    video_index=np.array([0, 0, 5]),
    mask=np.array([1, 1, 0]),
  )
  scores.add(
    np.array([[0.2, 0.7, 0.1]]),
    labels=np.array([0]),
    video_index=np.array([1]),
    mask=np.array([1]),
  )
  ids, probs, labels = scores.arrays()
  np.testing.assert_array_equal(ids, [0, 1])
  np.testing.assert_allclose(probs[0], [0.3, 0.05, 0.65])
  np.testing.assert_array_equal(labels, [2, 0])
  np.testing.assert_array_equal(scores.views_per_video(), [2, 1])


def test_conflicting_labels_for_one_video_fail():
  scores = evaluate.VideoScores(num_classes=2)
  scores.add(np.eye(2)[:1], np.array([0]), np.array([3]), np.ones(1))
  with pytest.raises(ValueError, match="video 3"):
    scores.add(np.eye(2)[1:], np.array([1]), np.array([3]), np.ones(1))


def test_top1_top5_and_mean_class_accuracy():
  probs = np.array(
    [
      [0.9, 0.1, 0, 0, 0, 0],  # label 0: right
      [0.1, 0.9, 0, 0, 0, 0],  # label 0: wrong, but in top-5
      [0, 0, 0.5, 0.3, 0.2, 0],  # label 2: right
      [0.3, 0.25, 0.2, 0.15, 0.1, 0],  # label 5: outside top-5
    ]
  )
  labels = np.array([0, 0, 2, 5])
  m = evaluate.classification_metrics(probs, labels, num_classes=6)
  assert m["top1"] == pytest.approx(0.5)
  assert m["top5"] == pytest.approx(0.75)
  # Classes 0, 2, 5 have examples: (0.5 + 1 + 0) / 3.
  assert m["mean_class_accuracy"] == pytest.approx(0.5)
  assert m["confusion"][0, 1] == 1 and m["confusion"][5, 0] == 1
  assert np.isnan(m["per_class_accuracy"][1])


def test_report_files(tmp_path):
  m = evaluate.classification_metrics(np.eye(3), np.arange(3), 3)
  paths = evaluate.write_report(m, ["a", "b", "c"], str(tmp_path), step=7)
  with open(paths["json"]) as f:
    report = json.load(f)
  assert report["top1"] == 1.0 and report["per_class_accuracy"]["b"] == 1.0
  with open(paths["png"], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
