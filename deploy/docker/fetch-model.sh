#!/usr/bin/env bash
# Downloads an OpenELM checkpoint (and Llama-2's tokenizer.model) from the
# Hugging Face Hub into a directory. For users with internet access; CI and
# tests never call it.
#
#   HF_REPO_ID=apple/OpenELM-270M-Instruct HF_TOKEN=hf_... openelm-fetch-model /models
#
# Environment:
#   HF_REPO_ID            model repo (required)
#   HF_TOKEN              access token (required: the Llama-2 tokenizer is gated)
#   HF_REVISION           branch, tag or commit (default: main)
#   HF_TOKENIZER_REPO_ID  repo holding tokenizer.model (default: meta-llama/Llama-2-7b-hf)
#   HF_ENDPOINT           hub address (default: https://huggingface.co)
# Files are written to temporary names and renamed when complete, so an
# interrupted download is retried on the next start and concurrent fetches
# into a shared volume do not corrupt each other.
set -euo pipefail

dest="${1:-${OPENELM_MODEL_DIR:-/models}}"
: "${HF_REPO_ID:?set HF_REPO_ID, e.g. apple/OpenELM-270M-Instruct}"
: "${HF_TOKEN:?set HF_TOKEN}"
revision="${HF_REVISION:-main}"
tokenizer_repo="${HF_TOKENIZER_REPO_ID:-meta-llama/Llama-2-7b-hf}"
endpoint="${HF_ENDPOINT:-https://huggingface.co}"

mkdir -p "${dest}"

# fetch REPO FILE [optional]: downloads REPO's FILE at ${revision} into dest.
fetch() {
  local repo="$1" file="$2" optional="${3:-}" out="${dest}/$2"
  if [ -s "${out}" ]; then return 0; fi
  local url="${endpoint}/${repo}/resolve/${revision}/${file}"
  # A name of its own per process: replicas may fetch into a shared volume at
  # the same time; each renames a complete file into place.
  local part="${out}.partial.${HOSTNAME:-local}.$$"
  echo "openelm-fetch-model: ${url}" >&2
  if ! curl --fail --location --silent --show-error --retry 3 \
        --header "Authorization: Bearer ${HF_TOKEN}" \
        --output "${part}" "${url}"; then
    rm -f "${part}"
    if [ -n "${optional}" ]; then return 1; fi
    echo "openelm-fetch-model: download of ${file} failed" >&2
    exit 1
  fi
  mv -f "${part}" "${out}"
}

fetch "${HF_REPO_ID}" config.json
if fetch "${HF_REPO_ID}" model.safetensors.index.json optional; then
  # Sharded checkpoint: the index maps tensors to shard files.
  shards="$(grep -o '"[^"]*\.safetensors"' "${dest}/model.safetensors.index.json" | tr -d '"' | sort -u)"
  for shard in ${shards}; do fetch "${HF_REPO_ID}" "${shard}"; done
else
  fetch "${HF_REPO_ID}" model.safetensors
fi
if [ ! -s "${dest}/tokenizer.model" ]; then
  revision=main fetch "${tokenizer_repo}" tokenizer.model
fi
echo "openelm-fetch-model: done (${dest})" >&2
