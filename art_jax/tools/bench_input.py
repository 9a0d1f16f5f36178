r"""Input pipeline benchmark: JPEG records vs decoding the videos with PyAV.

  python -m art_jax.tools.bench_input --data=/data/k400 --split=train \
      --videos=/raw/k400/videos

or, without a dataset at hand, on generated clips (written to --workdir):

  python -m art_jax.tools.bench_input --synthetic=24

Prints, for T=16 frames cropped to 224x224 (segment sampling, multi-scale
crop, flip):
  * clips/s of one worker (one process, one thread: per CPU core) on the
    JPEG records, and of the full grain pipeline with --workers processes;
  * clips/s of decoding the same clips' video files with PyAV (the whole
    clip decoded single-threaded, then the same sampling and crop: what a
    PyTorch loader does), and the ratio;
  * milliseconds per frame of each JPEG codec, with and without DCT-domain
    downscaling.
"""

import io
import os
import tempfile
import time

import av
import numpy as np
from absl import app, flags
from PIL import Image

from art_jax.data import pipeline, prepare, record, video
from art_jax.data.datasets import common


def define_flags() -> None:
  """Command-line flags (defined only when run as a program)."""
  flags.DEFINE_string("data", None, "prepared dataset folder")
  flags.DEFINE_string("split", "train", "split")
  flags.DEFINE_string("videos", None, "raw videos (PyAV baseline)")
  flags.DEFINE_integer(
    "synthetic", 0, "generate this many clips instead of --data"
  )
  flags.DEFINE_string("workdir", None, "for --synthetic")
  flags.DEFINE_integer("clips", 48, "clips to time per measurement")
  flags.DEFINE_integer("num_frames", 16, "T")
  flags.DEFINE_integer("crop_size", 224, "crop side")
  flags.DEFINE_integer("workers", os.cpu_count() or 1, "grain worker processes")


