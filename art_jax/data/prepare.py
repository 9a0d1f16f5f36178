r"""Turns a raw dataset into ArrayRecord shards of JPEG frames.

  python -m art_jax.data.prepare --dataset=finegym --variant=gym99 \
      --videos=/raw/finegym/videos --annotations=/raw/finegym/annotations \
      --out=/data/gym99

writes, for each split, `{split}.array_record-*-of-*`, `{split}.json` and
`{split}.failures.jsonl` (see `art_jax/data/record.py`, docs/data.md).
--videos, --annotations and --out may be remote (gs://bucket/dir, through
fsspec: `art_jax/data/fs.py`).

Runs on all cores with a process pool. Resumable: each finished shard
leaves `.prepare/{shard}.done.json`, and a re-run with the same clips and
parameters skips those shards. Bad input (missing, truncated, undecodable
or short videos, unparsable annotation lines) is skipped and logged to
`{split}.failures.jsonl`; the exit status is non-zero only when a split
produced nothing or more than --max_failure_fraction of it failed.

`--dataset=synthetic` renders its clips instead of decoding videos
(`art_jax/data/datasets/synthetic.py`; --num_train, --num_val, --seed, --frames,
--size; no --videos or --annotations).

`--runner=beam --beam_options="--runner=DataflowRunner ..."` runs the same
per-clip function on Apache Beam (`pip install art_jax[beam]`) and writes
the same files, resume markers included.
"""

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from absl import app, flags, logging
from array_record.python import array_record_module
from tqdm import tqdm

from art_jax.data import fs, record, video
from art_jax.data.datasets import (
  common,
  diving48,
  finegym,
  kinetics,
  ntu,
  ssv2,
  synthetic,
)


@dataclasses.dataclass(frozen=True)
class Dataset:
  read: Callable[..., common.Annotations] | None
  variants: dict[str, tuple[str, ...]]
  default_variant: str
  flip_safe: bool = True
  # Per-clip function (task, params) -> (bytes, None) | (None, failure);
  # None: `process_clip`, which decodes the task's video.
  process: Callable[..., tuple[bytes | None, dict | None]] | None = None
  needs_videos: bool = True


DATASETS = {
  "finegym": Dataset(finegym.read, finegym.VARIANTS, finegym.DEFAULT_VARIANT),
  "diving48": Dataset(
    diving48.read, diving48.VARIANTS, diving48.DEFAULT_VARIANT
  ),
  "ntu60": Dataset(
    functools.partial(ntu.read, dataset="ntu60"),
    {k: ntu.VARIANTS[k] for k in ntu.PROTOCOLS["ntu60"]},
    "xsub",
  ),
  "ntu120": Dataset(
    functools.partial(ntu.read, dataset="ntu120"),
    {k: ntu.VARIANTS[k] for k in ntu.PROTOCOLS["ntu120"]},
    "xsub",
  ),
  "kinetics": Dataset(
    kinetics.read, kinetics.VARIANTS, kinetics.DEFAULT_VARIANT
  ),
  "ssv2": Dataset(
    ssv2.read, ssv2.VARIANTS, ssv2.DEFAULT_VARIANT, flip_safe=ssv2.FLIP_SAFE
  ),
  "synthetic": Dataset(
    synthetic.read,
    synthetic.VARIANTS,
    synthetic.DEFAULT_VARIANT,
    flip_safe=synthetic.FLIP_SAFE,
    process=synthetic.process_clip,
    needs_videos=False,
  ),
}


@dataclasses.dataclass(frozen=True)
class Params:
  """Per-clip preprocessing parameters (recorded in `{split}.json`)."""

  short_side: int = 256
  jpeg_quality: int = 90
  max_frames: int = 64
  min_frames: int = 8
  min_coverage: float = 0.5


@dataclasses.dataclass
class SplitSummary:
  split: str
  num_clips: int  # records written
  num_failures: int
  num_annotated: int  # clips listed + annotation lines that failed

  @property
  def failure_fraction(self) -> float:
    return self.num_failures / max(self.num_annotated, 1)


