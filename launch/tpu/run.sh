#!/usr/bin/env bash
# Runs the same art_jax.main command on every worker of a TPU VM slice, in the
# background (setsid + nohup: it survives the ssh session), each worker
# logging to its own file. jax.distributed.initialize inside main finds the
# other workers by itself on Cloud TPU.
#
# Usage:
#   launch/tpu/run.sh NAME=art-v4 ZONE=us-central2-b \
#       CONFIG=configs/finegym.py:gym99,b16 WORKDIR=/mnt/gcs/runs/gym99_b16 \
#       [MODE=train_and_eval|train|eval] [PROJECT=my-project] [RUN_NAME=...] \
#       [KILL=1] [FOLLOW=1] [LIBTPU_INIT_ARGS="..."] [ENV="K=V K2=V2"] \
#       [REMOTE_DIR=art_jax] [LOG_DIR=art_jax_logs] [SSH_FLAGS=...] \
#       [DRY_RUN=1] [--] [--config.x.y=... main flags passed through]
#
# Arguments (KEY=VALUE):
#   NAME, ZONE       the slice (see create.sh).                        required
#   CONFIG           config file and variants, relative to the repository
#                    (configs/<dataset>.py:<variants>).                required
#   WORKDIR          checkpoints/logs/reports; on the gcsfuse mount so every
#                    worker sees the same directory (setup.sh MOUNT).  required
#   MODE             train_and_eval (default) | train | eval.
#   PROJECT          GCP project (default: gcloud's configured project).
#   RUN_NAME         names the log and pid files (default: WORKDIR's last
#                    component). Log: LOG_DIR/RUN_NAME-<hostname>.log.
#   KILL=1           first stop a run started by this script on the workers
#                    (SIGTERM: main checkpoints and exits; SIGKILL after
#                    120 s). Without it, a live earlier run is an error: only
#                    one process can hold the TPU.
#   FOLLOW=1         then tail worker 0's log (launch/tpu/logs.sh).
#   LIBTPU_INIT_ARGS XLA/libtpu flags for the TPU compiler (default: async
#                    collective fusion and compute/collective overlap; "" for
#                    none).
#   ENV              more environment for the run, "K=V K2=V2" (values
#                    without spaces).
#   REMOTE_DIR       the code on each worker (setup.sh; default art_jax,
#                    relative to $HOME).
#   LOG_DIR          logs and pid files on each worker's local disk (default
#                    art_jax_logs, relative to $HOME).
#   SSH_FLAGS        extra flags for `gcloud ... ssh`, space separated.
#   DRY_RUN=1        print the commands instead of running them (--dry-run).
# Every argument starting with `--` (or after a lone `--`) goes to main, e.g.
#   --config.batch_size=256 --config.data.dir=/mnt/gcs/data/finegym/gym99
# Resuming after preemption: run the same command again.
set -euo pipefail
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# --- TPU compiler / runtime flags (one block; override with LIBTPU_INIT_ARGS=) -
DEFAULT_LIBTPU_INIT_ARGS="--xla_tpu_enable_async_collective_fusion=true"
DEFAULT_LIBTPU_INIT_ARGS+=" --xla_tpu_enable_async_collective_fusion_fuse_all_gather=true"
DEFAULT_LIBTPU_INIT_ARGS+=" --xla_tpu_enable_async_collective_fusion_multiple_steps=true"
DEFAULT_LIBTPU_INIT_ARGS+=" --xla_tpu_overlap_compute_collective_tc=true"
DEFAULT_LIBTPU_INIT_ARGS+=" --xla_enable_async_all_gather=true"
DEFAULT_LIBTPU_INIT_ARGS+=" --xla_tpu_enable_data_parallel_all_reduce_opt=true"
DEFAULT_LIBTPU_INIT_ARGS+=" --xla_tpu_data_parallel_opt_different_sized_ops=true"
# -----------------------------------------------------------------------------

