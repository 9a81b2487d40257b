# shellcheck shell=bash
# Sourced by the end-to-end test scripts that drive a real openelm_server on
# a generated checkpoint (test-http-api.sh, test-python-client.sh):
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/e2e-args.sh"
#   e2e_parse_args NAME "$@"
#
# parses BUILD_DIR [--server PATH] [--gen PATH] [--tokenizer PATH] and sets
# repo_root, build_dir, server, gen and tokenizer (defaults:
# BUILD_DIR/bin/openelm_server, BUILD_DIR/engine/tools/openelm_gen_checkpoint,
# $OPENELM_TOKENIZER or ../shared/tokenizer/llama2-tokenizer.model). Exits 2
# on bad usage and 1, naming the file, when one of the three is missing.

e2e_parse_args() {
  local name=$1
  shift
  if [ $# -lt 1 ]; then
    echo "usage: $name BUILD_DIR [--server PATH] [--gen PATH] [--tokenizer PATH]" >&2
    exit 2
  fi
  repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  build_dir="$(cd "$1" && pwd)"
  shift
  server="$build_dir/bin/openelm_server"
  gen="$build_dir/engine/tools/openelm_gen_checkpoint"
  tokenizer="${OPENELM_TOKENIZER:-$repo_root/../shared/tokenizer/llama2-tokenizer.model}"
  while [ $# -gt 0 ]; do
    case "$1" in
      --server) server=$2; shift 2 ;;
      --gen) gen=$2; shift 2 ;;
      --tokenizer) tokenizer=$2; shift 2 ;;
      *) echo "$name: unknown argument $1" >&2; exit 2 ;;
    esac
  done
  local f
  for f in "$server" "$gen" "$tokenizer"; do
    if [ ! -e "$f" ]; then
      echo "$name: missing $f" >&2
      exit 1
    fi
  done
}
