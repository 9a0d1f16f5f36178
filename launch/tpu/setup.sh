#!/usr/bin/env bash
# Installs art_jax on every worker of a TPU VM slice and mounts a GCS bucket
# (data, weights, workdirs) on every worker with gcsfuse.
#
# Usage:
#   launch/tpu/setup.sh NAME=art-v4 ZONE=us-central2-b BUCKET=my-bucket \
#       [PROJECT=my-project] [MOUNT=/mnt/gcs] [GCSFUSE_FLAGS="..."] \
#       [REPO_URL=https://github.com/me/art-jax.git [REF=main]] \
#       [REMOTE_DIR=art_jax] [PYTHON_VERSION=3.11] [JAX_SPEC="jax[tpu]"] \
#       [EXTRAS=] [SSH_FLAGS="--internal-ip"] [SKIP_MOUNT=1] [DRY_RUN=1]
#
# Arguments (KEY=VALUE):
#   NAME, ZONE       the slice (see create.sh).                        required
#   BUCKET           GCS bucket name (no gs://) to mount; required unless
#                    SKIP_MOUNT=1.
#   PROJECT          GCP project (default: gcloud's configured project).
#   MOUNT            mount point on every worker (default /mnt/gcs). Point
#                    --workdir and --config.data.dir etc. below it.
#   GCSFUSE_FLAGS    gcsfuse options (default: --implicit-dirs, a local file
#                    cache for repeated reads of shards, group/other access).
#   REPO_URL [REF]   git clone this repository and check out REF (branch,
#                    tag or commit; default HEAD) on the workers. Default:
#                    copy this checkout (tracked and untracked files, without
#                    .git, .venv and the top-level runs/ data/ weights/) to
#                    every worker with `tpu-vm scp`, so uncommitted changes
#                    run too.
#   REMOTE_DIR       where the code goes on each worker, relative to $HOME
#                    unless absolute (default art_jax).
#   PYTHON_VERSION   the venv's Python (default 3.11; installed by uv when the
#                    TPU image's python3 is older).
#   JAX_SPEC         the JAX requirement (default "jax[tpu]": jax + libtpu).
#   EXTRAS           extras of art_jax to install, e.g. "convert" (default
#                    none).
#   SSH_FLAGS        extra flags for `gcloud ... ssh/scp`, space separated
#                    (e.g. --internal-ip).
#   SKIP_MOUNT=1     do not install gcsfuse / mount.
#   DRY_RUN=1        print the commands instead of running them (--dry-run).
#
# Re-running is safe: the venv is reused, the copy is refreshed, an existing
# mount is left as it is.
set -euo pipefail
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

NAME="" ZONE="" PROJECT="" BUCKET="" MOUNT=/mnt/gcs
GCSFUSE_FLAGS="--implicit-dirs --file-cache-max-size-mb=-1 --cache-dir=/tmp/gcsfuse-cache -o allow_other --file-mode=777 --dir-mode=777"
REPO_URL="" REF="" REMOTE_DIR=art_jax PYTHON_VERSION=3.11 JAX_SPEC="jax[tpu]"
EXTRAS="" SSH_FLAGS="" SKIP_MOUNT=0
art_parse_args 0 NAME ZONE PROJECT BUCKET MOUNT GCSFUSE_FLAGS REPO_URL REF \
  REMOTE_DIR PYTHON_VERSION JAX_SPEC EXTRAS SSH_FLAGS SKIP_MOUNT -- "$@"