def process_clip(
  task: common.ClipTask, params: Params
) -> tuple[bytes | None, dict[str, str] | None]:
  """Decodes, resizes and JPEG-encodes one clip: the unit of work.

  Returns:
    (record bytes, None) or (None, {"id", "reason"}). Never raises for bad
    input, so one video cannot stop a job (local pool or Beam DoFn).
  """
  if task.path is None:
    return None, common.missing(task.id, "no file named by the id")
  try:
    clip = video.read_clip(
      task.path,
      start_sec=task.start_sec,
      end_sec=task.end_sec,
      start_frame=task.start_frame,
      end_frame=task.end_frame,
      short_side=params.short_side,
      max_frames=params.max_frames,
      min_frames=params.min_frames,
      min_coverage=params.min_coverage,
    )
    h, w = clip.frames[0].shape[:2]
    data = record.encode(
      record.Clip(
        id=task.id,
        label=task.label,
        frames=[video.encode_jpeg(f, params.jpeg_quality) for f in clip.frames],
        frame_index=clip.frame_index,
        num_source_frames=clip.num_source_frames,
        fps=clip.fps,
        height=h,
        width=w,
        meta=task.meta,
      )
    )
  except video.VideoError as e:
    return None, {"id": task.id, "reason": str(e)}
  except Exception as e:  # noqa: BLE001 - report anything, never stop.
    return None, {"id": task.id, "reason": f"{type(e).__name__}: {e}"}
  return data, None


def _process_indexed(args):
  shard, task, params, process = args
  return shard, process(task, params)