def make_synthetic(
  workdir: str,
  n: int,
  seconds: float = 10.0,
  fps: int = 25,
  size: tuple[int, int] = (360, 640),
):
  """n h264 clips of moving textured shapes, prepared into records."""
  vids = os.path.join(workdir, "videos")
  os.makedirs(vids, exist_ok=True)
  rng = np.random.default_rng(0)
  h, w = size
  yy, xx = np.mgrid[:h, :w]
  tasks = []
  for i in range(n):
    path = os.path.join(vids, f"clip{i:04d}.mp4")
    tasks.append(common.ClipTask(f"clip{i:04d}", i % 10, path))
    if os.path.exists(path):
      continue
    base = (rng.integers(0, 255, (h // 8, w // 8, 3))).astype(np.uint8)
    base = np.asarray(Image.fromarray(base).resize((w, h), Image.BICUBIC))
    with av.open(path, "w") as c:
      s = c.add_stream("libx264", rate=fps)
      s.width, s.height, s.pix_fmt = w, h, "yuv420p"
      s.options = {"crf": "23", "preset": "veryfast"}
      for t in range(int(seconds * fps)):
        img = np.roll(base, 3 * t, axis=1).copy()
        cy, cx = (
          h / 2 + h / 3 * np.sin(t / 9 + i),
          w / 2 + w / 3 * np.cos(t / 13),
        )
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < (h / 8) ** 2] = (200, 60, 30)
        for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
          c.mux(p)
      for p in s.encode():
        c.mux(p)
  out = os.path.join(workdir, "records")
  ann = common.Annotations(tasks, [f"c{k}" for k in range(10)])
  for split in ("train",):
    shards = prepare.plan_shards(len(tasks), 2, 512)
    done = prepare.write_split_local(
      out, split, tasks, shards, prepare.Params(), os.cpu_count() or 1
    )
    names = [record.shard_name(split, k, 2) for k in range(2)]
    record.write_metadata(
      out,
      split,
      {
        "num_clips": sum(d["num_records"] for d in done),
        "class_names": ann.class_names,
        "shards": names,
      },
    )
  return out, vids


def _rate(fn, items) -> tuple[float, float]:
  """(clips per wall second, clips per CPU second of this process)."""
  t, c = time.perf_counter(), time.process_time()
  for x in items:
    fn(x)
  return (
    len(items) / (time.perf_counter() - t),
    len(items) / (time.process_time() - c),
  )


def _pyav_clip(path: str, num_frames: int, crop: int, rng) -> np.ndarray:
  """Decodes the whole clip (one thread), samples and crops like training."""
  with av.open(path) as c:
    s = c.streams.video[0]
    s.codec_context.thread_count = 1
    frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
  idx = video.segment_indices(len(frames), num_frames, rng)
  h, w = frames[0].shape[:2]
  box = video.multiscale_box(h, w, rng)
  flip = rng.random() < 0.5
  return np.stack([video.crop_resize(frames[i], box, crop, flip) for i in idx])


def _codec_table(jpeg: bytes, reps: int = 200) -> list[tuple[str, float]]:
  def pil(draft=None):
    img = Image.open(io.BytesIO(jpeg))
    if draft:
      img.draft("RGB", (img.width // draft, img.height // draft))
    return np.asarray(img.convert("RGB"))

  rows = [("pillow", lambda: pil()), ("pillow DCT 1/2", lambda: pil(2))]
  if video.simplejpeg is not None:
    sj = video.simplejpeg
    rows += [
      ("simplejpeg", lambda: sj.decode_jpeg(jpeg)),
      (
        "simplejpeg DCT 1/2",
        lambda: sj.decode_jpeg(jpeg, min_height=1, min_width=1, min_factor=2),
      ),
    ]
  try:
    import cv2  # noqa: PLC0415

    buf = np.frombuffer(jpeg, np.uint8)
    rows += [
      ("opencv", lambda: cv2.imdecode(buf, cv2.IMREAD_COLOR)),
      ("opencv DCT 1/2", lambda: cv2.imdecode(buf, cv2.IMREAD_REDUCED_COLOR_2)),
    ]
  except ImportError:
    pass
  out = []
  for name, fn in rows:
    fn()
    t = time.perf_counter()
    for _ in range(reps):
      fn()
    out.append((name, 1e3 * (time.perf_counter() - t) / reps))
  return out


def main(argv):
  del argv
  f = flags.FLAGS
  if f.synthetic:
    workdir = f.workdir or tempfile.mkdtemp(prefix="bench_input_")
    data, vids = make_synthetic(workdir, f.synthetic)
  else:
    data, vids = f.data, f.videos
  if not data:
    raise app.UsageError("give --data (and --videos) or --synthetic=N")
  meta = record.read_metadata(data, f.split)
  t, crop = f.num_frames, f.crop_size
  print(
    f"{meta['num_clips']} clips in {data}; T={t}, crop {crop}, "
    f"jpeg codec: {'simplejpeg' if video.simplejpeg else 'pillow'}; "
    f"{os.cpu_count()} CPUs"
  )

  # 1. One worker, one thread: the per-core rate of the training map.
  import grain  # noqa: PLC0415

  source = grain.sources.ArrayRecordDataSource(meta["shard_paths"])
  n = min(len(source), f.clips)
  fn = pipeline._TrainExample(  # noqa: SLF001 - the exact training map.
    source,
    len(source),
    0,
    pipeline.Sampling(t, "segment", 4, crop),
    "multiscale",
    video.MULTISCALE_SCALES,
    (0.08, 1.0),
    True,
  )
  fn(0, 0)
  jpeg_wall, jpeg_rate = _rate(lambda i: fn(i, i), list(range(n)))
  print(
    f"JPEG records, 1 worker: {jpeg_wall:7.1f} clips/s wall, "
    f"{jpeg_rate:7.1f} clips per CPU-second (per core)"
  )

  # 2. The full grain pipeline with worker processes.
  bs = 8
  it = pipeline.make_train_iterator(
    data,
    f.split,
    batch_size=bs,
    num_frames=t,
    crop_size=crop,
    num_workers=f.workers,
    read_threads=1,
  )
  try:
    next(it)
    steps = max(2, 2 * n // bs)
    t0 = time.perf_counter()
    for _ in range(steps):
      next(it)
    rate = steps * bs / (time.perf_counter() - t0)
  finally:
    it.close()
  per_worker = f" ({rate / f.workers:.1f} per worker)" if f.workers else ""
  print(
    f"grain pipeline, {f.workers} workers: {rate:7.1f} clips/s" + per_worker
  )

  # 3. PyAV straight from the videos, same clips.
  if vids:
    found = common.find_videos(vids)
    ids = [record.decode(source[i]).id for i in range(n)]
    paths = [found[k] for k in ids if k in found][: max(4, n // 4)]
    rng = np.random.default_rng(0)
    av_wall, av_rate = _rate(lambda p: _pyav_clip(p, t, crop, rng), paths)
    print(
      f"PyAV from video files, 1 thread: {av_wall:7.1f} clips/s wall, "
      f"{av_rate:7.1f} clips per CPU-second ({len(paths)} clips)"
    )
    print(f"ratio JPEG records / PyAV: {jpeg_rate / av_rate:.1f}x")

  # 4. JPEG codecs on one stored frame.
  clip = record.decode(source[0])
  print(
    f"JPEG decode of one {clip.width}x{clip.height} frame "
    f"({len(clip.frames[0]) / 1e3:.1f} kB):"
  )
  for name, ms in _codec_table(clip.frames[0]):
    print(f"  {name:20s} {ms:6.2f} ms")


if __name__ == "__main__":
  define_flags()
  app.run(main)
