#!/usr/bin/env bash
# Deletes a TPU VM slice (or its queued resource, which deletes the slice).
# The GCS bucket (data, checkpoints) is not touched.
#
# Usage:
#   launch/tpu/delete.sh NAME=art-v4 ZONE=us-central2-b [PROJECT=my-project] \
#       [QUEUED=1 [QR_ID=art-v4-qr]] [ASYNC=1] [DRY_RUN=1]
#
# Arguments (KEY=VALUE):
#   NAME, ZONE   the slice (see create.sh).                            required
#   PROJECT      GCP project (default: gcloud's configured project).
#   QUEUED=1     the slice came from a queued resource (create.sh QUEUED=1):
#                delete the queued resource QR_ID (default NAME-qr) with
#                --force, which deletes its slice too.
#   ASYNC=1      return without waiting for the deletion.
#   DRY_RUN=1    print the command instead of running it (--dry-run).
# gcloud does not ask for confirmation (--quiet).
set -euo pipefail
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

NAME="" ZONE="" PROJECT="" QUEUED=0 QR_ID="" ASYNC=0
art_parse_args 0 NAME ZONE PROJECT QUEUED QR_ID ASYNC -- "$@"
art_require NAME ZONE
art_bool QUEUED
art_bool ASYNC
[[ -z "$QR_ID" ]] || ((QUEUED)) || art_usage_error "QR_ID needs QUEUED=1"

flags=(--zone="$ZONE" --quiet)
[[ -n "$PROJECT" ]] && flags+=(--project="$PROJECT")
((ASYNC)) && flags+=(--async)
if ((QUEUED)); then
  art_run gcloud compute tpus queued-resources delete "${QR_ID:-$NAME-qr}" \
    --force "${flags[@]}"
else
  art_run gcloud compute tpus tpu-vm delete "$NAME" "${flags[@]}"
fi