art_bool SKIP_MOUNT
art_require NAME ZONE
((SKIP_MOUNT)) || art_require BUCKET
[[ "$BUCKET" != gs://* ]] || BUCKET="${BUCKET#gs://}"
[[ -z "$REF" || -n "$REPO_URL" ]] || art_usage_error "REF needs REPO_URL"

loc=(--zone="$ZONE")
[[ -n "$PROJECT" ]] && loc+=(--project="$PROJECT")
read -r -a ssh_extra <<<"$SSH_FLAGS"

# $HOME-relative paths stay relative: remote commands start in $HOME.
remote_dir_q="$(art_quote "$REMOTE_DIR")"
pkg="."
[[ -n "$EXTRAS" ]] && pkg=".[$EXTRAS]"

# 1. The code on every worker.
if [[ -n "$REPO_URL" ]]; then
  get_code="if [ ! -d $remote_dir_q/.git ]; then git clone -q $(art_quote "$REPO_URL") $remote_dir_q; fi"
  get_code+=" && git -C $remote_dir_q fetch -q origin $(art_quote "${REF:-HEAD}")"
  get_code+=" && git -C $remote_dir_q checkout -q --detach FETCH_HEAD"
else
  tarball="$(mktemp -u /tmp/art_jax_src.XXXXXX).tar.gz"
  # Everything but VCS data, virtualenvs, caches and run outputs.
  art_run tar -czf "$tarball" -C "$ART_REPO" --exclude=./.git \
    --exclude=./.venv --exclude=./runs --exclude=./data --exclude=./weights \
    --exclude=./build --exclude=./dist --exclude=__pycache__ \
    --exclude='*.egg-info' .
  art_run gcloud compute tpus tpu-vm scp "$tarball" "$NAME:art_jax_src.tar.gz" \
    --worker=all "${loc[@]}" "${ssh_extra[@]}"
  get_code="mkdir -p $remote_dir_q && tar -xzf art_jax_src.tar.gz -C $remote_dir_q && rm art_jax_src.tar.gz"
fi

# 2. A venv with art_jax (editable) and JAX for TPU. uv provides Python
#    $PYTHON_VERSION when the image's python3 is older (Ubuntu 22.04: 3.10).
#    uv comes from pip --user, or its installer where pip refuses (PEP 668).
install="(python3 -m pip install -q --user --upgrade uv || curl -LsSf https://astral.sh/uv/install.sh | env UV_INSTALL_DIR=\"\$HOME/.local/bin\" sh)"
install+=" && ~/.local/bin/uv venv -q --allow-existing --python $(art_quote "$PYTHON_VERSION") $remote_dir_q/.venv"
install+=" && cd $remote_dir_q"
install+=" && ~/.local/bin/uv pip install -q --python .venv/bin/python -e $(art_quote "$pkg") $(art_quote "$JAX_SPEC")"
install+=" && .venv/bin/python -c 'import art_jax, jax; print(jax.__version__)'"

# 3. gcsfuse (Google's apt repository) and the mount, on every worker.
mount=""
if ! ((SKIP_MOUNT)); then
  mount_q="$(art_quote "$MOUNT")"
  mount="if ! command -v gcsfuse >/dev/null; then"
  mount+=" echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -cs) main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null"
  mount+=" && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null"
  mount+=" && sudo apt-get update -qq && sudo apt-get install -y -qq fuse gcsfuse; fi"
  # allow_other needs user_allow_other in /etc/fuse.conf.
  mount+=" && (grep -q '^user_allow_other' /etc/fuse.conf || echo user_allow_other | sudo tee -a /etc/fuse.conf >/dev/null)"
  mount+=" && sudo mkdir -p $mount_q && sudo chown \"\$(id -u):\$(id -g)\" $mount_q"
  mount+=" && (mountpoint -q $mount_q || gcsfuse $GCSFUSE_FLAGS $(art_quote "$BUCKET") $mount_q)"
  mount+=" && ls $mount_q >/dev/null"
fi

remote="set -e; $get_code && $install${mount:+ && $mount}"
art_run gcloud compute tpus tpu-vm ssh "$NAME" --worker=all "${loc[@]}" \
  "${ssh_extra[@]}" --command="$remote"
if [[ -n "${tarball:-}" ]] && ! ((DRY_RUN)); then
  rm -f "$tarball"
fi
art_note "ready: launch/tpu/run.sh NAME=$NAME ZONE=$ZONE CONFIG=... WORKDIR=$MOUNT/runs/..."
