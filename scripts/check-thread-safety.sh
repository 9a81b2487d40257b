#!/usr/bin/env bash
# Runs clang's -Wthread-safety analysis (ABSL_GUARDED_BY etc.) over the files
# that share state between threads: the engine loop and the server.
#   scripts/check-thread-safety.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
python3 - "$BUILD_DIR" <<'PY'
import json, shlex, subprocess, sys, os
build = sys.argv[1]
db = json.load(open(os.path.join(build, "compile_commands.json")))
wanted = lambda f: ("/server/" in f or f.endswith("/engine/llm_engine.cc")) and "/tests/" not in f
failed, checked = 0, 0
for e in db:
    f = e["file"]
    if not wanted(f):
        continue
    args = shlex.split(e["command"])[1:]
    keep, skip = [], False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if a in ("-c", f) or a.startswith("-fsanitize"):
            continue
        keep.append(a)
    cmd = ["clang++", "-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety",
           "-Wno-unknown-warning-option"] + keep + ["-Wno-overloaded-virtual", f]
    r = subprocess.run(cmd, cwd=e["directory"], capture_output=True, text=True)
    checked += 1
    if r.returncode != 0:
        failed += 1
        print("thread-safety: FAILED", f)
        print(r.stderr[-4000:])
print(f"thread-safety: {checked} files checked, {failed} failed")
sys.exit(1 if failed or checked == 0 else 0)
PY