NAME="" ZONE="" PROJECT="" CONFIG="" WORKDIR="" MODE=train_and_eval
RUN_NAME="" KILL=0 FOLLOW=0 LIBTPU_INIT_ARGS="$DEFAULT_LIBTPU_INIT_ARGS" ENV=""
REMOTE_DIR=art_jax LOG_DIR=art_jax_logs SSH_FLAGS=""
art_parse_args 1 NAME ZONE PROJECT CONFIG WORKDIR MODE RUN_NAME KILL FOLLOW \
  LIBTPU_INIT_ARGS ENV REMOTE_DIR LOG_DIR SSH_FLAGS -- "$@"
art_require NAME ZONE CONFIG WORKDIR
art_bool KILL
art_bool FOLLOW
case "$MODE" in
  train | eval | train_and_eval) ;;
  *) art_usage_error "MODE must be train, eval or train_and_eval, not '$MODE'" ;;
esac
RUN_NAME="${RUN_NAME:-$(basename "$WORKDIR")}"
[[ "$RUN_NAME" =~ ^[A-Za-z0-9_.-]+$ ]] || art_usage_error "RUN_NAME '$RUN_NAME': use letters, digits, _ . -"

loc=(--zone="$ZONE")
[[ -n "$PROJECT" ]] && loc+=(--project="$PROJECT")
read -r -a ssh_extra <<<"$SSH_FLAGS"

main_cmd=(.venv/bin/python -m art_jax.main --config="$CONFIG"
  --workdir="$WORKDIR" --mode="$MODE" "${PASSTHROUGH[@]}")

env_lines="export LIBTPU_INIT_ARGS=$(art_squote "$LIBTPU_INIT_ARGS")"
read -r -a env_pairs <<<"$ENV"
for kv in "${env_pairs[@]}"; do
  [[ "$kv" =~ ^[A-Za-z_][A-Za-z0-9_]*=.*$ ]] || art_usage_error "ENV entry '$kv' is not K=V"
  env_lines+="; export ${kv%%=*}=$(art_squote "${kv#*=}")"
done

pid_file="\"\$log_dir\"/$RUN_NAME.pid"
log_file="\"\$log_dir\"/$RUN_NAME-\"\$(hostname)\".log"
remote="set -e; mkdir -p $(art_quote "$LOG_DIR"); log_dir=\$(cd $(art_quote "$LOG_DIR") && pwd)"
if ((KILL)); then
  # Stop what earlier runs of this script left (pid files), TERM then KILL.
  remote+="; for f in \"\$log_dir\"/*.pid; do [ -e \"\$f\" ] || continue; p=\$(cat \"\$f\")"
  remote+="; if kill \"\$p\" 2>/dev/null; then for _ in \$(seq 120); do kill -0 \"\$p\" 2>/dev/null || break; sleep 1; done; kill -9 \"\$p\" 2>/dev/null || true; fi"
  remote+="; rm -f \"\$f\"; done"
else
  remote+="; for f in \"\$log_dir\"/*.pid; do [ -e \"\$f\" ] || continue"
  remote+="; if kill -0 \"\$(cat \"\$f\")\" 2>/dev/null; then echo \"\$(hostname): a run is still going (\$f); pass KILL=1 to stop it\" >&2; exit 1; fi; done"
fi
remote+="; cd $(art_quote "$REMOTE_DIR"); $env_lines"
remote+="; setsid nohup $(art_join "${main_cmd[@]}") > $log_file 2>&1 < /dev/null &"
remote+=" echo \$! > $pid_file; echo \"\$(hostname): started pid \$!, log $log_file\""

art_run gcloud compute tpus tpu-vm ssh "$NAME" --worker=all "${loc[@]}" \
  "${ssh_extra[@]}" --command="$remote"

logs=("$(dirname "${BASH_SOURCE[0]}")/logs.sh" NAME="$NAME" ZONE="$ZONE"
  WORKER=0 RUN_NAME="$RUN_NAME" LOG_DIR="$LOG_DIR")
[[ -n "$PROJECT" ]] && logs+=(PROJECT="$PROJECT")
[[ -n "$SSH_FLAGS" ]] && logs+=(SSH_FLAGS="$SSH_FLAGS")
if ((FOLLOW)); then
  ((DRY_RUN)) && logs+=(DRY_RUN=1)
  exec "${logs[@]}"
fi
art_note "logs: $(art_join "${logs[@]}")"
