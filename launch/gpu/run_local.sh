#!/usr/bin/env bash
# Trains / evaluates on one machine with one or more GPUs: a single process
# that sees all (or the chosen) GPUs; the mesh in the config spreads the
# batch and the parameters over them.
#
# Usage:
#   launch/gpu/run_local.sh CONFIG=configs/finegym.py:gym99,b16 \
#       [WORKDIR=runs/gym99_b16] [MODE=train_and_eval|train|eval] \
#       [GPUS=0,1,2,3] [PYTHON=.venv/bin/python] [LOG=runs/gym99_b16.log] \
#       [MEM_FRACTION=0.90] [XLA_EXTRA="--xla_..."] [ENV="K=V K2=V2"] \
#       [DRY_RUN=1] [--] [--config.x.y=... main flags passed through]
#
# Arguments (KEY=VALUE):
#   CONFIG        config file and variants (configs/<dataset>.py:<variants>),
#                 relative to the repository root.                     required
#   WORKDIR       checkpoints, logs, reports (default: main's
#                 runs/<config>-<variant>). Re-running resumes from it.
#   MODE          train_and_eval (default) | train | eval.
#   GPUS          CUDA_VISIBLE_DEVICES, e.g. 0,1 (default: all GPUs).
#   PYTHON        the interpreter (default: the repository's .venv/bin/python
#                 if present, else python3). Needs jax with CUDA:
#                 pip install -U "jax[cuda12]" -e .
#   LOG           also append the output to this file (tee).
#   MEM_FRACTION  XLA_PYTHON_CLIENT_MEM_FRACTION (default 0.90).
#   XLA_EXTRA     more XLA flags after the block in launch/gpu/env.sh (later
#                 flags win); XLA_FLAGS already set in the environment are
#                 kept too.
#   ENV           more environment, "K=V K2=V2" (values without spaces).
#   DRY_RUN=1     print the commands instead of running them (--dry-run).
# Every argument starting with `--` (or after a lone `--`) goes to main, e.g.
#   --config.batch_size=32 --config.data.dir=/data/finegym/gym99
set -euo pipefail
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=launch/gpu/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

CONFIG="" WORKDIR="" MODE=train_and_eval GPUS="" PYTHON="" LOG=""
MEM_FRACTION="" XLA_EXTRA="" ENV=""
art_parse_args 1 CONFIG WORKDIR MODE GPUS PYTHON LOG MEM_FRACTION XLA_EXTRA \
  ENV -- "$@"
art_require CONFIG
case "$MODE" in
  train | eval | train_and_eval) ;;
  *) art_usage_error "MODE must be train, eval or train_and_eval, not '$MODE'" ;;
esac
[[ -z "$GPUS" || "$GPUS" =~ ^[0-9]+(,[0-9]+)*$ ]] || art_usage_error "GPUS must look like 0,1,2"
if [[ -z "$PYTHON" ]]; then
  PYTHON=python3
  [[ -x "$ART_REPO/.venv/bin/python" ]] && PYTHON="$ART_REPO/.venv/bin/python"
fi

# Config paths are relative to the repository root.
art_run cd "$ART_REPO"
art_gpu_env "$XLA_EXTRA" "$MEM_FRACTION" "$ENV"
[[ -n "$GPUS" ]] && art_export CUDA_VISIBLE_DEVICES "$GPUS"

cmd=("$PYTHON" -m art_jax.main --config="$CONFIG" --mode="$MODE")
[[ -n "$WORKDIR" ]] && cmd+=(--workdir="$WORKDIR")
cmd+=("${PASSTHROUGH[@]}")
if [[ -n "$LOG" ]]; then
  if ((DRY_RUN)); then
    printf '+ %s 2>&1 | tee -a %s\n' "$(art_join "${cmd[@]}")" "$(art_quote "$LOG")"
  else
    mkdir -p "$(dirname "$LOG")"
    art_run "${cmd[@]}" 2>&1 | tee -a "$LOG"
  fi
else
  art_run "${cmd[@]}"
fi
