"""Preprocessing jobs on tiny fake datasets in each published layout."""

import json
import os
import subprocess
import sys

import data_helpers as h
import fsspec
import pytest
from array_record.python import array_record_module

from art_jax.data import fs, prepare, record
from art_jax.data.datasets import diving48, finegym, ntu

PARAMS = prepare.Params(short_side=24, max_frames=16, min_frames=4)


def read_split(out, split):
  """{clip id: record.Clip} of a prepared split (local or remote)."""
  meta = record.read_metadata(out, split)
  clips = {}
  for path in meta["shard_paths"]:
    with fs.local_copy(path) as local:
      r = array_record_module.ArrayRecordReader(local)
      for data in r.read_all():
        clip = record.decode(data)
        clips[clip.id] = clip
      r.close()
  assert len(clips) == meta["num_clips"]
  return meta, clips


def failures(out, split):
  with fs.open(record.failures_path(out, split)) as f:
    return [json.loads(line) for line in f]


def split_files(out, split):
  """{name: bytes} of a split's shards, metadata and failure list."""
  meta = record.read_metadata(out, split)
  names = [*meta["shards"], f"{split}.json", f"{split}.failures.jsonl"]
  files = {}
  for name in names:
    with fs.open(fs.join(out, name), "rb") as f:
      files[name] = f.read()
  return files


@pytest.fixture
def mem():
  """A fresh memory:// folder: a remote store (like gs://) for fs."""
  root = h.new_memory_root()
  yield root
  h.remove_memory_root(root)


def run_split(fx, dataset, variant, split, out, **kw):
  return prepare.prepare_split(
    dataset,
    variant,
    split,
    videos=fx["videos"],
    annotations=fx.get("annotations"),
    out=out,
    params=PARAMS,
    **kw,
  )


def check_clips(clips, expected):
  assert {k: c.label for k, c in clips.items()} == expected
  for c in clips.values():
    assert c.height == 24 and c.width == 30
    assert len(c.frames) == len(c.frame_index) <= PARAMS.max_frames
    assert len(c.frames) >= PARAMS.min_frames


def test_finegym(tmp_path):
  fx = h.make_finegym(str(tmp_path / "raw"))
  out = str(tmp_path / "out")
  s = run_split(fx, "finegym", "gym99", "train", out, num_shards=2)
  assert (s.num_clips, s.num_failures) == (4, fx["train_failures"])
  meta, clips = read_split(out, "train")
  check_clips(clips, fx["train"])
  assert meta["num_classes"] == 99 and len(meta["shards"]) == 2
  assert meta["class_names"][1] == "element number 1, with a turn"
  assert meta["class_events"][:2] == ["VT", "FX"]
  # Element 2..4 s of event starting at 1 s: source frames 30..48 at 10
  # fps; 19 frames, capped at 16.
  c = clips["a_b-c_E_000001_000005_A_0002_0004"]
  assert c.num_source_frames == 19 and len(c.frames) == 16
  assert c.meta == {
    "youtube_id": "a_b-c",
    "event_id": "a_b-c_E_000001_000005",
    "element_id": c.id,
    "event": 1,
    "stages": 2,
  }
  assert clips["cut_E_000000_000009_A_0000_0003"].num_source_frames == 30
  reasons = {f["id"]: f["reason"] for f in failures(out, "train")}
  assert "too short" in reasons["a_b-c_E_000001_000005_A_0005_0009"]
  assert "missing video" in reasons["missing_E_000000_000009_A_0000_0003"]
  assert "not in finegym" in reasons["xyz_E_000000_000003_A_0009_0010"]
  assert any("bad annotation line" in r for r in reasons.values())
  run_split(fx, "finegym", "gym99", "val", out)
  check_clips(read_split(out, "val")[1], fx["val"])


def test_finegym_gym288_and_ids():
  assert finegym.parse_element_id("a_b-c_E_000001_000005_A_0002_0004") == (
    "a_b-c",
    "E_000001_000005",
    "A_0002_0004",
  )
  with pytest.raises(ValueError):
    finegym.parse_element_id("a_b_c")


