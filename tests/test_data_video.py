"""PyAV decoding, frame sampling and augmentation boxes."""

import data_helpers as h
import numpy as np
import pytest

from art_jax.data import video


@pytest.mark.parametrize("codec", list(h.CODECS))
def test_read_whole_video_each_codec(tmp_path, codec):
  ext = h.CODECS[codec][0]
  path = h.write_video(str(tmp_path / f"v.{ext}"), 20, fps=10, codec=codec)
  clip = video.read_clip(path, short_side=16)
  assert len(clip.frames) == 20 and clip.fps == pytest.approx(10)
  assert clip.frames[0].shape == (16, 20, 3)
  assert clip.frame_index == list(range(20))
  grey = [int(f[12, 15].mean()) for f in clip.frames]
  expect = [h.frame_value(i) for i in range(20)]
  assert np.abs(np.subtract(grey, expect)).max() <= 12


def test_time_range_and_frame_range(tmp_path):
  path = h.write_video(str(tmp_path / "v.mp4"), 40, fps=10)
  clip = video.read_clip(path, start_sec=2.0, end_sec=3.0, short_side=0)
  assert clip.frame_index == list(range(10))
  assert abs(int(clip.frames[0][20, 30].mean()) - h.frame_value(20)) <= 8
  clip = video.read_clip(path, start_frame=5, end_frame=14, short_side=0)
  assert len(clip.frames) == 10
  assert abs(int(clip.frames[-1][20, 30].mean()) - h.frame_value(14)) <= 8


def test_frame_cap_subsamples_evenly(tmp_path):
  path = h.write_video(str(tmp_path / "v.avi"), 40, codec="avi")
  clip = video.read_clip(path, short_side=0, max_frames=8)
  assert clip.num_source_frames == 40
  assert clip.frame_index == [2, 7, 12, 17, 22, 27, 32, 37]


@pytest.mark.parametrize(
  "make", [h.write_truncated, h.write_empty, h.write_text]
)
def test_broken_files_raise_video_error(tmp_path, make):
  path = make(str(tmp_path / "bad.avi"))
  with pytest.raises(video.VideoError):
    video.read_clip(path)


def test_missing_and_short(tmp_path):
  with pytest.raises(video.VideoError, match="missing video"):
    video.read_clip(str(tmp_path / "nope.mp4"))
  path = h.write_video(str(tmp_path / "v.mp4"), 20, fps=10)
  with pytest.raises(video.VideoError, match="too short"):
    video.read_clip(path, start_sec=1.0, end_sec=5.0)  # video ends at 2 s
  with pytest.raises(video.VideoError, match="too short"):
    video.read_clip(path, min_frames=30)


def test_jpeg_decode_error():
  with pytest.raises(ValueError, match="JPEG does not decode"):
    video.decode_jpeg(b"\xff\xd8garbage")


def test_segment_indices():
  np.testing.assert_array_equal(
    video.segment_indices(16, 4), [2, 6, 10, 14]
  )  # centres
  np.testing.assert_array_equal(
    video.segment_indices(16, 4, clip=0, num_clips=2), [1, 5, 9, 13]
  )
  np.testing.assert_array_equal(video.segment_indices(3, 6), [0, 0, 1, 1, 2, 2])
  rng = np.random.default_rng(0)
  for _ in range(20):
    idx = video.segment_indices(16, 4, rng)
    assert ((idx >= [0, 4, 8, 12]) & (idx < [4, 8, 12, 16])).all()


def test_dense_indices():
  src = list(range(40))
  np.testing.assert_array_equal(  # centred window of 4 * stride 2
    video.dense_indices(src, 4, 2), [16, 18, 20, 22]
  )
  np.testing.assert_array_equal(
    video.dense_indices(src, 4, 2, clip=1, num_clips=2), [33, 35, 37, 39]
  )
  # Stored frames subsampled 4x: positions map to the nearest stored one.
  sub = list(range(0, 40, 4))
  # Window starts at 10: positions 10, 18, 26 (ties go to the earlier).
  np.testing.assert_array_equal(video.dense_indices(sub, 3, 8), [2, 4, 6])
  # Too short: clamps to the last frame.
  np.testing.assert_array_equal(
    video.dense_indices([0, 1, 2], 4, 1), [0, 1, 2, 2]
  )
  rng = np.random.default_rng(1)
  idx = video.dense_indices(src, 4, 3, rng)
  assert (np.diff(idx) == 3).all()


def test_boxes():
  rng = np.random.default_rng(0)
  for _ in range(50):
    x0, y0, x1, y1 = video.multiscale_box(256, 340, rng)
    assert 0 <= x0 < x1 <= 340 and 0 <= y0 < y1 <= 256
    assert {y1 - y0, x1 - x0} <= {256, 224, 192, 168}
    x0, y0, x1, y1 = video.random_resized_box(256, 340, rng)
    assert 0 <= x0 < x1 <= 340 and 0 <= y0 < y1 <= 256
  assert video.eval_boxes(32, 40, 3) == [
    (0, 0, 32, 32),
    (4, 0, 36, 32),
    (8, 0, 40, 32),
  ]
  assert video.eval_boxes(40, 32, 1) == [(0, 4, 32, 36)]


def test_decode_views_shape_and_flip():
  img = np.zeros((8, 10, 3), np.uint8)
  img[:, :5] = 255
  jpegs = [video.encode_jpeg(img)] * 3
  out = video.decode_views(
    jpegs, [np.array([0, 2]), np.array([1, 1])], video.eval_boxes(8, 10, 3), 4
  )
  assert out.shape == (6, 2, 4, 4, 3) and out.dtype == np.uint8
  flipped = video.decode_views(
    jpegs, [np.array([0])], [(0, 0, 10, 8)], 4, flip=True
  )[0, 0]
  plain = video.decode_views(jpegs, [np.array([0])], [(0, 0, 10, 8)], 4)[0, 0]
  np.testing.assert_array_equal(flipped, plain[:, ::-1])
  assert plain[:, 0].mean() > 200 and plain[:, -1].mean() < 50
