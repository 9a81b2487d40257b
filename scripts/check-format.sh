#!/usr/bin/env bash
# Fails when a tracked C++ file is off the repository's .clang-format
# (clang-format 14, Debian's). Prints the files and a diff of the first
# few; fix with:  git ls-files '*.cc' '*.h' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "check-format: clang-format not installed" >&2; exit 1; }
mapfile -t files < <(git ls-files '*.cc' '*.h')
bad=()
for f in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then bad+=("$f"); fi
done
if [ "${#bad[@]}" -gt 0 ]; then
  echo "check-format: ${#bad[@]} of ${#files[@]} files are off .clang-format:" >&2
  printf '  %s\n' "${bad[@]}" >&2
  for f in "${bad[@]:0:3}"; do diff -u "$f" <(clang-format "$f") | head -20 >&2 || true; done
  exit 1
fi
echo "check-format: ${#files[@]} files match .clang-format ($(clang-format --version | head -1))"
