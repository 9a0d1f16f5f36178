#!/usr/bin/env bash
# Runs the dataset preprocessing (python -m art_jax.data.prepare) on Google
# Cloud Dataflow through its Beam runner: videos and annotations are read
# from GCS and the ArrayRecord shards are written to GCS, one Dataflow job
# per split. The workers install art_jax from a wheel of this checkout
# (default), a setup.py, a requirements file, or a custom container.
#
# Usage:
#   launch/dataflow/prepare.sh DATASET=finegym VARIANT=gym99 \
#       VIDEOS=gs://my-bucket/raw/finegym/videos \
#       ANNOTATIONS=gs://my-bucket/raw/finegym/annotations \
#       OUT=gs://my-bucket/data/finegym/gym99 \
#       PROJECT=my-project REGION=us-central1 TEMP=gs://my-bucket/tmp \
#       [MAX_WORKERS=100] [NUM_WORKERS=...] [MACHINE_TYPE=n2-highcpu-8] \
#       [DISK_SIZE_GB=100] [JOB_NAME=...] [SPLITS=train,val] \
#       [PACKAGE=wheel|none] [SETUP_FILE=path/setup.py] \
#       [REQUIREMENTS=path/requirements.txt] [CONTAINER=image] \
#       [SERVICE_ACCOUNT=...] [NETWORK=...] [SUBNETWORK=...] [NO_PUBLIC_IPS=1] \
#       [PYTHON=python3] [BEAM_EXTRA="--opt=v ..."] [DRY_RUN=1] \
#       [--] [--short_side=320 ... prepare flags passed through]
#
# Arguments (KEY=VALUE):
#   DATASET        finegym | diving48 | ntu60 | ntu120 | kinetics | ssv2.
#                                                                      required
#   VARIANT        the dataset's variant (default: the dataset's default).
#   VIDEOS, ANNOTATIONS   gs:// folders of the raw data.        VIDEOS required
#   OUT            gs:// folder for the shards (the config's data.dir).  required
#   PROJECT, REGION       where the Dataflow jobs run.                  required
#   TEMP           gs:// folder for Dataflow's temporary and staging files.
#                                                                      required
#   MAX_WORKERS    autoscaling limit (default 100); NUM_WORKERS the start.
#   MACHINE_TYPE   worker type (default n2-highcpu-8: decoding is CPU bound).
#   DISK_SIZE_GB   worker disk (default 100).
#   JOB_NAME       Dataflow job name (default
#                  art-jax-prepare-<dataset>-<variant>-<time>).
#   SPLITS         comma separated (default: all of the variant).
#   PACKAGE        wheel (default): build a wheel of this checkout
#                  (pip wheel --no-deps, from a copy in TMPDIR) and stage it with --extra_package;
#                  the workers pip-install it with its dependencies. Unless
#                  REQUIREMENTS or CONTAINER is given, a requirements file
#                  with gcsfs (the `beam` extra's gs:// file system, which a
#                  plain wheel install leaves out) is staged with it.
#                  none: install nothing from here (use SETUP_FILE,
#                  REQUIREMENTS or CONTAINER).
#   SETUP_FILE     a setup.py for Beam's --setup_file.
#   REQUIREMENTS   a requirements file for Beam's --requirements_file.
#   CONTAINER      a worker image (--sdk_container_image) with art_jax
#                  installed: the fastest start for large jobs.
#   SERVICE_ACCOUNT, NETWORK, SUBNETWORK, NO_PUBLIC_IPS=1: worker identity
#                  and networking (NO_PUBLIC_IPS needs Private Google Access).
#   PYTHON         interpreter that submits the job; it needs
#                  `pip install -e ".[beam]" "apache-beam[gcp]"`, and its
#                  Python version is the workers' (default: the repository's
#                  .venv/bin/python if present, else python3).
#   BEAM_EXTRA     more Beam pipeline options, space separated.
#   DRY_RUN=1      print the commands instead of running them (--dry-run).
# Every argument starting with `--` (or after a lone `--`) goes to
# art_jax.data.prepare, e.g. --short_side=320 --clips_per_shard=256.
# Re-running with the same arguments is how a failed split is redone.
set -euo pipefail
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