def test_finegym_gym288(tmp_path):
  fx = h.make_finegym(str(tmp_path / "raw"), "gym288")
  out = str(tmp_path / "out")
  run_split(fx, "finegym", "gym288", "val", out)
  meta, clips = read_split(out, "val")
  assert meta["num_classes"] == 288
  check_clips(clips, fx["val"])


def test_diving48(tmp_path):
  fx = h.make_diving48(str(tmp_path / "raw"))
  out = str(tmp_path / "out")
  s = run_split(fx, "diving48", "v2", "train", out)
  assert (s.num_clips, s.num_failures) == (3, fx["train_failures"])
  meta, clips = read_split(out, "train")
  check_clips(clips, fx["train"])
  assert meta["class_names"][0] == (
    "back take-off, 1.5 somersaults, 0.5 twists, free position"
  )
  assert meta["class_names"][2] == (
    "inward take-off, 1 somersault, no twist, tuck position"
  )
  reasons = {f["id"]: f["reason"] for f in failures(out, "train")}
  assert set(reasons) == {
    "trunc_00001",
    "empty_00001",
    "nope_00001",
    "bad_label",
  }
  run_split(fx, "diving48", "v2", "test", out)
  check_clips(read_split(out, "test")[1], fx["test"])


def test_diving48_class_name():
  assert diving48.class_name(["Reverse", "35som", "NoTwis", "PIKE"]) == (
    "reverse take-off, 3.5 somersaults, no twist, pike position"
  )


@pytest.mark.parametrize(
  ("dataset", "variant", "train", "val"),
  [
    (
      "ntu60",
      "xsub",
      {"S001C001P001R001A001", "S002C003P001R001A010"},
      {"S001C002P003R002A060"},
    ),
    (
      "ntu60",
      "xview",
      {"S001C002P003R002A060", "S002C003P001R001A010"},
      {"S001C001P001R001A001"},
    ),
    (
      "ntu120",
      "xsub",
      {"S001C001P001R001A001", "S002C003P001R001A010", "S018C001P045R001A061"},
      {"S001C002P003R002A060", "S020C001P003R001A120"},
    ),
    (
      "ntu120",
      "xset",
      {"S002C003P001R001A010", "S018C001P045R001A061", "S020C001P003R001A120"},
      {"S001C001P001R001A001", "S001C002P003R002A060"},
    ),
  ],
)
def test_ntu(tmp_path_factory, dataset, variant, train, val):
  root = tmp_path_factory.getbasetemp() / "ntu_raw"
  if not root.exists():
    h.make_ntu(str(root))
  fx = {"videos": str(root)}
  out = str(tmp_path_factory.mktemp("out"))
  for split, ids in (("train", train), ("val", val)):
    run_split(fx, dataset, variant, split, out)
    meta, clips = read_split(out, split)
    assert set(clips) == ids
    assert meta["num_classes"] == ntu.NUM_ACTIONS[dataset]
    for c in clips.values():
      assert c.label == int(c.id[-3:]) - 1
      assert c.meta["performer"] == int(c.id[9:12])
  # The not-a-video file is in xsub train / xset val (S003, P001).
  fails = failures(out, "train") + failures(out, "val")
  assert [f["id"] for f in fails] == ["S003C001P001R001A002"]


def test_ntu_class_names():
  n60, n120 = ntu.class_names("ntu60"), ntu.class_names("ntu120")
  assert len(n60) == 60 and len(n120) == 120 and n120[:60] == n60
  assert n60[0] == "drink water" and n120[119].startswith("finger-guessing")


def test_ntu_split_lists():
  assert len(ntu.XSUB_TRAIN_60) == 20 and len(ntu.XSUB_TRAIN_120) == 53
  assert ntu.is_train("ntu120", "xset", 2, 1, 3)
  assert not ntu.is_train("ntu120", "xset", 3, 1, 1)


