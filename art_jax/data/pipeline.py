"""The grain input pipeline: ArrayRecord shards -> uint8 video batches.

Train (maxtext order): record ids -> seed -> global shuffle -> per-host
slice -> repeat -> load + sample + augment -> batch -> worker prefetch.
Every example's randomness comes from `default_rng([seed, epoch, record])`,
so it does not depend on worker count, host count or position. The
returned iterator is checkpointable (`get_state` / `set_state`, or
`grain.checkpoint.CheckpointSave`): training resumes at the exact next
example.

Eval: each host takes records `process_index::process_count`, expands each
into num_test_clips x num_spatial_crops views (clip-major) and yields
batches padded with `mask=False` so that every host yields the same number
of batches and every view is seen exactly once.

Batches are dicts of numpy arrays:
  video  uint8 (b, T, crop, crop, 3)   (normalise on the device)
  label  int32 (b,)
  eval only: video_index int32 (b,) record index in the split (-1: pad),
             mask bool (b,) False on padding.
"""

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np
from absl import logging

from art_jax.data import record, video

read_metadata = record.read_metadata


@dataclasses.dataclass(frozen=True)
class Sampling:
  """Which frames and pixels make up a T-frame example."""

  num_frames: int = 8
  mode: str = "segment"  # 'segment' | 'dense'
  frame_stride: int = 4  # dense only, in source frames
  crop_size: int = 224

  def __post_init__(self):
    if self.mode not in ("segment", "dense"):
      raise ValueError(
        f"sampling mode {self.mode!r}; expected 'segment' or 'dense'"
      )

  def indices(
    self, clip: record.Clip, rng=None, k: int = 0, num_clips: int = 1
  ) -> np.ndarray:
    if self.mode == "segment":
      return video.segment_indices(
        len(clip.frames), self.num_frames, rng, k, num_clips
      )
    return video.dense_indices(
      clip.frame_index, self.num_frames, self.frame_stride, rng, k, num_clips
    )


_BAD_RECORDS = 0


@dataclasses.dataclass(frozen=True)
class _TrainExample:
  """map_with_index fn: (position, record id) -> example or None (skip)."""

  source: Any
  per_host: int
  seed: int
  sampling: Sampling
  crop: str
  scales: tuple[float, ...]
  area_range: tuple[float, float]
  flip: bool

  def __call__(self, position: int, record_id: int) -> dict | None:
    global _BAD_RECORDS
    epoch = position // self.per_host
    rng = np.random.default_rng([self.seed, epoch, int(record_id)])
    clip = record.decode(self.source[int(record_id)])
    idx = self.sampling.indices(clip, rng)
    if self.crop == "multiscale":
      box = video.multiscale_box(clip.height, clip.width, rng, self.scales)
    else:
      box = video.random_resized_box(
        clip.height, clip.width, rng, self.area_range
      )
    flip = self.flip and rng.random() < 0.5
    try:
      x = video.decode_views(
        clip.frames, [idx], [box], self.sampling.crop_size, flip
      )[0]
    except ValueError as e:
      _BAD_RECORDS += 1
      logging.warning(
        "skipping clip %r (record %d): %s [%d skipped in this process]",
        clip.id,
        record_id,
        e,
        _BAD_RECORDS,
      )
      return None
    return {"video": x, "label": np.int32(clip.label)}


@dataclasses.dataclass(frozen=True)
class _EvalExample:
  """map fn: record id -> all views of the record, (V, T, c, c, 3)."""

  source: Any
  sampling: Sampling
  num_clips: int
  num_crops: int

  def __call__(self, record_id: int) -> dict:
    clip = record.decode(self.source[int(record_id)])
    idx = [
      self.sampling.indices(clip, None, k, self.num_clips)
      for k in range(self.num_clips)
    ]
    boxes = video.eval_boxes(clip.height, clip.width, self.num_crops)
    try:
      x = video.decode_views(clip.frames, idx, boxes, self.sampling.crop_size)
    except ValueError as e:
      raise ValueError(
        f"evaluation clip {clip.id!r} (record {record_id}): {e}"
      ) from e
    return {
      "video": x,
      "label": np.int32(clip.label),
      "video_index": np.int32(record_id),
    }


def _iter_dataset(
  ds: grain.MapDataset | grain.IterDataset, num_workers: int, read_threads: int
) -> grain.IterDataset:
  if isinstance(ds, grain.MapDataset):
    ds = ds.to_iter_dataset(
      grain.ReadOptions(
        num_threads=read_threads, prefetch_buffer_size=4 * read_threads
      )
    )
  if num_workers > 0:
    ds = ds.mp_prefetch(
      grain.MultiprocessingOptions(
        num_workers=num_workers, per_worker_buffer_size=2
      )
    )
  return ds


