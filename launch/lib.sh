# shellcheck shell=bash
# Helpers shared by the launch/ scripts; sourced, never run.
#
# Conventions (every script):
#   * Arguments are KEY=VALUE pairs (big_vision's run_tpu.sh style). Only the
#     keys a script declares are accepted, so a typo fails instead of being
#     ignored. Arguments that start with `--` (optionally after a lone `--`)
#     are passed through to the Python command, e.g. `--config.batch_size=64`,
#     in scripts that run one.
#   * DRY_RUN=1 (or --dry-run) prints every command, shell-quoted, one per
#     line with a `+ ` prefix, and runs none of them.
#   * -h / --help prints the comment block at the top of the script.
#   * A missing required argument prints the usage and exits with status 2.

# The repository root (launch/..).
# shellcheck disable=SC2034  # used by the scripts that source this file
ART_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN="${DRY_RUN:-0}"
PASSTHROUGH=()

# Prints the header comment of the calling script (from line 2 to the first
# line that is not a comment).
art_usage() {
  local script="${ART_SCRIPT:-$0}"
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' \
    "$script"
}

art_die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

art_usage_error() {
  printf 'error: %s\n\n' "$*" >&2
  art_usage >&2
  exit 2
}

# art_parse_args ALLOW_PASSTHROUGH KEY... -- "$@"
# Sets each KEY=VALUE argument as a shell variable (only declared KEYs);
# collects `--flag` arguments into PASSTHROUGH when ALLOW_PASSTHROUGH is 1.
art_parse_args() {
  local allow_pass="$1"
  shift
  local -a keys=()
  while (($#)) && [[ "$1" != "--" ]]; do
    keys+=("$1")
    shift
  done
  shift  # the "--" between keys and arguments
  local after_sep=0 arg key known k
  for arg in "$@"; do
    if ((after_sep)); then
      ((allow_pass)) || art_usage_error "unexpected argument: $arg"
      PASSTHROUGH+=("$arg")
      continue
    fi
    case "$arg" in
      -h | --help)
        art_usage
        exit 0
        ;;
      --dry-run | -n)
        DRY_RUN=1
        ;;
      --)
        after_sep=1
        ;;
      --*)
        ((allow_pass)) || art_usage_error "unexpected argument: $arg"
        PASSTHROUGH+=("$arg")
        ;;
      [A-Z]*=*)
        key="${arg%%=*}"
        known=0
        for k in DRY_RUN "${keys[@]}"; do
          [[ "$k" == "$key" ]] && known=1 && break
        done
        ((known)) || art_usage_error "unknown argument: $key (known: ${keys[*]} DRY_RUN)"
        printf -v "$key" '%s' "${arg#*=}"
        ;;
      *)
        art_usage_error "unexpected argument: $arg (expected KEY=VALUE)"
        ;;
    esac
  done
  case "$DRY_RUN" in
    1 | true | yes) DRY_RUN=1 ;;
    0 | false | no | "") DRY_RUN=0 ;;
    *) art_usage_error "DRY_RUN must be 0 or 1, not '$DRY_RUN'" ;;
  esac
}

# art_require KEY...: fails with the usage when one of them is empty.
art_require() {
  local key
  for key in "$@"; do
    [[ -n "${!key:-}" ]] || art_usage_error "$key is required"
  done
}

# art_bool KEY: fails unless the variable is 0/1 (also true/false, yes/no);
# normalises it to 0 or 1.
art_bool() {
  local key="$1"
  case "${!key:-0}" in
    1 | true | yes) printf -v "$key" 1 ;;
    0 | false | no | "") printf -v "$key" 0 ;;
    *) art_usage_error "$key must be 0 or 1, not '${!key}'" ;;
  esac
}

# art_quote WORD: WORD as one shell word (unchanged when it needs no quotes).
# A `--flag=value` word keeps the flag outside the quotes: --command='...'.
art_quote() {
  local s="$1"
  if [[ -n "$s" && "$s" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
    printf '%s' "$s"
  elif [[ "$s" =~ ^(--?[A-Za-z0-9_.-]+=)(.*)$ ]]; then
    printf "%s'%s'" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]//\'/\'\\\'\'}"
  else
    art_squote "$s"
  fi
}

# art_squote WORD: WORD single-quoted unless it needs no quotes at all.
art_squote() {
  local s="$1"
  if [[ -n "$s" && "$s" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
    printf '%s' "$s"
  else
    printf "'%s'" "${s//\'/\'\\\'\'}"
  fi
}

# art_join WORD...: the words quoted and joined by spaces (a command line).
art_join() {
  local out="" w
  for w in "$@"; do
    out+="${out:+ }$(art_quote "$w")"
  done
  printf '%s' "$out"
}

# art_run CMD ARG...: runs the command, or prints it under DRY_RUN=1.
art_run() {
  if ((DRY_RUN)); then
    printf '+ %s\n' "$(art_join "$@")"
  else
    printf '+ %s\n' "$(art_join "$@")" >&2
    "$@"
  fi
}

# art_export KEY VALUE: exports the variable (printed as `export` under
# DRY_RUN=1, so the printed lines replay the whole run).
art_export() {
  export "$1=$2"
  if ((DRY_RUN)); then
    printf '+ export %s=%s\n' "$1" "$(art_squote "$2")"
  fi
}

# art_note TEXT: a comment in the dry-run transcript / a message on stderr.
art_note() {
  if ((DRY_RUN)); then
    printf '# %s\n' "$*"
  else
    printf '%s\n' "$*" >&2
  fi
}

# art_first_host NODELIST: the first host of a SLURM node list, for machines
# without scontrol: "gpu[003-008,12],x" -> gpu003 (the part before the first
# comma outside brackets, with the first number of its first range).
art_first_host() {
  local list="$1" head rest inner
  if [[ "$list" =~ ^([^,\[]*)\[([^]]*)\](.*)$ ]]; then
    head="${BASH_REMATCH[1]}" inner="${BASH_REMATCH[2]}" rest="${BASH_REMATCH[3]}"
    inner="${inner%%,*}"
    printf '%s%s%s\n' "$head" "${inner%%-*}" "${rest%%,*}"
  else
    printf '%s\n' "${list%%,*}"
  fi
}
