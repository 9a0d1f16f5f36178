#!/usr/bin/env bash
# The prepared accelerator benchmark (issue 6): ART-B/16 and ART-L/14 at
# 16 frames x 224 in bf16 on the GPUs of this machine. For each model it
# searches the largest per-device train batch that fits (ascending sizes;
# art_jax.tools.bench_train stops at the first OOM) and prints MFU, clips/s,
# step time, compile time and peak memory; then inference latency per clip at
# batch 1 and throughput at batch 32 (art_jax.tools.bench_infer, one GPU).
# It ends with a summary table against the targets of issue 6 (B/16 train MFU
# >= 45%, L/14 inference <= 10 ms/clip at batch 32, L/14 trains at batch >= 8
# per 80 GB GPU; the paper's L/14: 36.2 ms/clip on an A40).
#
# Usage:
#   launch/gpu/bench.sh [OUT=runs/bench] [MODELS="b16 l14"] [STEPS=5] \
#       [BATCHES="b16:32,128 l14:16,64"] [INFER_BATCHES=1,32] \
#       [BUDGET=450] [NDEV=8] [PYTHON=.venv/bin/python] [MEM_FRACTION=0.90] \
#       [ATTENTION=cudnn] [KINDS="train infer"] [PROFILE=3] \
#       [XLA_EXTRA="--xla_..."] [ENV="K=V K2=V2"] [CPU_SMOKE=1] [DRY_RUN=1] \
#       [--] [--config.x.y=... overrides for every benchmark]
#
# Arguments (KEY=VALUE; none is required):
#   OUT           folder for the results (default runs/bench, relative to the
#                 repository root): <model>_{train,infer}.json (the tools'
#                 rows; rebuilt from the printed rows when a call was cut),
#                 .log/.err (stdout/stderr), .rc, results.json (everything)
#                 and summary.md (the final table).
#   MODELS        configs/finegym.py backbone variants (default "b16 l14").
#   STEPS         timed steps per batch size, train and inference (default 5;
#                 2 under CPU_SMOKE). Two warm-up calls come first.
#   BATCHES       per-device train batch sizes, ascending: "model:list ..."
#                 or one list for every model (default
#                 "b16:32,128 l14:16,64"; "2,4" under CPU_SMOKE).
#                 The global batch is this times NDEV.
#   INFER_BATCHES inference batch sizes (default 1,32).
#   BUDGET        seconds for all benchmark calls together (default 450, so
#                 the script ends within ~7.5 minutes; 1200 under
#                 CPU_SMOKE). Each call runs under `timeout` with its share
#                 of what is left (train 3 : inference 1, L/14 x1.5); a call
#                 cut by its timeout keeps the rows it printed.
#   NDEV          GPUs the train batch is spread over (default: the count of
#                 CUDA_VISIBLE_DEVICES, else of `nvidia-smi -L`; 1 under
#                 CPU_SMOKE).
#   PYTHON        the interpreter (default: the repository's .venv/bin/python
#                 if present, else python3). Needs jax with CUDA.
#   MEM_FRACTION  XLA_PYTHON_CLIENT_MEM_FRACTION (default 0.90).
#   ATTENTION     backbone self-attention, config.model.attention_impl:
#                 cudnn (flash attention; default) or xla (xla under
#                 CPU_SMOKE).
#   KINDS         which benchmarks: "train infer" (default), "train" or
#                 "infer".
#   PROFILE       trace this many more train steps at each batch size and
#                 print where the device time goes, by pass and by module
#                 (bench_train --profile_steps; art_jax.tools.step_profile);
#                 summaries in OUT/<model>_profile/b<batch>.{md,json}.
#                 Default 0 (off).
#   XLA_EXTRA     more XLA flags after the block in launch/gpu/env.sh.
#   ENV           more environment, "K=V K2=V2" (values without spaces).
#   CPU_SMOKE=1   the same sequence on the CPU with the tiny `runlocal`
#                 variant (8 frames x 32, float32, batches 2,4, 2 steps), to
#                 exercise this script end to end without a GPU.
#   DRY_RUN=1     print the commands instead of running them (--dry-run).
# Arguments starting with `--` go to both tools for every model.
#
# The environment is the GPU block of launch/gpu/env.sh. The persistent
# compilation cache stays off (JAX_ENABLE_COMPILATION_CACHE=false), so the
# compile times are measured honestly, not read from an earlier run's cache.
set -euo pipefail
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=launch/gpu/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