def make_train_iterator(
  data_dir: str,
  split: str,
  *,
  batch_size: int,
  num_frames: int,
  sampling: str = "segment",
  frame_stride: int = 4,
  crop_size: int = 224,
  crop: str = "multiscale",
  scales: Sequence[float] = video.MULTISCALE_SCALES,
  area_range: Sequence[float] = (0.08, 1.0),
  flip: bool = True,
  seed: int = 0,
  num_workers: int = 0,
  read_threads: int = 4,
  process_index: int = 0,
  process_count: int = 1,
  num_classes: int | None = None,
) -> grain.DatasetIterator:
  """Infinite, shuffled, augmented training batches for this host.

  Args:
    data_dir: folder written by `art_jax.data.prepare`.
    split: e.g. 'train'.
    batch_size: per-host batch size b.
    num_frames: T.
    sampling: 'segment' (TSN: a random frame per segment) or 'dense' (T
      frames `frame_stride` source frames apart from a random start).
    frame_stride: see `sampling`.
    crop_size: output side.
    crop: 'multiscale' (TSN scales x short side) or 'rrc' (random resized
      crop over `area_range`).
    scales: multi-scale crop scales.
    area_range: random resized crop area fractions.
    flip: random horizontal flip (off for Something-Something).
    seed: shuffle and augmentation seed.
    num_workers: grain worker processes (0: in this process). Keep it
      fixed across a resume.
    read_threads: threads per process that load and augment examples.
    process_index: this host.
    process_count: number of hosts.
    num_classes: if given, checked against `{split}.json`.

  Returns:
    A checkpointable grain iterator of {'video': uint8 (b, T, crop, crop,
    3), 'label': int32 (b,)}.
  """
  if crop not in ("multiscale", "rrc"):
    raise ValueError(f"crop {crop!r}; expected 'multiscale' or 'rrc'")
  meta = read_metadata(data_dir, split, num_classes)
  if flip and not meta.get("flip_safe", True):
    logging.warning(
      "%s: horizontal flip is on, but %s labels are not flip-invariant",
      split,
      meta.get("dataset"),
    )
  source = grain.sources.ArrayRecordDataSource(meta["shard_paths"])
  n = len(source)
  per_host = len(range(process_index, n, process_count))
  if per_host == 0:
    raise ValueError(
      f"{record.metadata_path(data_dir, split)}: {n} clips "
      f"for {process_count} hosts"
    )
  fn = _TrainExample(
    source,
    per_host,
    seed,
    Sampling(num_frames, sampling, frame_stride, crop_size),
    crop,
    tuple(scales),
    tuple(area_range),
    flip,
  )
  ds = (
    grain.MapDataset.range(n)
    .seed(seed)
    .shuffle()[process_index::process_count]
    .repeat(None)
    .map_with_index(fn)
  )
  ds = _iter_dataset(ds, 0, read_threads).batch(batch_size, drop_remainder=True)
  return iter(_iter_dataset(ds, num_workers, read_threads))


def num_eval_batches(
  num_clips: int, batch_size: int, num_views: int, process_count: int
) -> int:
  """Batches every host yields: the busiest host's views, rounded up."""
  return math.ceil(
    math.ceil(num_clips / process_count) * num_views / batch_size
  )


def make_eval_iterator(
  data_dir: str,
  split: str,
  *,
  batch_size: int,
  num_frames: int,
  sampling: str = "segment",
  frame_stride: int = 4,
  crop_size: int = 224,
  num_test_clips: int = 1,
  num_spatial_crops: int = 1,
  num_workers: int = 0,
  read_threads: int = 4,
  process_index: int = 0,
  process_count: int = 1,
  num_classes: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """Deterministic multi-view evaluation batches for this host.

  Views: `num_test_clips` temporal clips (centres of T segments shifted by
  (k + 0.5) / K, or evenly spaced dense windows) x `num_spatial_crops`
  square crops of the short side (centre; or start, centre, end along the
  long side), each resized to crop_size. A record whose JPEG does not
  decode raises an error naming the clip.

  Returns:
    A generator of {'video' uint8 (b, T, crop, crop, 3), 'label' int32
    (b,), 'video_index' int32 (b,), 'mask' bool (b,)}; every host yields
    `num_eval_batches(...)` batches.
  """
  meta = read_metadata(data_dir, split, num_classes)
  source = grain.sources.ArrayRecordDataSource(meta["shard_paths"])
  n = len(source)
  fn = _EvalExample(
    source,
    Sampling(num_frames, sampling, frame_stride, crop_size),
    num_test_clips,
    num_spatial_crops,
  )
  ds = grain.MapDataset.range(n)[process_index::process_count].map(fn)
  total = num_eval_batches(
    n, batch_size, num_test_clips * num_spatial_crops, process_count
  )
  return _eval_batches(
    _iter_dataset(ds, num_workers, read_threads),
    batch_size,
    total,
    (num_frames, crop_size, crop_size, 3),
  )


def _eval_batches(
  ds: grain.IterDataset, b: int, total: int, shape: tuple[int, ...]
) -> Iterator[dict[str, np.ndarray]]:
  def empty():
    return {
      "video": np.zeros((b, *shape), np.uint8),
      "label": np.zeros(b, np.int32),
      "video_index": np.full(b, -1, np.int32),
      "mask": np.zeros(b, bool),
    }

  it = iter(ds)
  try:
    batch, k, emitted = empty(), 0, 0
    for ex in it:
      for view in ex["video"]:
        batch["video"][k] = view
        batch["label"][k] = ex["label"]
        batch["video_index"][k] = ex["video_index"]
        batch["mask"][k] = True
        k += 1
        if k == b:
          yield batch
          batch, k, emitted = empty(), 0, emitted + 1
    while emitted < total:
      yield batch
      batch, emitted = empty(), emitted + 1
  finally:
    if hasattr(it, "close"):
      it.close()
