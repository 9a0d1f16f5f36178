"""Record format and split metadata."""

import json
import os

import numpy as np
import pytest

from art_jax.data import record, video


def _clip(**kw):
  frames = [
    video.encode_jpeg(np.full((8, 10, 3), v, np.uint8)) for v in (10, 200)
  ]
  d = dict(
    id="c1",
    label=3,
    frames=frames,
    frame_index=[0, 5],
    num_source_frames=6,
    fps=25.0,
    height=8,
    width=10,
    meta={"setup": 1},
  )
  d.update(kw)
  return record.Clip(**d)


def test_encode_decode_roundtrip():
  clip = _clip()
  back = record.decode(record.encode(clip))
  assert back == clip
  px = video.decode_jpeg(back.frames[1])
  assert px.shape == (8, 10, 3) and abs(int(px.mean()) - 200) <= 2


def test_decode_rejects_other_version():
  import msgpack

  data = msgpack.packb({"version": 99, "id": "c1"})
  with pytest.raises(ValueError, match="'c1' has format version 99"):
    record.decode(data)


def test_shard_name():
  assert record.shard_name("train", 3, 12) == (
    "train.array_record-00003-of-00012"
  )


def _write_split(tmp_path, **meta):
  from array_record.python import array_record_module

  name = record.shard_name("val", 0, 1)
  w = array_record_module.ArrayRecordWriter(
    str(tmp_path / name), record.WRITER_OPTIONS
  )
  w.write(record.encode(_clip()))
  w.close()
  base = {"num_clips": 1, "class_names": ["a", "b", "c", "d"], "shards": [name]}
  base.update(meta)
  record.write_metadata(str(tmp_path), "val", base)


def test_read_metadata_ok(tmp_path):
  _write_split(tmp_path)
  meta = record.read_metadata(str(tmp_path), "val", num_classes=4)
  assert meta["format_version"] == record.FORMAT_VERSION
  assert meta["shard_paths"] == [str(tmp_path / meta["shards"][0])]
  assert record.num_records(meta["shard_paths"]) == [1]


def test_read_metadata_errors_name_the_file(tmp_path):
  path = os.path.join(tmp_path, "val.json")
  with pytest.raises(record.MetadataError, match=f"{path}: no such file"):
    record.read_metadata(str(tmp_path), "val")
  _write_split(tmp_path)
  with pytest.raises(
    record.MetadataError, match=f"{path}: 4 classes, but the config expects 5"
  ):
    record.read_metadata(str(tmp_path), "val", num_classes=5)
  with open(path) as f:
    meta = json.load(f)
  meta["format_version"] = 0
  with open(path, "w") as f:
    json.dump(meta, f)
  with pytest.raises(record.MetadataError, match=f"{path}: format_version"):
    record.read_metadata(str(tmp_path), "val")
  _write_split(tmp_path, shards=["val.array_record-00000-of-00002"])
  with pytest.raises(record.MetadataError, match="is missing"):
    record.read_metadata(str(tmp_path), "val")