def test_kinetics(tmp_path):
  fx = h.make_kinetics(str(tmp_path / "raw"))
  out = str(tmp_path / "out")
  s = run_split(fx, "kinetics", "k400", "train", out)
  assert (s.num_clips, s.num_failures) == (3, fx["train_failures"])
  meta, clips = read_split(out, "train")
  check_clips(clips, fx["train"])
  assert meta["class_names"] == [
    "abseiling",
    "tying knot (not on a tie)",
    "zumba",
  ]
  run_split(fx, "kinetics", "k400", "val", out)
  check_clips(read_split(out, "val")[1], fx["val"])


def test_ssv2(tmp_path):
  fx = h.make_ssv2(str(tmp_path / "raw"))
  out = str(tmp_path / "out")
  s = run_split(fx, "ssv2", "v2", "train", out)
  assert (s.num_clips, s.num_failures) == (2, fx["train_failures"])
  meta, clips = read_split(out, "train")
  check_clips(clips, fx["train"])
  assert meta["flip_safe"] is False
  assert meta["class_names"][2] == "Pushing something from left to right"
  assert clips["78687"].meta["template"] == (
    "Holding [something] next to [something]"
  )
  assert clips["78687"].fps == pytest.approx(12)
  run_split(fx, "ssv2", "v2", "val", out)
  check_clips(read_split(out, "val")[1], fx["val"])


def test_resume_skips_finished_shards(tmp_path, monkeypatch):
  fx = h.make_diving48(str(tmp_path / "raw"))
  out = str(tmp_path / "out")
  run_split(fx, "diving48", "v2", "train", out, num_shards=3)
  shard1 = os.path.join(out, record.shard_name("train", 1, 3))
  os.remove(shard1)
  seen = []
  real = prepare.process_clip
  monkeypatch.setattr(
    prepare, "process_clip", lambda t, p: seen.append(t.id) or real(t, p)
  )
  s = run_split(fx, "diving48", "v2", "train", out, num_shards=3)
  # Only shard 1's clips (the 3rd and 4th of 6) were processed again.
  assert seen == ["abc_00002", "trunc_00001"]
  assert (s.num_clips, s.num_failures) == (3, 4)
  check_clips(read_split(out, "train")[1], fx["train"])
  seen.clear()
  run_split(fx, "diving48", "v2", "train", out, num_shards=3)
  assert seen == []
  # Other parameters: every shard is redone.
  prepare.prepare_split(
    "diving48",
    "v2",
    "train",
    videos=fx["videos"],
    annotations=fx["annotations"],
    out=out,
    params=prepare.Params(short_side=16, min_frames=4),
    num_shards=3,
  )
  assert len(seen) == 6
  assert read_split(out, "train")[1]["abc_00001"].height == 16


def test_exit_status():
  ok = prepare.SplitSummary("a", 9, 1, 10)
  assert prepare.exit_status([ok], 0.1) == 0
  assert prepare.exit_status([prepare.SplitSummary("a", 8, 2, 10)], 0.1) == 1
  assert prepare.exit_status([ok, prepare.SplitSummary("b", 0, 0, 0)], 0.5) == 1


def test_process_clip_never_raises(tmp_path):
  """The per-clip function (the Beam DoFn body) turns errors into reasons."""
  from art_jax.data.datasets import common

  bad = h.write_text(str(tmp_path / "x.mp4"))
  data, fail = prepare.process_clip(common.ClipTask("x", 0, bad), PARAMS)
  assert data is None and fail["id"] == "x" and "cannot open" in fail["reason"]
  good = h.write_video(str(tmp_path / "g.mp4"), 12)
  data, fail = prepare.process_clip(
    common.ClipTask("g", 1, good, meta={"k": "v"}), PARAMS
  )
  assert fail is None and record.decode(data).meta == {"k": "v"}


