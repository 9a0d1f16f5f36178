"""Tiny real video files (PyAV) and broken ones for the data tests."""

import os
import uuid

import av
import fsspec
import numpy as np
import pytest

H, W = 32, 40
# (extension, encoder, pixel format)
CODECS = {
  "mp4": ("mp4", "libx264", "yuv420p"),
  "mp4v": ("mp4", "mpeg4", "yuv420p"),
  "avi": ("avi", "mpeg4", "yuv420p"),
  "mjpeg": ("avi", "mjpeg", "yuvj420p"),
  "vp9": ("webm", "libvpx-vp9", "yuv420p"),
  "vp8": ("webm", "libvpx", "yuv420p"),
}


def frame_value(i: int) -> int:
  """Grey level of frame i (distinct per frame, survives compression)."""
  return 16 + (i * 5) % 224


def has_encoder(name: str) -> bool:
  try:
    av.codec.Codec(name, "w")
    return True
  except Exception:  # noqa: BLE001
    return False


def write_video(
  path: str, num_frames: int, fps: int = 10, codec: str = "mp4"
) -> str:
  """Writes frames of uniform grey `frame_value(i)`, (H, W); returns path."""
  _, encoder, pix_fmt = CODECS[codec]
  if not has_encoder(encoder):
    pytest.skip(f"no {encoder} encoder in this PyAV build")
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with av.open(path, "w") as c:
    s = c.add_stream(encoder, rate=fps)
    s.width, s.height, s.pix_fmt = W, H, pix_fmt
    if encoder == "libx264":
      s.options = {"preset": "ultrafast", "g": "10"}
    for i in range(num_frames):
      img = np.full((H, W, 3), frame_value(i), np.uint8)
      img[: H // 4, : W // 4] = (255, 0, 0)  # a red top-left corner
      for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
        c.mux(p)
    for p in s.encode():
      c.mux(p)
  return path


def write_truncated(path: str, num_frames: int = 30) -> str:
  """An AVI cut in the middle (the index at the end is lost)."""
  write_video(path, num_frames, codec="avi")
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.truncate(size // 3)
  return path


def write_empty(path: str) -> str:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  open(path, "wb").close()
  return path


def write_text(path: str) -> str:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w") as f:
    f.write("this is not a video\n" * 20)
  return path


def _dump(path: str, obj) -> str:
  import json  # noqa: PLC0415

  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f)
  return path


def _lines(path: str, lines) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write("".join(line + "\n" for line in lines))
  return path


def make_finegym(root: str, variant: str = "gym99") -> dict:
  """Two full videos + one pre-cut clip; 5 good elements, 4 bad lines.

  Returns the expected {element_id: label} of the train and val splits.
  """
  ann, vids = os.path.join(root, "annotations"), os.path.join(root, "videos")
  # A youtube id with '_' and '-' in it, 6 s at 10 fps.
  write_video(os.path.join(vids, "a_b-c.mp4"), 60, fps=10)
  write_video(os.path.join(vids, "xyz.webm"), 40, fps=10, codec="vp8")
  info = {
    "a_b-c": {
      "E_000001_000005": {
        "event": 1,
        "timestamps": [[1.0, 5.0]],
        "segments": {
          "A_0000_0001": {"stages": 1, "timestamps": [[0.0, 1.5]]},
          "A_0002_0004": {"stages": 2, "timestamps": [[2.0, 2.6], [2.6, 3.9]]},
          # Ends at 1 + 9 = 10 s, past the 6 s video: too short.
          "A_0005_0009": {"stages": 1, "timestamps": [[5.0, 9.0]]},
        },
      },
    },
    "xyz": {
      "E_000000_000003": {
        "event": 4,
        "timestamps": [[0.5, 3.5]],
        "segments": {
          "A_0000_0002": {"stages": 1, "timestamps": [[0.0, 2.0]]},
          "A_0001_0003": {"stages": 1, "timestamps": [[1.0, 3.0]]},
        },
      },
      "E_000010_000012": {
        "event": 4,
        "timestamps": [[10.0, 12.0]],
        "segments": {"A_0000_0001": {"stages": 1, "timestamps": [[0.0, 1.0]]}},
      },
    },
    "missing": {
      "E_000000_000009": {
        "event": 2,
        "timestamps": [[0, 9]],
        "segments": {"A_0000_0003": {"stages": 1, "timestamps": [[0, 3]]}},
      }
    },
    "cut": {
      "E_000000_000009": {
        "event": 3,
        "timestamps": [[0, 9]],
        "segments": {"A_0000_0003": {"stages": 1, "timestamps": [[0, 3]]}},
      }
    },
  }
  _dump(os.path.join(ann, "finegym_annotation_info_v1.1.json"), info)
  # An already-cut element clip, named by its element id.
  write_video(
    os.path.join(vids, "clips", "cut_E_000000_000009_A_0000_0003.avi"),
    30,
    codec="avi",
  )
  n = 99 if variant == "gym99" else 288
  codes = ["VT", "FX", "BB", "UB"]
  _lines(
    os.path.join(ann, f"{variant}_categories.txt"),
    [
      f"Clabel: {i}; set: {i // 10}; Glabel: {i + 3}; ({codes[i % 4]}) "
      f"element number {i}, with a turn"
      for i in range(n)
    ],
  )
  train = {
    "a_b-c_E_000001_000005_A_0000_0001": 3,
    "a_b-c_E_000001_000005_A_0002_0004": 7,
    "xyz_E_000000_000003_A_0000_0002": 3,
    "cut_E_000000_000009_A_0000_0003": 98,
  }
  bad_train = [
    "a_b-c_E_000001_000005_A_0005_0009 1",  # past video end
    "xyz_E_000010_000012_A_0000_0001 2",  # past video end
    "missing_E_000000_000009_A_0000_0003 4",  # no video
    "garbage line with words",  # does not parse
    "xyz_E_000000_000003_A_0009_0010 5",
  ]  # not in the JSON
  val = {"xyz_E_000000_000003_A_0001_0003": 11}
  _lines(
    os.path.join(ann, f"{variant}_train_element_v1.1.txt"),
    [f"{k} {v}" for k, v in train.items()] + bad_train,
  )
  _lines(
    os.path.join(ann, f"{variant}_val_element.txt"),
    [f"{k} {v}" for k, v in val.items()],
  )
  return {
    "annotations": ann,
    "videos": vids,
    "train": train,
    "val": val,
    "train_failures": len(bad_train),
    "num_classes": n,
  }


def make_diving48(root: str) -> dict:
  ann, vids = os.path.join(root, "annotations"), os.path.join(root, "rgb")
  vocab = [
    ["Back", "15som", "05Twis", "FREE"],
    ["Forward", "25som", "NoTwis", "PIKE"],
    ["Inward", "1som", "NoTwis", "TUCK"],
  ]
  _dump(os.path.join(ann, "Diving48_vocab.json"), vocab)
  train = [
    {
      "vid_name": "-mmq0PT-u8k_00155",
      "label": 0,
      "start_frame": 0,
      "end_frame": 23,
    },
    {"vid_name": "abc_00001", "label": 2, "start_frame": 0, "end_frame": 15},
    {"vid_name": "abc_00002", "label": 1, "start_frame": 0, "end_frame": 19},
    {"vid_name": "trunc_00001", "label": 1, "start_frame": 0, "end_frame": 29},
    {"vid_name": "empty_00001", "label": 1, "start_frame": 0, "end_frame": 29},
    {"vid_name": "nope_00001", "label": 0, "start_frame": 0, "end_frame": 10},
    {"vid_name": "bad_label", "label": "x", "start_frame": 0, "end_frame": 10},
  ]
  test = [
    {"vid_name": "abc_00003", "label": 2, "start_frame": 0, "end_frame": 11}
  ]
  _dump(os.path.join(ann, "Diving48_V2_train.json"), train)
  _dump(os.path.join(ann, "Diving48_V2_test.json"), test)
  write_video(os.path.join(vids, "-mmq0PT-u8k_00155.mp4"), 24)
  write_video(os.path.join(vids, "abc_00001.mp4"), 16, codec="mp4v")
  write_video(os.path.join(vids, "abc_00002.mp4"), 20)
  write_video(os.path.join(vids, "abc_00003.mp4"), 12)
  write_truncated(os.path.join(vids, "trunc_00001.mp4"))
  write_empty(os.path.join(vids, "empty_00001.mp4"))
  return {
    "annotations": ann,
    "videos": root,
    "train": {"-mmq0PT-u8k_00155": 0, "abc_00001": 2, "abc_00002": 1},
    "test": {"abc_00003": 2},
    "train_failures": 4,
    "num_classes": 3,
  }


def make_ntu(root: str) -> dict:
  """NTU120 names; performers 1 (xsub train) and 3 (test)."""
  vids = os.path.join(root, "nturgb+d_rgb")
  names = {
    "S001C001P001R001A001": "mjpeg",  # xsub train, xview test
    "S001C002P003R002A060": "avi",  # xsub test, xview train
    "S002C003P001R001A010": "avi",  # xsub train, xview train
    "S018C001P045R001A061": "avi",  # NTU120 only (setup 18, action 61)
    "S020C001P003R001A120": "avi",  # NTU120 only
  }
  for stem, codec in names.items():
    write_video(os.path.join(vids, stem + "_rgb.avi"), 12, codec=codec)
  write_text(os.path.join(vids, "S003C001P001R001A002_rgb.avi"))
  write_text(os.path.join(vids, "README.txt"))
  return {"videos": root, "names": names}


def make_kinetics(root: str) -> dict:
  ann, vids = os.path.join(root, "annotations"), os.path.join(root, "videos")
  header = "label,youtube_id,time_start,time_end,split"
  train = [
    "abseiling,---QUuC4vJs,3,13,train",
    "zumba,a_b-c,0,10,train",
    '"tying knot (not on a tie)",xyz,12,22,train',
    "zumba,gone,5,15,train",  # missing video
    "zumba,oops,five,15,train",
  ]  # bad line
  val = ["abseiling,vvv,1,11,validate"]
  _lines(os.path.join(ann, "train.csv"), [header, *train])
  _lines(os.path.join(ann, "validate.csv"), [header, *val])
  write_video(
    os.path.join(vids, "train", "abseiling", "---QUuC4vJs_000003_000013.mp4"),
    20,
  )
  write_video(
    os.path.join(vids, "train", "zumba", "a_b-c_000000_000010.mp4"), 16
  )
  write_video(
    os.path.join(
      vids, "train", "tying knot (not on a tie)", "xyz_000012_000022.mp4"
    ),
    24,
  )
  write_video(os.path.join(vids, "vvv_000001_000011.mp4"), 16)  # flat
  return {
    "annotations": ann,
    "videos": vids,
    "train": {
      "---QUuC4vJs_000003_000013": 0,
      "a_b-c_000000_000010": 2,
      "xyz_000012_000022": 1,
    },
    "val": {"vvv_000001_000011": 0},
    "train_failures": 2,
  }


def make_ssv2(root: str) -> dict:
  ann, vids = os.path.join(root, "annotations"), os.path.join(root, "videos")
  labels = {
    "Approaching something with your camera": "0",
    "Holding something next to something": "1",
    "Pushing something from left to right": "2",
  }
  _dump(os.path.join(ann, "something-something-v2-labels.json"), labels)
  train = [
    {
      "id": "78687",
      "label": "holding potato next to vicks",
      "template": "Holding [something] next to [something]",
      "placeholders": ["potato", "vicks"],
    },
    {
      "id": "42",
      "label": "pushing pen from left to right",
      "template": "Pushing [something] from left to right",
      "placeholders": ["pen"],
    },
    {
      "id": "43",
      "label": "?",
      "template": "No such template",
      "placeholders": [],
    },
  ]
  val = [
    {
      "id": "7",
      "label": "approaching a cup with your camera",
      "template": "Approaching [something] with your camera",
      "placeholders": ["a cup"],
    }
  ]
  _dump(os.path.join(ann, "something-something-v2-train.json"), train)
  _dump(os.path.join(ann, "something-something-v2-validation.json"), val)
  write_video(os.path.join(vids, "78687.webm"), 24, fps=12, codec="vp9")
  write_video(os.path.join(vids, "42.webm"), 16, fps=12, codec="vp9")
  write_video(os.path.join(vids, "7.webm"), 12, fps=12, codec="vp8")
  return {
    "annotations": ann,
    "videos": vids,
    "train": {"78687": 1, "42": 2},
    "val": {"7": 0},
    "train_failures": 1,
  }


# --------------------------------------------------------------------------
# memory:// (fsspec's in-memory file system) stands in for gs:// in tests.


def new_memory_root() -> str:
  """A unique, empty memory:// folder."""
  return f"memory://art-jax-test-{uuid.uuid4().hex[:12]}"


def remove_memory_root(root: str):
  fs, path = fsspec.core.url_to_fs(root)
  if fs.exists(path):
    fs.rm(path, recursive=True)


def upload(local_root: str, remote_root: str):
  """Copies every file under `local_root` to the same place under a
  remote folder (what `gsutil cp -r` would do)."""
  fs, base = fsspec.core.url_to_fs(remote_root)
  for dirpath, _, files in os.walk(local_root):
    for f in files:
      path = os.path.join(dirpath, f)
      rel = os.path.relpath(path, local_root).replace(os.sep, "/")
      with open(path, "rb") as src:
        fs.pipe_file(f"{base.rstrip('/')}/{rel}", src.read())


def remote_fixture(fx: dict, local_root: str, remote_root: str) -> dict:
  """`fx` with its local videos/annotations folders under `local_root`
  uploaded to and renamed into `remote_root`."""
  upload(local_root, remote_root)
  out = dict(fx)
  for key in ("videos", "annotations"):
    if fx.get(key):
      rel = os.path.relpath(fx[key], local_root).replace(os.sep, "/")
      out[key] = remote_root if rel == "." else f"{remote_root}/{rel}"
  return out