def plan_shards(
  num_clips: int, num_shards: int, clips_per_shard: int
) -> list[tuple[int, int]]:
  """Contiguous [start, end) clip ranges, one per shard."""
  if num_shards <= 0:
    num_shards = max(1, math.ceil(num_clips / clips_per_shard))
  num_shards = max(1, min(num_shards, max(num_clips, 1)))
  return [
    (i * num_clips // num_shards, (i + 1) * num_clips // num_shards)
    for i in range(num_shards)
  ]


def _fingerprint(tasks: Sequence[common.ClipTask], params: Params) -> str:
  h = hashlib.sha256(json.dumps(dataclasses.asdict(params)).encode())
  for t in tasks:
    h.update(
      f"{t.id}\t{t.label}\t{t.path}\t{t.start_sec}\t{t.end_sec}\t"
      f"{t.start_frame}\t{t.end_frame}\n".encode()
    )
  return h.hexdigest()[:16]


def _done_path(out: str, name: str) -> str:
  return fs.join(out, ".prepare", name + ".done.json")


def _load_done(out: str, name: str, fingerprint: str) -> dict | None:
  path = _done_path(out, name)
  if not (fs.exists(path) and fs.exists(fs.join(out, name))):
    return None
  try:
    done = json.loads(fs.read_text(path))
  except (OSError, json.JSONDecodeError):
    return None
  return done if done.get("fingerprint") == fingerprint else None


def _write_done(out: str, name: str, done: dict):
  fs.write_text(_done_path(out, name), json.dumps(done))


def _write_shard(
  out: str,
  name: str,
  fingerprint: str,
  results: Iterable[tuple[bytes | None, dict | None]],
  on_result: Callable[[dict | None], None] | None = None,
) -> dict:
  """Writes one shard from its clips' (record, failure) results, in order.

  The shard appears at `out/name` only when complete (`fs.local_output`),
  then its resume marker; returns the marker.
  """
  failures, count = [], 0
  with fs.local_output(fs.join(out, name)) as local:
    writer = array_record_module.ArrayRecordWriter(local, record.WRITER_OPTIONS)
    try:
      for data, failure in results:
        if data is not None:
          writer.write(data)
          count += 1
        else:
          failures.append(failure)
        if on_result is not None:
          on_result(failure)
    finally:
      writer.close()
  done = {
    "fingerprint": fingerprint,
    "num_records": count,
    "failures": failures,
  }
  _write_done(out, name, done)
  return done


def _plan(
  out: str,
  split: str,
  tasks: Sequence[common.ClipTask],
  shards: Sequence[tuple[int, int]],
  params: Params,
) -> tuple[list[str], list[str], list[dict | None]]:
  """(shard names, fingerprints, done-records or None for shards to do)."""
  fs.makedirs(fs.join(out, ".prepare"))
  n = len(shards)
  names = [record.shard_name(split, i, n) for i in range(n)]
  prints = [_fingerprint(tasks[a:b], params) for a, b in shards]
  done = [_load_done(out, names[i], prints[i]) for i in range(n)]
  if any(d is not None for d in done):
    logging.info(
      "%s: %d of %d shards already done, skipping them",
      split,
      sum(d is not None for d in done),
      n,
    )
  # A shard with no clips: still a valid, empty file.
  for i, (a, b) in enumerate(shards):
    if done[i] is None and a == b:
      done[i] = _write_shard(out, names[i], prints[i], [])
  return names, prints, done


def _pending(
  done: Sequence[dict | None], shards: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
  """(shard, clip index) of every clip of the shards not done, in order."""
  return [
    (i, j) for i, d in enumerate(done) if d is None for j in range(*shards[i])
  ]


def _map(fn, items, workers: int):
  """Ordered map: in-process for workers <= 1, else a spawn pool."""
  if workers <= 1:
    yield from map(fn, items)
    return
  ctx = multiprocessing.get_context("spawn")
  with ctx.Pool(workers) as pool:
    yield from pool.imap(fn, items, chunksize=1)


def write_split_local(
  out: str,
  split: str,
  tasks: Sequence[common.ClipTask],
  shards: Sequence[tuple[int, int]],
  params: Params,
  workers: int,
  process: Callable | None = None,
) -> list[dict]:
  """Writes the shards not yet done; returns every shard's done-record."""
  process = process or process_clip
  names, prints, done = _plan(out, split, tasks, shards, params)
  work = [(i, tasks[j], params, process) for i, j in _pending(done, shards)]
  if not work:
    return done
  bar = tqdm(
    total=len(work),
    desc=f"{split}",
    unit="clip",
    dynamic_ncols=True,
    mininterval=1.0,
    file=sys.stderr,
  )
  failed = 0

  def tick(failure):
    nonlocal failed
    failed += failure is not None
    bar.update(1)
    bar.set_postfix(failed=failed, refresh=False)

  # Results come in task order, so each shard's clips are one run.
  results = _map(_process_indexed, work, workers)
  for i, run in itertools.groupby(results, key=lambda r: r[0]):
    done[i] = _write_shard(
      out, names[i], prints[i], (r for _, r in run), on_result=tick
    )
  bar.close()
  return done


def _process_keyed(item, params, process):
  shard, index, task = item
  data, failure = process(task, params)
  return shard, (index, data, failure)


def _in_clip_order(
  results: Iterable[tuple[int, bytes | None, dict | None]],
) -> Iterator[tuple[bytes | None, dict | None]]:
  """(index, record, failure) in any order -> (record, failure) by index.

  Records wait in a local temporary file, not in memory (a shard of 512
  clips of 64 frames is about 2 GB).
  """
  with tempfile.TemporaryFile() as spool:
    index = []
    for j, data, failure in results:
      if data is None:
        index.append((j, -1, 0, failure))
      else:
        index.append((j, spool.tell(), len(data), None))
        spool.write(data)
    index.sort(key=lambda e: e[0])
    for _, offset, size, failure in index:
      if offset < 0:
        yield None, failure
      else:
        spool.seek(offset)
        yield spool.read(size), None


def _write_shard_of_group(group, out, names, prints):
  shard, results = group
  _write_shard(out, names[shard], prints[shard], _in_clip_order(results))


def write_split_beam(
  out: str,
  split: str,
  tasks: Sequence[common.ClipTask],
  shards: Sequence[tuple[int, int]],
  params: Params,
  beam_options: str,
  process: Callable | None = None,
) -> list[dict]:
  """Runs `process_clip` on Apache Beam; returns every shard's done-record.

  Clips are decoded in parallel, grouped by shard and each shard written
  by one worker in clip order, through the same code as the local runner
  (`_write_shard`): the same shards, failures and resume markers, so a
  re-run skips finished shards. `out` may be local only if every worker
  sees it (e.g. the DirectRunner or a shared disk); on Dataflow use gs://.
  """
  try:
    import apache_beam as beam  # noqa: PLC0415 - optional extra.
    from apache_beam.options import pipeline_options  # noqa: PLC0415
  except ImportError as e:
    raise SystemExit(
      f"--runner=beam needs Apache Beam: pip install 'art_jax[beam]' ({e})"
    ) from e

  names, prints, done = _plan(out, split, tasks, shards, params)
  work = [(i, j, tasks[j]) for i, j in _pending(done, shards)]
  if not work:
    return done
  options = pipeline_options.PipelineOptions(shlex.split(beam_options))
  with beam.Pipeline(options=options) as p:
    _ = (
      p
      | "Clips" >> beam.Create(work)
      | "Spread" >> beam.Reshuffle()
      | "Process" >> beam.Map(_process_keyed, params, process or process_clip)
      | "ByShard" >> beam.GroupByKey()
      | "Write" >> beam.Map(_write_shard_of_group, out, names, prints)
    )
  done = [_load_done(out, names[i], prints[i]) for i in range(len(shards))]
  missing = [names[i] for i, d in enumerate(done) if d is None]
  if missing:
    raise RuntimeError(
      f"the Beam pipeline finished without writing {fs.join(out, missing[0])}"
      f" ({len(missing)} shards missing)"
    )
  return done


def prepare_split(
  dataset: str,
  variant: str,
  split: str,
  *,
  videos: str | None,
  annotations: str | None,
  out: str,
  params: Params = Params(),
  num_shards: int = 0,
  clips_per_shard: int = 512,
  workers: int = 1,
  runner: str = "local",
  beam_options: str = "",
  read_options: dict[str, Any] | None = None,
) -> SplitSummary:
  """Prepares one split; see the module docstring.

  `read_options` are extra keyword arguments of the dataset's reader
  (synthetic: num_clips {split: n} and seed).
  """
  spec = DATASETS[dataset]
  if spec.read is None:
    raise NotImplementedError(
      f"dataset {dataset!r} has no preprocessing job yet"
    )
  if spec.needs_videos and not (videos and fs.isdir(videos)):
    raise FileNotFoundError(f"--videos={videos} is not a folder")
  fs.makedirs(fs.join(out, ".prepare"))
  t0 = time.time()
  ann = spec.read(annotations, videos, split, variant, **(read_options or {}))
  if not ann.clips:
    logging.warning("%s/%s: the annotations list no clips", dataset, split)
  shards = plan_shards(len(ann.clips), num_shards, clips_per_shard)
  if runner == "beam":
    done = write_split_beam(
      out, split, ann.clips, shards, params, beam_options, spec.process
    )
  elif runner == "local":
    done = write_split_local(
      out, split, ann.clips, shards, params, workers, spec.process
    )
  else:
    raise ValueError(f"unknown runner {runner!r}; use local or beam")
  failures = list(ann.failures)
  for d in done:
    failures.extend(d["failures"])
  fs.write_text(
    record.failures_path(out, split),
    "".join(json.dumps(fail) + "\n" for fail in failures),
  )
  counts = [d["num_records"] for d in done]
  names = [record.shard_name(split, i, len(done)) for i in range(len(done))]
  record.write_metadata(
    out,
    split,
    {
      "dataset": dataset,
      "variant": variant,
      "split": split,
      "num_clips": sum(counts),
      "num_classes": len(ann.class_names),
      "class_names": ann.class_names,
      "shards": names,
      "records_per_shard": counts,
      "num_failures": len(failures),
      "flip_safe": spec.flip_safe,
      "params": dataclasses.asdict(params),
      **ann.extra,
    },
  )
  summary = SplitSummary(
    split, sum(counts), len(failures), len(ann.clips) + len(ann.failures)
  )
  reasons: dict[str, int] = {}
  for fail in failures:
    key = fail["reason"].split(":")[0]
    reasons[key] = reasons.get(key, 0) + 1
  logging.info(
    "%s/%s/%s: %d clips in %d shards, %d failed (%.1f%%) %s in %.0fs; "
    "failures in %s",
    dataset,
    variant,
    split,
    summary.num_clips,
    len(done),
    summary.num_failures,
    100 * summary.failure_fraction,
    reasons,
    time.time() - t0,
    record.failures_path(out, split),
  )
  return summary


def exit_status(
  summaries: Sequence[SplitSummary], max_failure_fraction: float
) -> int:
  """0, or 1 when a split wrote nothing or failed beyond the threshold."""
  status = 0
  for s in summaries:
    if s.num_clips == 0:
      logging.error("split %s: no usable clips", s.split)
      status = 1
    elif s.failure_fraction > max_failure_fraction:
      logging.error(
        "split %s: %.1f%% of clips failed (> %.1f%%)",
        s.split,
        100 * s.failure_fraction,
        100 * max_failure_fraction,
      )
      status = 1
  return status


def define_flags():
  """Command-line flags (defined only when run as a program)."""
  flags.DEFINE_enum("dataset", None, list(DATASETS), "dataset")
  flags.DEFINE_string(
    "variant",
    None,
    "gym99|gym288 (finegym), xsub|xview|xset (ntu), "
    "k400|k600 (kinetics); default: the dataset's first",
  )
  flags.DEFINE_string(
    "videos",
    None,
    "folder of videos (searched recursively; local or gs://...); not synthetic",
  )
  flags.DEFINE_string(
    "annotations", None, "folder of the dataset's annotation files"
  )
  flags.DEFINE_string("out", None, "output folder (local or gs://...)")
  flags.DEFINE_list("splits", None, "splits (default: all)")
  flags.DEFINE_integer("short_side", 256, "resize short side")
  flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality")
  flags.DEFINE_integer("max_frames", 64, "frame cap per clip")
  flags.DEFINE_integer("min_frames", 8, "shorter clips fail")
  flags.DEFINE_integer("num_shards", 0, "0: by clips_per_shard")
  flags.DEFINE_integer("clips_per_shard", 512, "clips per shard")
  flags.DEFINE_integer("workers", os.cpu_count() or 1, "processes")
  flags.DEFINE_float(
    "max_failure_fraction", 0.1, "exit non-zero above this failed fraction"
  )
  flags.DEFINE_enum("runner", "local", ["local", "beam"], "runner")
  flags.DEFINE_string(
    "beam_options",
    "",
    "Beam pipeline options, e.g. '--runner=DirectRunner"
    " --direct_num_workers=8'",
  )
  # --dataset=synthetic only.
  flags.DEFINE_integer("num_train", None, "synthetic: train clips")
  flags.DEFINE_integer("num_val", None, "synthetic: val clips")
  flags.DEFINE_integer("seed", 0, "synthetic: seed of every clip")
  flags.DEFINE_integer("frames", 16, "synthetic: frames per clip")
  flags.DEFINE_integer("size", 64, "synthetic: frame side (not resized)")
  flags.DEFINE_float(
    "difficulty", 1.0, "synthetic: nuisance scale (1 full, 0 none)"
  )


def run(argv: Sequence[str]) -> int:
  """The program: prepares every requested split; returns the exit status."""
  del argv
  f = flags.FLAGS
  spec = DATASETS[f.dataset]
  variant = f.variant or spec.default_variant
  if variant not in spec.variants:
    raise app.UsageError(
      f"--variant={variant} is not one of "
      f"{sorted(spec.variants)} for {f.dataset}"
    )
  read_options = None
  if f.dataset == "synthetic":
    if f.num_train is None or f.num_val is None:
      raise app.UsageError("--dataset=synthetic needs --num_train, --num_val")
    # Rendered at --size: short_side is the stored size, never resized.
    params = Params(f.size, f.jpeg_quality, f.frames, f.frames)
    read_options = {
      "num_clips": {"train": f.num_train, "val": f.num_val},
      "seed": f.seed,
      "difficulty": f.difficulty,
    }
  else:
    if spec.needs_videos and not f.videos:
      raise app.UsageError(f"--dataset={f.dataset} needs --videos")
    params = Params(f.short_side, f.jpeg_quality, f.max_frames, f.min_frames)
  summaries = []
  for split in f.splits or spec.variants[variant]:
    summaries.append(
      prepare_split(
        f.dataset,
        variant,
        split,
        videos=f.videos,
        annotations=f.annotations,
        out=f.out,
        params=params,
        num_shards=f.num_shards,
        clips_per_shard=f.clips_per_shard,
        workers=f.workers,
        runner=f.runner,
        beam_options=f.beam_options,
        read_options=read_options,
      )
    )
  for s in summaries:
    print(
      f"{s.split}: {s.num_clips} clips, {s.num_failures} failed "
      f"({100 * s.failure_fraction:.1f}%)"
    )
  return exit_status(summaries, f.max_failure_fraction)


def main(argv: Sequence[str]) -> Any:
  sys.exit(run(argv))


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["dataset", "out"])
  app.run(main)