def test_cli_with_process_pool(tmp_path):
  fx = h.make_kinetics(str(tmp_path / "raw"))
  out = str(tmp_path / "out")
  cmd = [
    sys.executable,
    "-m",
    "art_jax.data.prepare",
    "--dataset=kinetics",
    "--variant=k400",
    f"--videos={fx['videos']}",
    f"--annotations={fx['annotations']}",
    f"--out={out}",
    "--workers=2",
    "--short_side=24",
    "--min_frames=4",
    "--max_frames=16",
  ]
  # 2 of 5 train clips fail: 40% > 10% -> exit status 1.
  p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
  assert p.returncode == 1, p.stderr
  assert "train: 3 clips, 2 failed (40.0%)" in p.stdout
  assert "clip/s" in p.stderr
  p = subprocess.run(
    cmd + ["--max_failure_fraction=0.5"],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert p.returncode == 0, p.stderr
  check_clips(read_split(out, "train")[1], fx["train"])
  assert "2 of 2 shards already done" not in p.stderr  # 1 shard per split
  assert "already done" in p.stderr


def _stamp(path):
  """When a file was last written (local or memory://)."""
  if fs.is_remote(path):
    return fsspec.filesystem("memory").info(path)["created"]
  return os.stat(path).st_mtime_ns


@pytest.mark.parametrize("remote", [False, True])
def test_beam_runner_writes_the_same_files(tmp_path, mem, remote):
  """--runner=beam on the DirectRunner: byte-identical shards, metadata and
  failure list; remote (memory://) videos, annotations and output work;
  a re-run redoes only a missing shard."""
  pytest.importorskip("apache_beam")
  raw = str(tmp_path / "raw")
  fx = h.make_diving48(raw)
  local = str(tmp_path / "local")
  run_split(fx, "diving48", "v2", "train", local, num_shards=2)
  want = split_files(local, "train")
  beam = str(tmp_path / "beam")
  if remote:
    fx = h.remote_fixture(fx, raw, f"{mem}/raw")
    beam = f"{mem}/beam"
    want = {
      k: v.replace(raw.encode(), f"{mem}/raw".encode()) for k, v in want.items()
    }
  kw = {
    "num_shards": 2,
    "runner": "beam",
    "beam_options": "--runner=DirectRunner",
  }
  s = run_split(fx, "diving48", "v2", "train", beam, **kw)
  assert (s.num_clips, s.num_failures) == (3, fx["train_failures"])
  assert split_files(beam, "train") == want
  check_clips(read_split(beam, "train")[1], fx["train"])
  shard0, shard1 = (
    fs.join(beam, record.shard_name("train", i, 2)) for i in range(2)
  )
  before = _stamp(shard0)
  if remote:
    fsspec.filesystem("memory").rm(shard1)
  else:
    os.remove(shard1)
  s = run_split(fx, "diving48", "v2", "train", beam, **kw)
  assert (s.num_clips, s.num_failures) == (3, fx["train_failures"])
  assert split_files(beam, "train") == want
  assert _stamp(shard0) == before  # skipped: not written again


def test_synthetic_to_remote_out(tmp_path, mem):
  """The synthetic job with --out=memory://: the files of a local run."""
  local, remote = str(tmp_path / "out"), f"{mem}/out"
  opts = {"num_clips": {"train": 5, "val": 2}, "seed": 0}
  params = prepare.Params(short_side=32, max_frames=4, min_frames=4)
  for out in (local, remote):
    for split, n in opts["num_clips"].items():
      s = prepare.prepare_split(
        "synthetic",
        "default",
        split,
        videos=None,
        annotations=None,
        out=out,
        params=params,
        num_shards=2,
        read_options=opts,
      )
      assert (s.num_clips, s.num_failures) == (n, 0)
  for split in opts["num_clips"]:
    assert split_files(remote, split) == split_files(local, split)
    meta, clips = read_split(remote, split)
    assert meta["shard_paths"][0].startswith(f"{remote}/")
    assert clips == read_split(local, split)[1]
    for name in meta["shards"]:  # resume markers too (no paths in them)
      marker = f".prepare/{name}.done.json"
      assert fs.read_text(fs.join(remote, marker)) == fs.read_text(
        fs.join(local, marker)
      )


REMOTE_CASES = {
  "finegym": (h.make_finegym, "finegym", "gym99"),
  "diving48": (h.make_diving48, "diving48", "v2"),
  "ntu": (h.make_ntu, "ntu120", "xsub"),
  "kinetics": (h.make_kinetics, "kinetics", "k400"),
  "ssv2": (h.make_ssv2, "ssv2", "v2"),
}


@pytest.mark.parametrize("case", list(REMOTE_CASES))
def test_remote_videos_annotations_and_out(tmp_path, mem, case):
  """Raw data and output on memory:// (as on gs://): the same shards,
  metadata and failures (paths renamed) as the local run."""
  make, dataset, variant = REMOTE_CASES[case]
  raw, remote_raw = str(tmp_path / "raw"), f"{mem}/raw"
  fx = make(raw)
  rfx = h.remote_fixture(fx, raw, remote_raw)
  assert fs.is_remote(rfx["videos"])
  local, remote = str(tmp_path / "out"), f"{mem}/out"
  for split in prepare.DATASETS[dataset].variants[variant]:
    want = run_split(fx, dataset, variant, split, local, num_shards=2)
    got = run_split(rfx, dataset, variant, split, remote, num_shards=2)
    assert got == want and got.num_clips > 0
    assert read_split(remote, split)[1] == read_split(local, split)[1]
    files = split_files(local, split)
    failed = f"{split}.failures.jsonl"
    files[failed] = files[failed].replace(raw.encode(), remote_raw.encode())
    assert split_files(remote, split) == files
  if "train_failures" in fx:
    assert len(failures(remote, "train")) == fx["train_failures"]


def test_resume_on_remote_out(tmp_path, mem, monkeypatch):
  """On memory://: a crash leaves no half shard, and re-runs redo only the
  shards that are not there."""
  raw = str(tmp_path / "raw")
  fx = h.remote_fixture(h.make_diving48(raw), raw, f"{mem}/raw")
  out = f"{mem}/out"
  real, seen = prepare.process_clip, []

  def process(task, params):
    if task.id == crash_at:
      raise RuntimeError("worker died")
    seen.append(task.id)
    return real(task, params)

  monkeypatch.setattr(prepare, "process_clip", process)
  shard = [fs.join(out, record.shard_name("train", i, 3)) for i in range(3)]
  done = [
    fs.join(out, ".prepare", fs.basename(p) + ".done.json") for p in shard
  ]
  # Clips: -mmq0PT-u8k_00155, abc_00001 | abc_00002, trunc_00001 | ...
  crash_at = "trunc_00001"
  with pytest.raises(RuntimeError, match="worker died"):
    run_split(fx, "diving48", "v2", "train", out, num_shards=3)
  assert [fs.exists(p) for p in shard] == [True, False, False]
  assert [fs.exists(p) for p in done] == [True, False, False]
  assert sorted(fs.listdir(out)) == [".prepare", fs.basename(shard[0])]
  crash_at = None
  seen.clear()
  s = run_split(fx, "diving48", "v2", "train", out, num_shards=3)
  assert seen == ["abc_00002", "trunc_00001", "empty_00001", "nope_00001"]
  assert (s.num_clips, s.num_failures) == (3, fx["train_failures"])
  fsspec.filesystem("memory").rm(shard[1])
  seen.clear()
  s = run_split(fx, "diving48", "v2", "train", out, num_shards=3)
  assert seen == ["abc_00002", "trunc_00001"]
  assert (s.num_clips, s.num_failures) == (3, fx["train_failures"])
  seen.clear()
  run_split(fx, "diving48", "v2", "train", out, num_shards=3)
  assert seen == []
  check_clips(read_split(out, "train")[1], fx["train"])
