#!/usr/bin/env bash
# Shows (and by default follows) the log of a run started by
# launch/tpu/run.sh on one worker of a TPU VM slice.
#
# Usage:
#   launch/tpu/logs.sh NAME=art-v4 ZONE=us-central2-b [WORKER=0] \
#       [RUN_NAME=gym99_b16] [LINES=100] [FOLLOW=0] [PROJECT=my-project] \
#       [LOG_DIR=art_jax_logs] [SSH_FLAGS=...] [DRY_RUN=1]
#
# Arguments (KEY=VALUE):
#   NAME, ZONE   the slice (see create.sh).                            required
#   WORKER       worker index (default 0: the host that prints metrics), or
#                "all" (with FOLLOW=0) for the tail of every worker's log.
#   RUN_NAME     the run (run.sh's RUN_NAME, default WORKDIR's basename);
#                default: the newest log on the worker.
#   LINES        lines to show first (default 100).
#   FOLLOW       1 (default): keep following (Ctrl-C stops the tail, not
#                the run); 0: print and return.
#   PROJECT, LOG_DIR, SSH_FLAGS: as for run.sh.
#   DRY_RUN=1    print the command instead of running it (--dry-run).
set -euo pipefail
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

NAME="" ZONE="" PROJECT="" WORKER=0 RUN_NAME="" LINES=100 FOLLOW=1
LOG_DIR=art_jax_logs SSH_FLAGS=""
art_parse_args 0 NAME ZONE PROJECT WORKER RUN_NAME LINES FOLLOW LOG_DIR \
  SSH_FLAGS -- "$@"
art_require NAME ZONE
art_bool FOLLOW
[[ "$WORKER" =~ ^([0-9]+|all)$ ]] || art_usage_error "WORKER must be a number or all"
[[ "$LINES" =~ ^[0-9]+$ ]] || art_usage_error "LINES must be a number"
[[ "$WORKER" != all ]] || ! ((FOLLOW)) || art_usage_error "WORKER=all needs FOLLOW=0"
[[ -z "$RUN_NAME" || "$RUN_NAME" =~ ^[A-Za-z0-9_.-]+$ ]] || art_usage_error "bad RUN_NAME '$RUN_NAME'"

loc=(--zone="$ZONE")
[[ -n "$PROJECT" ]] && loc+=(--project="$PROJECT")
read -r -a ssh_extra <<<"$SSH_FLAGS"

pattern="*.log"
[[ -n "$RUN_NAME" ]] && pattern="$RUN_NAME-*.log"
tail_flags="-n $LINES"
((FOLLOW)) && tail_flags+=" -F"
remote="cd $(art_quote "$LOG_DIR") && f=\$(ls -t $pattern 2>/dev/null | head -n 1)"
remote+=" && [ -n \"\$f\" ] || { echo \"\$(hostname): no log $pattern in $(art_quote "$LOG_DIR")\" >&2; exit 1; }"
remote+="; echo \"==> \$(hostname):\$PWD/\$f <==\"; tail $tail_flags \"\$f\""

art_run gcloud compute tpus tpu-vm ssh "$NAME" --worker="$WORKER" "${loc[@]}" \
  "${ssh_extra[@]}" --command="$remote"
