"""predict: a video file through a trained checkpoint, with its picture."""

import os

import data_helpers
import numpy as np
import pytest
import tiny_data
from PIL import Image
from test_train import make_config

from art_jax import predict, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("predict")
  data = tiny_data.make(str(root))
  config = make_config(data, total_steps=2, eval_every_steps=1000)
  workdir = str(root / "run")
  train.train_and_evaluate(config, workdir, mode="train")
  return config, workdir, root


def test_prints_top_classes_and_writes_the_tracklet_picture(trained):
  config, workdir, root = trained
  video = data_helpers.write_video(str(root / "clip.mp4"), 20)
  result = predict.predict(config, workdir, video, str(root / "out"), top=3)
  assert result["step"] == 2
  names = [n for n, _ in result["top"]]
  probs = [p for _, p in result["top"]]
  assert len(names) == 3 and set(names) <= {f"class {k}" for k in range(4)}
  assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
  image = np.asarray(Image.open(result["picture"]))
  assert result["picture"] == str(root / "out" / "clip_tracklets.png")
  # Two tracklet rows and a CAM row, T' = 4 columns of 2x-scaled 32px frames.
  assert image.shape[1] >= 4 * 64 and image.shape[0] >= 3 * 64


def test_unreadable_video_is_a_clear_error(trained):
  config, workdir, root = trained
  bad = data_helpers.write_text(str(root / "not_a_video.mp4"))
  with pytest.raises(predict.PredictError, match="cannot read video"):
    predict.predict(config, workdir, bad, None)


def test_checkpoint_of_another_model_is_a_clear_error(trained):
  config, workdir, root = trained
  video = data_helpers.write_video(str(root / "clip2.mp4"), 20)
  other = make_config(
    {"data": config.data.dir, "bank": config.text_bank.dir},
    **{"model.backbone.width": 32, "model.backbone.n_dim": 32},
  )
  with pytest.raises(predict.PredictError, match="does not match the config"):
    predict.predict(other, workdir, video, None)
  with pytest.raises(predict.PredictError, match="no checkpoint"):
    predict.predict(config, str(root / "nowhere"), video, None)
  assert not os.path.exists(str(root / "nowhere" / "checkpoints" / "0"))
