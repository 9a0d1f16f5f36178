"""The grain pipeline on small synthetic record shards."""

import collections

import numpy as np
import pytest
from array_record.python import array_record_module

from art_jax.data import pipeline, record, video

N = 10  # clips; label i == record i
FRAMES = 12
BAD = 7  # record whose JPEGs are corrupt


def frame_value(k):
  return 20 + 15 * k


def _write(out, split, bad=None):
  names = [record.shard_name(split, s, 2) for s in range(2)]
  ids = [list(range(0, 6)), list(range(6, N))]
  for name, shard in zip(names, ids):
    w = array_record_module.ArrayRecordWriter(
      str(out / name), record.WRITER_OPTIONS
    )
    for i in shard:
      frames = [
        video.encode_jpeg(np.full((24, 32, 3), frame_value(k), np.uint8))
        for k in range(FRAMES)
      ]
      if i == bad:
        frames = [b"\xff\xd8broken"] * FRAMES
      w.write(
        record.encode(
          record.Clip(
            id=f"clip{i}",
            label=i,
            frames=frames,
            frame_index=list(range(0, 2 * FRAMES, 2)),
            num_source_frames=2 * FRAMES,
            fps=10.0,
            height=24,
            width=32,
          )
        )
      )
    w.close()
  record.write_metadata(
    str(out),
    split,
    {
      "num_clips": N,
      "class_names": [f"c{i}" for i in range(N)],
      "shards": names,
      "flip_safe": True,
    },
  )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("records")
  _write(out, "train")
  _write(out, "bad", bad=BAD)
  return str(out)


def train(data_dir, split="train", **kw):
  args = dict(batch_size=4, num_frames=4, crop_size=16, seed=3, num_classes=N)
  args.update(kw)
  return pipeline.make_train_iterator(data_dir, split, **args)


def take(it, n):
  return [next(it) for _ in range(n)]


def test_train_batches(data_dir):
  it = train(data_dir)
  b = next(it)
  assert b["video"].shape == (4, 4, 16, 16, 3)
  assert b["video"].dtype == np.uint8 and b["label"].dtype == np.int32
  # Segment sampling: frame t comes from segment t (3 stored frames each).
  grey = b["video"][..., 0].mean(axis=(2, 3))  # (b, T)
  lo = [frame_value(3 * t) - 6 for t in range(4)]
  hi = [frame_value(3 * t + 2) + 6 for t in range(4)]
  assert ((grey >= lo) & (grey <= hi)).all()


def test_train_epochs_shuffle_and_cover(data_dir):
  labels = np.concatenate([b["label"] for b in take(train(data_dir), 5)])
  assert sorted(labels[:N]) == list(range(N))  # epoch 1 is a permutation
  assert sorted(labels[N : 2 * N]) == list(range(N))
  assert list(labels[:N]) != list(labels[N : 2 * N])  # reshuffled


def test_train_deterministic(data_dir):
  a, b = take(train(data_dir), 3), take(train(data_dir), 3)
  c = take(train(data_dir, seed=4), 3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["video"], y["video"])
  assert any((x["video"] != z["video"]).any() for x, z in zip(a, c))


def test_train_checkpoint_resumes_at_next_example(data_dir):
  it = train(data_dir)
  take(it, 2)
  state = it.get_state()
  expect = take(it, 3)
  it2 = train(data_dir)
  it2.set_state(state)
  for x, y in zip(expect, take(it2, 3)):
    np.testing.assert_array_equal(x["video"], y["video"])
    np.testing.assert_array_equal(x["label"], y["label"])


def test_train_hosts_disjoint(data_dir):
  seen = []
  for p in range(2):
    it = train(data_dir, batch_size=5, process_index=p, process_count=2)
    seen.append(set(next(it)["label"].tolist()))
  assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(N))


def test_train_dense_rrc_no_flip(data_dir):
  it = train(data_dir, sampling="dense", frame_stride=4, crop="rrc", flip=False)
  b = next(it)
  grey = b["video"][..., 0].mean(axis=(2, 3))
  # Stride 4 source frames == 2 stored frames: +30 grey per step.
  np.testing.assert_allclose(np.diff(grey, axis=1), 30, atol=6)


def test_train_skips_bad_jpeg(data_dir):
  labels = np.concatenate(
    [b["label"] for b in take(train(data_dir, "bad", batch_size=3), 6)]
  )
  assert BAD not in labels
  assert collections.Counter(labels.tolist())[0] == 2  # 2 epochs of 9


def test_train_worker_process_matches_in_process(data_dir):
  it = train(data_dir, num_workers=1)
  try:
    a = take(it, 2)
    state = it.get_state()
  finally:
    it.close()
  b = take(train(data_dir), 2)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["video"], y["video"])
  it = train(data_dir, num_workers=1)
  try:
    it.set_state(state)
    nxt = next(it)
  finally:
    it.close()
  ref = train(data_dir)
  take(ref, 2)
  np.testing.assert_array_equal(nxt["video"], next(ref)["video"])


@pytest.mark.parametrize("process_count", [1, 3])
def test_eval_every_view_once(data_dir, process_count):
  views = collections.Counter()
  lengths = []
  for p in range(process_count):
    batches = list(
      pipeline.make_eval_iterator(
        data_dir,
        "train",
        batch_size=4,
        num_frames=4,
        crop_size=16,
        num_test_clips=2,
        num_spatial_crops=3,
        process_index=p,
        process_count=process_count,
      )
    )
    lengths.append(len(batches))
    for b in batches:
      assert b["video"].shape == (4, 4, 16, 16, 3)
      assert b["mask"].dtype == bool
      idx = b["video_index"][b["mask"]]
      np.testing.assert_array_equal(b["label"][b["mask"]], idx)
      assert (b["video_index"][~b["mask"]] == -1).all()
      assert not b["video"][~b["mask"]].any()
      views.update(idx.tolist())
  assert views == dict.fromkeys(range(N), 6)
  expect = pipeline.num_eval_batches(N, 4, 6, process_count)
  assert lengths == [expect] * process_count


def test_eval_views_are_deterministic_centres(data_dir):
  b = next(
    pipeline.make_eval_iterator(
      data_dir,
      "train",
      batch_size=2,
      num_frames=4,
      crop_size=16,
      num_test_clips=2,
    )
  )
  grey = b["video"][..., 0].mean(axis=(2, 3))
  # Segments of 3 stored frames; clip 0 at 1/4, clip 1 at 3/4 of each.
  np.testing.assert_allclose(
    grey[0], [frame_value(k) for k in (0, 3, 6, 9)], atol=4
  )
  np.testing.assert_allclose(
    grey[1], [frame_value(k) for k in (2, 5, 8, 11)], atol=4
  )


def test_eval_bad_jpeg_names_the_clip(data_dir):
  with pytest.raises(Exception, match="clip7"):
    list(
      pipeline.make_eval_iterator(
        data_dir, "bad", batch_size=4, num_frames=4, crop_size=16
      )
    )


def test_metadata_checked(data_dir):
  with pytest.raises(record.MetadataError, match="train.json: 10 classes"):
    train(data_dir, num_classes=99)
  with pytest.raises(ValueError, match="sampling mode"):
    train(data_dir, sampling="random")