OUT=runs/bench MODELS="b16 l14" STEPS="" BATCHES="" INFER_BATCHES=1,32
BUDGET="" NDEV="" PYTHON="" MEM_FRACTION="" XLA_EXTRA="" ENV="" CPU_SMOKE=0
ATTENTION="" KINDS="train infer" PROFILE=0
art_parse_args 1 OUT MODELS STEPS BATCHES INFER_BATCHES BUDGET NDEV PYTHON \
  MEM_FRACTION ATTENTION KINDS PROFILE XLA_EXTRA ENV CPU_SMOKE -- "$@"
art_bool CPU_SMOKE
art_require OUT MODELS INFER_BATCHES KINDS

if ((CPU_SMOKE)); then
  : "${STEPS:=2}" "${BATCHES:=2,4}" "${BUDGET:=1200}" "${NDEV:=1}"
  : "${ATTENTION:=xla}"
else
  : "${STEPS:=5}" "${BATCHES:=b16:32,128 l14:16,64}" "${BUDGET:=450}"
  : "${ATTENTION:=cudnn}"
fi
case "$ATTENTION" in
  xla | cudnn) ;;
  *) art_usage_error "ATTENTION must be xla or cudnn, not '$ATTENTION'" ;;
esac
[[ "$STEPS" =~ ^[1-9][0-9]*$ ]] || art_usage_error "STEPS must be a positive integer, not '$STEPS'"
[[ "$BUDGET" =~ ^[1-9][0-9]*$ ]] || art_usage_error "BUDGET must be seconds, not '$BUDGET'"
[[ "$PROFILE" =~ ^[0-9]+$ ]] || art_usage_error "PROFILE must be a number of steps, not '$PROFILE'"
read -r -a kinds <<<"$KINDS"
for k in "${kinds[@]}"; do
  case "$k" in
    train | infer) ;;
    *) art_usage_error "KINDS: unknown benchmark '$k' (known: train infer)" ;;
  esac
