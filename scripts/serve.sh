#!/usr/bin/env bash
# Runs the gRPC server built by scripts/build.sh.
#
#   scripts/serve.sh [openelm_server flags...]
#
# Defaults: the Llama-2 tokenizer the server finds itself without --tokenizer
# ($OPENELM_TOKENIZER, else next to its binary, e.g. <repo>/../shared/
# tokenizer/llama2-tokenizer.model for build/bin; see openelm_server --help),
# and (without --model_dir) the cached random-weight OpenELM-270M checkpoint,
# generated on first run (its text is meaningless; pass
# --model_dir=<HF checkpoint dir> for real output).
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

# The server finds <repo>/../shared/tokenizer/... from <repo>/build/bin by
# itself; it is passed explicitly anyway for a build directory elsewhere
# ($OPENELM_BUILD_DIR), where the server's search next to its binary misses it.
repo_tokenizer="${repo_root}/../shared/tokenizer/llama2-tokenizer.model"
args=()
have_tokenizer=0
for a in "$@"; do
  case "$a" in
    --tokenizer=*|--tokenizer) have_tokenizer=1 ;;
  esac
done
if [ "${have_tokenizer}" -eq 0 ] && [ -z "${OPENELM_TOKENIZER:-}" ] && [ -f "${repo_tokenizer}" ]; then
  args+=("--tokenizer=${repo_tokenizer}")
fi

exec "${server}" "${args[@]}" "$@"
