"""The file layer (art_jax/data/fs.py): memory:// stands in for gs://."""

import os

import data_helpers as h
import fsspec
import pytest

from art_jax.data import fs, record


@pytest.fixture
def mem():
  """A fresh memory:// folder (remote for fs), removed afterwards."""
  root = h.new_memory_root()
  yield root
  h.remove_memory_root(root)


def _memfs():
  return fsspec.filesystem("memory")


def test_is_remote_and_join():
  for local in ("/tmp/x", "rel/x", "x", "file:///tmp/x"):
    assert not fs.is_remote(local), local
  for remote in ("gs://b/x", "memory://x", "s3://b"):
    assert fs.is_remote(remote), remote
  assert fs.join("/a", "b", "c.json") == os.path.join("/a", "b", "c.json")
  assert fs.join("gs://b/dir/", "x", "y.json") == "gs://b/dir/x/y.json"
  assert fs.join("gs://b", ".prepare", "") == "gs://b/.prepare"
  assert fs.basename("gs://b/dir/v.mp4") == "v.mp4"
  assert record.metadata_path("gs://b/d", "val") == "gs://b/d/val.json"


@pytest.mark.parametrize("remote", [False, True])
def test_files_and_folders(tmp_path, mem, remote):
  root = mem if remote else str(tmp_path)
  d = fs.join(root, "a", "b")
  fs.makedirs(d)
  fs.write_text(fs.join(d, "x.json"), '{"k": 1}\n')
  assert fs.read_text(fs.join(d, "x.json")) == '{"k": 1}\n'
  fs.write_text(fs.join(d, "x.json"), "again")  # overwrites
  assert fs.read_text(fs.join(d, "x.json")) == "again"
  assert fs.exists(fs.join(d, "x.json")) and not fs.exists(fs.join(d, "y"))
  assert fs.isdir(fs.join(root, "a")) and not fs.isdir(fs.join(d, "x.json"))
  assert sorted(fs.listdir(d)) == ["x.json"]  # no .tmp left behind
  with fs.open(fs.join(root, "t.csv"), "w", newline="") as f:
    f.write("a,b\r\n")
  with fs.open(fs.join(root, "t.csv"), newline="") as f:
    assert f.read() == "a,b\r\n"
  with fs.open(fs.join(root, "bin"), "wb") as f:
    f.write(b"\x00\x01")
  with fs.open(fs.join(root, "bin"), "rb") as f:
    assert f.read() == b"\x00\x01"


def test_walk_matches_os_walk(tmp_path, mem):
  """Same tree, same walk (relative), local and remote; sorting steers it."""
  local = str(tmp_path / "tree")
  for rel in ("z.mp4", "b/y.mp4", "b/c/x.mp4", "a (1)/w.avi"):
    os.makedirs(os.path.dirname(os.path.join(local, rel)), exist_ok=True)
    with open(os.path.join(local, rel), "w") as f:
      f.write(rel)
  h.upload(local, mem + "/tree")

  def walked(root):
    out = []
    for dirpath, dirnames, filenames in fs.walk(root):
      dirnames.sort(reverse=True)
      assert dirpath.startswith(root)
      rel = dirpath[len(root) :].strip("/")
      out.append((rel, list(dirnames), sorted(filenames)))
      for f in filenames:  # yielded folder + name is a usable path
        assert fs.read_text(fs.join(dirpath, f)) == os.path.join(rel, f)
    return out

  want = walked(local)
  assert [r for r, _, _ in want] == ["", "b", "b/c", "a (1)"]
  assert walked(mem + "/tree") == want
  assert walked(mem + "/tree/") == want


def test_local_copy(tmp_path, mem):
  local = str(tmp_path / "v.mp4")
  with open(local, "wb") as f:
    f.write(b"video")
  with fs.local_copy(local) as p:
    assert p == local  # local paths are used in place
  assert os.path.exists(local)
  _memfs().pipe_file(fs.join(mem, "d", "v.mp4"), b"remote video")
  with fs.local_copy(fs.join(mem, "d", "v.mp4")) as p:
    assert not fs.is_remote(p) and p.endswith("v.mp4")
    with open(p, "rb") as f:
      assert f.read() == b"remote video"
  assert not os.path.exists(p)  # the download is gone
  with pytest.raises(FileNotFoundError), fs.local_copy(fs.join(mem, "no")):
    pass


@pytest.mark.parametrize("remote", [False, True])
def test_local_output(tmp_path, mem, remote):
  root = mem if remote else str(tmp_path)
  path = fs.join(root, "out", "shard-00000")
  fs.makedirs(fs.join(root, "out"))
  with fs.local_output(path) as p:
    assert not fs.is_remote(p)
    with open(p, "wb") as f:
      f.write(b"complete")
    assert not fs.exists(path)  # appears only on exit
  with fs.open(path, "rb") as f:
    assert f.read() == b"complete"
  # The body raises: nothing is uploaded (the old file stays), no temp file.
  new = fs.join(root, "out", "shard-00001")
  with pytest.raises(RuntimeError, match="crash"), fs.local_output(new) as p:
    with open(p, "wb") as f:
      f.write(b"half")
    raise RuntimeError("crash")
  assert not os.path.exists(p)
  assert not fs.exists(new)
  with pytest.raises(RuntimeError), fs.local_output(path) as p:
    with open(p, "wb") as f:
      f.write(b"half")
    raise RuntimeError("crash")
  with fs.open(path, "rb") as f:
    assert f.read() == b"complete"
  assert sorted(fs.listdir(fs.join(root, "out"))) == ["shard-00000"]


def test_read_metadata_remote(mem):
  """`{split}.json` and the shard check work on a remote data dir."""
  with pytest.raises(record.MetadataError, match=f"{mem}/val.json: no such"):
    record.read_metadata(mem, "val")
  name = record.shard_name("val", 0, 1)
  record.write_metadata(
    mem,
    "val",
    {"num_clips": 1, "class_names": ["a", "b"], "shards": [name]},
  )
  with pytest.raises(record.MetadataError, match="is missing"):
    record.read_metadata(mem, "val")
  _memfs().pipe_file(fs.join(mem, name), b"")
  meta = record.read_metadata(mem, "val", num_classes=2)
  assert meta["shard_paths"] == [f"{mem}/{name}"]
  assert record.split_shards(mem, "val") == [name]
  with pytest.raises(record.MetadataError, match="config expects 3"):
    record.read_metadata(mem, "val", num_classes=3)
