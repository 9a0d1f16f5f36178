#!/usr/bin/env bash
# Creates a Cloud TPU VM slice (directly, or through a queued resource).
#
# Usage:
#   launch/tpu/create.sh NAME=art-v4 ZONE=us-central2-b ACCELERATOR=v4-32 \
#       [PROJECT=my-project] [RUNTIME_VERSION=tpu-ubuntu2204-base] \
#       [QUEUED=1 [QR_ID=art-v4-qr] [VALID_UNTIL=6h] [RESERVED=1]] \
#       [SPOT=1 | PREEMPTIBLE=1] [NETWORK=...] [SUBNETWORK=...] \
#       [SERVICE_ACCOUNT=...] [INTERNAL_IPS=1] [ASYNC=1] [DRY_RUN=1]
#
# Arguments (KEY=VALUE):
#   NAME             TPU VM (node) name.                               required
#   ZONE             e.g. us-central2-b (v4), us-east5-a (v5p),
#                    us-east1-d (v6e).                                 required
#   ACCELERATOR      slice type: v4-32, v5p-64, v5litepod-16, v6e-64.  required
#   PROJECT          GCP project (default: gcloud's configured project).
#   RUNTIME_VERSION  TPU software version; default by generation:
#                    v4 tpu-ubuntu2204-base, v5litepod v2-alpha-tpuv5-lite,
#                    v5p v2-alpha-tpuv5, v6e v2-alpha-tpuv6e.
#   QUEUED=1         create through `queued-resources create` (the way to
#                    get large slices and spot capacity); the queued resource
#                    is QR_ID (default NAME-qr). VALID_UNTIL (e.g. 6h) bounds
#                    how long the request waits; RESERVED=1 uses a
#                    reservation.
#   SPOT=1           spot capacity (can be preempted at any time; main saves
#                    a checkpoint on SIGTERM and the same run command
#                    resumes). PREEMPTIBLE=1 is the legacy flavour
#                    (tpu-vm create only).
#   NETWORK, SUBNETWORK, SERVICE_ACCOUNT, INTERNAL_IPS=1: passed through.
#   ASYNC=1          return at once instead of waiting for the slice.
#   DRY_RUN=1        print the gcloud command instead of running it
#                    (also --dry-run).
#
# Before: compile the train step for this slice on any host, no TPU needed
# (docs/launch.md step 0): does it fit the chips' HBM at your batch and mesh?
#   pip install -e '.[tpu]'
#   python -m art_jax.tools.aot_compile --config=configs/finegym.py:gym99,l14 \
#       --topology=v4-32 --batch_sizes=8 [--config.mesh.data=1 --config.mesh.fsdp=-1]
#
# Then: launch/tpu/setup.sh (install + mount), launch/tpu/run.sh (train).
# With QUEUED=1 the slice exists once the queued resource is ACTIVE:
#   gcloud compute tpus queued-resources describe QR_ID --zone=ZONE
set -euo pipefail
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

NAME="" ZONE="" ACCELERATOR="" PROJECT="" RUNTIME_VERSION=""
QUEUED=0 QR_ID="" VALID_UNTIL="" RESERVED=0 SPOT=0 PREEMPTIBLE=0
NETWORK="" SUBNETWORK="" SERVICE_ACCOUNT="" INTERNAL_IPS=0 ASYNC=0
art_parse_args 0 NAME ZONE ACCELERATOR PROJECT RUNTIME_VERSION QUEUED QR_ID \
  VALID_UNTIL RESERVED SPOT PREEMPTIBLE NETWORK SUBNETWORK SERVICE_ACCOUNT \
  INTERNAL_IPS ASYNC -- "$@"
art_require NAME ZONE ACCELERATOR
for b in QUEUED RESERVED SPOT PREEMPTIBLE INTERNAL_IPS ASYNC; do art_bool "$b"; done

if [[ -z "$RUNTIME_VERSION" ]]; then
  case "$ACCELERATOR" in
    v4-*) RUNTIME_VERSION=tpu-ubuntu2204-base ;;
    v5litepod-* | v5e-*) RUNTIME_VERSION=v2-alpha-tpuv5-lite ;;
    v5p-*) RUNTIME_VERSION=v2-alpha-tpuv5 ;;
    v6e-*) RUNTIME_VERSION=v2-alpha-tpuv6e ;;
    *) art_usage_error "no default RUNTIME_VERSION for $ACCELERATOR; pass one" ;;
  esac
fi
if ((SPOT && PREEMPTIBLE)); then
  art_usage_error "SPOT=1 and PREEMPTIBLE=1 exclude each other"
fi

common=(--zone="$ZONE" --accelerator-type="$ACCELERATOR")
[[ -n "$PROJECT" ]] && common+=(--project="$PROJECT")
[[ -n "$NETWORK" ]] && common+=(--network="$NETWORK")
[[ -n "$SUBNETWORK" ]] && common+=(--subnetwork="$SUBNETWORK")
[[ -n "$SERVICE_ACCOUNT" ]] && common+=(--service-account="$SERVICE_ACCOUNT")
((INTERNAL_IPS)) && common+=(--internal-ips)
((ASYNC)) && common+=(--async)
((RESERVED)) && common+=(--reserved)
((SPOT)) && common+=(--spot)

if ((QUEUED)); then
  ((PREEMPTIBLE)) && art_usage_error "PREEMPTIBLE=1 is not available with QUEUED=1; use SPOT=1"
  QR_ID="${QR_ID:-$NAME-qr}"
  cmd=(gcloud compute tpus queued-resources create "$QR_ID" --node-id="$NAME"
    --runtime-version="$RUNTIME_VERSION" "${common[@]}")
  [[ -n "$VALID_UNTIL" ]] && cmd+=(--valid-until-duration="$VALID_UNTIL")
else
  [[ -n "$VALID_UNTIL" || -n "$QR_ID" ]] && art_usage_error "QR_ID/VALID_UNTIL need QUEUED=1"
  cmd=(gcloud compute tpus tpu-vm create "$NAME" --version="$RUNTIME_VERSION"
    "${common[@]}")
  ((PREEMPTIBLE)) && cmd+=(--preemptible)
fi
art_run "${cmd[@]}"
if ((QUEUED)); then
  art_note "wait until ACTIVE: gcloud compute tpus queued-resources describe $QR_ID --zone=$ZONE${PROJECT:+ --project=$PROJECT}"
fi
