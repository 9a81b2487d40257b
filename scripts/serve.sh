#!/usr/bin/env bash
# Runs the gRPC server built by scripts/build.sh.
#
#   scripts/serve.sh [openelm_server flags...]
#
# Defaults: the Llama-2 tokenizer from $OPENELM_TOKENIZER or
# ../shared/tokenizer/llama2-tokenizer.model, and (without --model_dir) the
# cached random-weight OpenELM-270M checkpoint, generated on first run (its
# text is meaningless; pass --model_dir=<HF checkpoint dir> for real output).
# Build dir: $OPENELM_BUILD_DIR or ./build. Extra arguments are passed through
# and override the defaults, e.g.
#   scripts/serve.sh --model_dir=$HOME/models/OpenELM-270M-Instruct --port=50051
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${OPENELM_BUILD_DIR:-${repo_root}/build}"
server="${build_dir}/bin/openelm_server"
if [ ! -x "${server}" ]; then
  echo "serve.sh: ${server} not found; run scripts/build.sh first" >&2
  exit 1
fi

tokenizer="${OPENELM_TOKENIZER:-${repo_root}/../shared/tokenizer/llama2-tokenizer.model}"
args=()
have_tokenizer=0
for a in "$@"; do
  case "$a" in
    --tokenizer=*|--tokenizer) have_tokenizer=1 ;;
  esac
done
if [ "${have_tokenizer}" -eq 0 ]; then
  if [ ! -f "${tokenizer}" ]; then
    echo "serve.sh: tokenizer ${tokenizer} not found; set OPENELM_TOKENIZER or pass --tokenizer=" >&2
    exit 1
  fi
  args+=("--tokenizer=${tokenizer}")
fi

exec "${server}" "${args[@]}" "$@"