done
[[ "$INFER_BATCHES" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
  art_usage_error "INFER_BATCHES must look like 1,32, not '$INFER_BATCHES'"
read -r -a models <<<"$MODELS"
((${#models[@]})) || art_usage_error "MODELS is required"
for m in "${models[@]}"; do
  case "$m" in
    b16 | l14 | l14_336) ;;
    *) art_usage_error "MODELS: unknown model '$m' (known: b16 l14 l14_336)" ;;
  esac
done

# batches_for MODEL: the per-device train batch list of MODEL from BATCHES.
batches_for() {
  local entry list=""
  local -a entries=()
  read -r -a entries <<<"$BATCHES"
  for entry in "${entries[@]}"; do
    if [[ "$entry" == *:* ]]; then
      [[ "${entry%%:*}" == "$1" ]] && list="${entry#*:}"
    else
      list="$entry"
    fi
  done
  [[ -n "$list" ]] || art_usage_error "BATCHES has no sizes for $1: '$BATCHES'"
  [[ "$list" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
    art_usage_error "BATCHES for $1 must look like 8,16,32, not '$list'"
  printf '%s\n' "$list"
}
for m in "${models[@]}"; do batches_for "$m" >/dev/null; done

if [[ -z "$NDEV" ]]; then
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    IFS=, read -r -a visible <<<"$CUDA_VISIBLE_DEVICES"
    NDEV=${#visible[@]}
  elif command -v nvidia-smi >/dev/null 2>&1; then
    NDEV="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)"
  fi
  if [[ -z "$NDEV" || "$NDEV" == 0 ]]; then
    ((DRY_RUN)) || art_die "no GPU found (nvidia-smi -L); pass NDEV=, or CPU_SMOKE=1 to run on the CPU"
    NDEV=1
    art_note "no GPU found: the dry run assumes NDEV=1"
  fi
fi
[[ "$NDEV" =~ ^[1-9][0-9]*$ ]] || art_usage_error "NDEV must be a positive integer, not '$NDEV'"

if [[ -z "$PYTHON" ]]; then
  PYTHON=python3
  [[ -x "$ART_REPO/.venv/bin/python" ]] && PYTHON="$ART_REPO/.venv/bin/python"
fi

# The benchmark's model settings: the paper's 16 x 224 in bf16, or the tiny
# CPU model under CPU_SMOKE.
if ((CPU_SMOKE)); then
  variant_suffix=",runlocal" dtype=float32 frames=8 crop=32
else
  variant_suffix="" dtype=bfloat16 frames=16 crop=224
fi
overrides=(--config.model.dtype="$dtype" --config.data.num_frames="$frames"
  --config.data.crop_size="$crop" --config.mesh.data=-1
  --config.model.attention_impl="$ATTENTION")

# Config paths and OUT are relative to the repository root.
art_run cd "$ART_REPO"
art_gpu_env "$XLA_EXTRA" "$MEM_FRACTION" "$ENV"
art_export JAX_ENABLE_COMPILATION_CACHE false
((CPU_SMOKE)) && art_export JAX_PLATFORMS cpu
art_run mkdir -p "$OUT"

# The calls in order, with their weights in the time budget.
calls=() weights=()
for kind in train infer; do
  [[ " ${kinds[*]} " == *" $kind "* ]] || continue
  for m in "${models[@]}"; do
    w=1
    [[ "$kind" == train ]] && w=3
    case "$m" in l14) w=$((w * 3)) ;; l14_336) w=$((w * 4)) ;; *) w=$((w * 2)) ;; esac
    calls+=("$kind:$m") weights+=("$w")
  done
done

start=$SECONDS planned=0
for i in "${!calls[@]}"; do
  kind="${calls[$i]%%:*}" m="${calls[$i]#*:}"
  # This call's share of the time left: its weight over the weights left
  # (a dry run assumes that each earlier call used all of its share).
  if ((DRY_RUN)); then
    left=$((BUDGET - planned))
  else
    left=$((BUDGET - (SECONDS - start)))
  fi
  wsum=0
  for w in "${weights[@]:$i}"; do wsum=$((wsum + w)); done
  limit=$((left * weights[i] / wsum))
  planned=$((planned + limit))
  base="$OUT/${m}_$kind"
  if ! ((DRY_RUN)); then
    rm -f "$base.json" "$base.log" "$base.err" "$base.rc"
    if ((limit < 15)); then
      art_note "skipping $kind $m: ${limit}s left of BUDGET=$BUDGET"
      echo skipped >"$base.rc"
      continue
    fi
  fi
  cmd=(timeout -k 10 "$limit" "$PYTHON" -m "art_jax.tools.bench_$kind"
    --config="configs/finegym.py:gym99,$m$variant_suffix" "${overrides[@]}")
  if [[ "$kind" == train ]]; then
    sizes=() global=()
    IFS=, read -r -a sizes <<<"$(batches_for "$m")"
    for b in "${sizes[@]}"; do global+=($((b * NDEV))); done
    cmd+=(--batch_sizes="$(IFS=,; echo "${global[*]}")")
    ((PROFILE)) && cmd+=(--profile_steps="$PROFILE" --profile_dir="$OUT/${m}_profile")
  else
    cmd+=(--batch_sizes="$INFER_BATCHES")
  fi
  cmd+=(--steps="$STEPS" --json_out="$base.json" "${PASSTHROUGH[@]}")
  if ((DRY_RUN)); then
    printf '+ %s 2>%s | tee %s\n' "$(art_join "${cmd[@]}")" \
      "$(art_quote "$base.err")" "$(art_quote "$base.log")"
    continue
  fi
  printf '\n=== %s %s (timeout %ss) ===\n' "$kind" "$m" "$limit"
  printf '+ %s\n' "$(art_join "${cmd[@]}")" >&2
  rc=0
  "${cmd[@]}" 2>"$base.err" | tee "$base.log" || rc=$?
  echo "$rc" >"$base.rc"
  if ((rc == 124 || rc == 137)); then
    art_note "$kind $m: cut by its ${limit}s timeout; keeping the rows printed so far"
  elif ((rc)); then
    art_note "$kind $m failed (exit $rc); the end of $base.err:"
    tail -n 15 "$base.err" >&2
  fi
done

if ((DRY_RUN)); then
  art_note "then: the summary of $OUT/*.json into $OUT/summary.md and $OUT/results.json"
  exit 0
fi

printf '\n=== summary (%ss of BUDGET=%s) ===\n' "$((SECONDS - start))" "$BUDGET"
"$PYTHON" - "$OUT" "$NDEV" "${models[@]}" <<'PY'
"""Summary of the benchmark rows in OUT: a Markdown table, results.json."""
import datetime
import json
import math
import os
import platform
import sys

out, ndev, models = sys.argv[1], int(sys.argv[2]), sys.argv[3:]


def load(base):
  """(rows, status) of one call; rows from the JSON or the printed lines."""
  rc = "missing"
  if os.path.exists(base + ".rc"):
    with open(base + ".rc") as f:
      rc = f.read().strip()
  rows = []
  if os.path.exists(base + ".json"):
    with open(base + ".json") as f:
      rows = json.load(f)
  elif os.path.exists(base + ".log"):
    with open(base + ".log") as f:
      for line in f:
        if line.startswith("{"):
          try:
            rows.append(json.loads(line))
          except ValueError:
            pass
    with open(base + ".json", "w") as f:
      json.dump(rows, f, indent=1)
  status = {"0": "ok", "124": "time limit", "137": "time limit",
            "skipped": "skipped (no time left)",
            "missing": "not run"}.get(rc, f"failed (exit {rc})")
  return rows, status


def known(v):
  return isinstance(v, (int, float)) and not math.isnan(v)


def num(v, spec, zero_unknown=False):
  """v formatted; "-" when missing or NaN (or 0 where 0 means unknown)."""
  return format(v, spec) if known(v) and not (zero_unknown and v == 0) else "-"


results = {"date": datetime.datetime.now().astimezone().isoformat(
    timespec="seconds"), "host": platform.node(), "ndev": ndev, "models": {}}
device = None
train_lines, infer_lines, targets = [], [], []
for m in models:
  train, t_status = load(os.path.join(out, f"{m}_train"))
  infer, i_status = load(os.path.join(out, f"{m}_infer"))
  results["models"][m] = {"train": train, "train_status": t_status,
                          "infer": infer, "infer_status": i_status}
  ok = [r for r in train if isinstance(r.get("step_s"), float)]
  oom = [r["batch"] for r in train if r.get("step_s") == "OOM"]
  device = device or next((r["device"] for r in train + infer), None)
  if oom:
    stop = f"OOM at {oom[0] // ndev}"
  elif t_status == "ok":
    stop = "fits all sizes"
  else:
    stop = t_status
  if ok:
    best = ok[-1]
    per_dev = best["batch"] // best.get("devices", ndev)
    train_lines.append(
        f"| {m} | {per_dev} | {stop} | {num(best['step_s'], '.3f')} | "
        f"{num(best['clips_per_s'], '.1f')} | {num(100 * best['mfu'], '.1f')} "
        f"| {num(best['peak_gib'], '.1f', zero_unknown=True)} | {num(best['compile_s'], '.1f')} |")
  else:
    per_dev = None
    train_lines.append(f"| {m} | - | {stop} | - | - | - | - | - |")
  by_bs = {r["batch"]: r for r in infer}
  for bs in sorted(by_bs):
    r = by_bs[bs]
    infer_lines.append(
        f"| {m} | {bs} | {num(r['ms_per_clip'], '.2f')} | "
        f"{num(r['ms_per_batch'], '.2f')} | {num(r['clips_per_s'], '.1f')} |")
  if not infer:
    infer_lines.append(f"| {m} | - | {i_status} | - | - |")
  mfus = [r["mfu"] for r in ok if known(r.get("mfu"))]
  if m == "b16" and mfus:
    mfu = max(mfus)
    targets.append(f"- B/16 train MFU >= 45%: best {100 * mfu:.1f}% "
                   f"({'met' if mfu >= 0.45 else 'not met'})")
  elif m == "b16" and ok:
    targets.append("- B/16 train MFU >= 45%: no MFU (the device's peak "
                   "FLOP/s is unknown)")
  if m == "l14":
    if per_dev is not None:
      targets.append(f"- L/14 trains at batch >= 8 per device: largest "
                     f"{per_dev} ({'met' if per_dev >= 8 else 'not met'})")
    if 32 in by_bs:
      ms = by_bs[32]["ms_per_clip"]
      targets.append(f"- L/14 inference <= 10 ms/clip at batch 32: "
                     f"{ms:.2f} ms ({'met' if ms <= 10 else 'not met'}; "
                     f"paper 36.2 ms/clip on an A40)")

lines = [
    f"Device: {device or 'unknown'} x {ndev} (train), x 1 (inference); "
    f"{results['date']}, host {results['host']}.", "",
    "| model | largest batch/device | search ended | step s | clips/s | "
    "MFU % | peak GiB | compile s |", "|---|---|---|---|---|---|---|---|",
    *train_lines, "",
    "| model | infer batch | ms/clip | ms/batch | clips/s |",
    "|---|---|---|---|---|", *infer_lines, "",
    f"Targets of issue 6 (for one H100; this device: {device or '?'}):", *(targets or ["- (no rows)"])]
text = "\n".join(lines)
print(text)
with open(os.path.join(out, "summary.md"), "w") as f:
  f.write(text + "\n")
with open(os.path.join(out, "results.json"), "w") as f:
  json.dump(results, f, indent=1)
PY