DATASET="" VARIANT="" VIDEOS="" ANNOTATIONS="" OUT="" PROJECT="" REGION=""
TEMP="" MAX_WORKERS=100 NUM_WORKERS="" MACHINE_TYPE=n2-highcpu-8
DISK_SIZE_GB=100 JOB_NAME="" SPLITS="" PACKAGE=wheel SETUP_FILE=""
REQUIREMENTS="" CONTAINER="" SERVICE_ACCOUNT="" NETWORK="" SUBNETWORK=""
NO_PUBLIC_IPS=0 PYTHON="" BEAM_EXTRA=""
art_parse_args 1 DATASET VARIANT VIDEOS ANNOTATIONS OUT PROJECT REGION TEMP \
  MAX_WORKERS NUM_WORKERS MACHINE_TYPE DISK_SIZE_GB JOB_NAME SPLITS PACKAGE \
  SETUP_FILE REQUIREMENTS CONTAINER SERVICE_ACCOUNT NETWORK SUBNETWORK \
  NO_PUBLIC_IPS PYTHON BEAM_EXTRA -- "$@"
art_require DATASET VIDEOS OUT PROJECT REGION TEMP
art_bool NO_PUBLIC_IPS
for key in VIDEOS OUT TEMP; do
  [[ "${!key}" == gs://* ]] || art_usage_error "$key must be a gs:// path (Dataflow workers cannot see local files)"
done
[[ -z "$ANNOTATIONS" || "$ANNOTATIONS" == gs://* ]] || art_usage_error "ANNOTATIONS must be a gs:// path"
for key in MAX_WORKERS DISK_SIZE_GB; do
  [[ "${!key}" =~ ^[1-9][0-9]*$ ]] || art_usage_error "$key must be a positive number"
done
[[ -z "$NUM_WORKERS" || "$NUM_WORKERS" =~ ^[1-9][0-9]*$ ]] || art_usage_error "NUM_WORKERS must be a positive number"
case "$PACKAGE" in
  wheel | none) ;;
  *) art_usage_error "PACKAGE must be wheel or none, not '$PACKAGE'" ;;
esac
for key in SETUP_FILE REQUIREMENTS; do
  [[ -z "${!key}" || -f "${!key}" ]] || art_usage_error "$key: no file ${!key}"
done
if [[ -z "$PYTHON" ]]; then
  PYTHON=python3
  [[ -x "$ART_REPO/.venv/bin/python" ]] && PYTHON="$ART_REPO/.venv/bin/python"
fi
if [[ -z "$JOB_NAME" ]]; then
  JOB_NAME="art-jax-prepare-$DATASET${VARIANT:+-$VARIANT}-$(date -u +%Y%m%d-%H%M%S)"
  JOB_NAME="$(printf '%s' "$JOB_NAME" | tr '[:upper:]_' '[:lower:]-' | tr -cd 'a-z0-9-')"
fi
[[ "$JOB_NAME" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] || art_usage_error "JOB_NAME '$JOB_NAME': lowercase letters, digits and hyphens, starting with a letter"

# --- Beam / Dataflow pipeline options -----------------------------------------
beam=(--runner=DataflowRunner --project="$PROJECT" --region="$REGION"
  --temp_location="${TEMP%/}/temp" --staging_location="${TEMP%/}/staging"
  --job_name="$JOB_NAME" --max_num_workers="$MAX_WORKERS"
  --autoscaling_algorithm=THROUGHPUT_BASED --machine_type="$MACHINE_TYPE"
  --disk_size_gb="$DISK_SIZE_GB")
[[ -n "$NUM_WORKERS" ]] && beam+=(--num_workers="$NUM_WORKERS")
[[ -n "$SERVICE_ACCOUNT" ]] && beam+=(--service_account_email="$SERVICE_ACCOUNT")
[[ -n "$NETWORK" ]] && beam+=(--network="$NETWORK")
[[ -n "$SUBNETWORK" ]] && beam+=(--subnetwork="$SUBNETWORK")
((NO_PUBLIC_IPS)) && beam+=(--no_use_public_ips)

# How the workers get art_jax.
if [[ "$PACKAGE" == wheel ]]; then
  version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$ART_REPO/pyproject.toml" | head -n 1)"
  [[ -n "$version" ]] || art_die "no version in $ART_REPO/pyproject.toml"
  build_dir="$(mktemp -d -u "${TMPDIR:-/tmp}/art_jax_wheel.XXXXXX")"
  wheel="$build_dir/art_jax-$version-py3-none-any.whl"
  # Built from a clean copy of the sources (a stale build/ in the checkout
  # could leak into the wheel, and the checkout stays untouched).
  art_run mkdir -p "$build_dir/src"
  art_run tar -czf "$build_dir/src.tar.gz" -C "$ART_REPO" --exclude=./.git \
    --exclude=./.venv --exclude=./runs --exclude=./data --exclude=./weights \
    --exclude=./build --exclude=./dist --exclude=__pycache__ \
    --exclude='*.egg-info' .
  art_run tar -xzf "$build_dir/src.tar.gz" -C "$build_dir/src"
  art_run "$PYTHON" -m pip wheel -q --no-deps --wheel-dir "$build_dir" \
    "$build_dir/src"
  if ! ((DRY_RUN)) && [[ ! -f "$wheel" ]]; then
    art_die "pip wheel did not produce $wheel"
  fi
  beam+=(--extra_package="$wheel")
  if [[ -z "$REQUIREMENTS$CONTAINER" ]]; then
    # The prepare job reads and writes gs:// through fsspec, which needs
    # gcsfs on every worker; the wheel's own dependencies do not bring it.
    REQUIREMENTS="$build_dir/requirements.txt"
    art_run bash -c "echo gcsfs >$(art_quote "$REQUIREMENTS")"
  fi
fi
[[ -n "$SETUP_FILE" ]] && beam+=(--setup_file="$(cd "$(dirname "$SETUP_FILE")" && pwd)/$(basename "$SETUP_FILE")")
[[ -n "$REQUIREMENTS" ]] && beam+=(--requirements_file="$REQUIREMENTS")
[[ -n "$CONTAINER" ]] && beam+=(--sdk_container_image="$CONTAINER")
if [[ "$PACKAGE" == none && -z "$SETUP_FILE$REQUIREMENTS$CONTAINER" ]]; then
  art_note "warning: PACKAGE=none and no SETUP_FILE/REQUIREMENTS/CONTAINER: the workers must already have art_jax"
fi
read -r -a beam_extra <<<"$BEAM_EXTRA"
beam+=("${beam_extra[@]}")

# --- The preprocessing command ------------------------------------------------
if ! ((DRY_RUN)); then
  "$PYTHON" -c 'import apache_beam.runners.dataflow' 2>/dev/null ||
    art_die "$PYTHON lacks Apache Beam for GCP: $PYTHON -m pip install -e '${ART_REPO}[beam]' 'apache-beam[gcp]'"
fi
cmd=("$PYTHON" -m art_jax.data.prepare --dataset="$DATASET" --videos="$VIDEOS"
  --out="$OUT" --runner=beam --beam_options="$(art_join "${beam[@]}")")
[[ -n "$VARIANT" ]] && cmd+=(--variant="$VARIANT")
[[ -n "$ANNOTATIONS" ]] && cmd+=(--annotations="$ANNOTATIONS")
[[ -n "$SPLITS" ]] && cmd+=(--splits="$SPLITS")
cmd+=("${PASSTHROUGH[@]}")
art_run cd "$ART_REPO"
art_run "${cmd[@]}"
