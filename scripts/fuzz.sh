#!/usr/bin/env bash
# Fuzzes the GGUF and safetensors parsers with libFuzzer (clang from Debian) for a bounded time,
# seeded with small valid files. Crashers land in tests/fuzz_corpus/<target>/ (crash-*), next to
# a few small corpus inputs; the `fuzz_replay` test runs every file there through the parsers on
# every test run, so a crasher found once stays a test.
# Usage: bash scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_PER_TARGET="${1:-60}"
command -v clang++ >/dev/null || { apt-get update -qq && apt-get install -y -qq clang libclang-rt-14-dev >/dev/null; }
WORK="$ROOT/build/fuzz"
mkdir -p "$WORK"
SRC=(src/core/status.cpp src/models/gguf.cpp src/models/safetensors.cpp src/models/tokenizer.cpp)
FLAGS=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I"$ROOT/include" -I"$ROOT/src")
for target in gguf safetensors; do
  bin="$WORK/fuzz_$target"
  (cd "$ROOT" && clang++ "${FLAGS[@]}" "fuzz/fuzz_$target.cpp" "${SRC[@]}" -o "$bin")
  corpus="$WORK/corpus_$target"
  mkdir -p "$corpus" "$ROOT/tests/fuzz_corpus/$target"
  if [ "$target" = gguf ]; then
    python3 - "$corpus/seed.gguf" <<'PY'
import struct, sys
def s(x): b = x.encode(); return struct.pack("<Q", len(b)) + b
out = b"GGUF" + struct.pack("<IQQ", 3, 1, 3)
out += s("general.architecture") + struct.pack("<I", 8) + s("llama")
out += s("tokenizer.ggml.model") + struct.pack("<I", 8) + s("gpt2")
out += s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + s("a") + s("b") + s("ab")
out += s("t") + struct.pack("<IQIQ", 1, 32, 8, 0)
out += b"\0" * ((32 - len(out) % 32) % 32) + struct.pack("<e", 0.5) + bytes(range(32))
open(sys.argv[1], "wb").write(out)
PY
  else
    python3 - "$corpus/seed.safetensors" <<'PY'
import json, struct, sys
h = json.dumps({"a": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]}}).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + bytes(8))
PY
  fi
  echo "== fuzzing $target for ${SECONDS_PER_TARGET}s =="
  (cd "$WORK" && "$bin" -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 -artifact_prefix="$ROOT/tests/fuzz_corpus/$target/" \
     "$corpus" 2>&1 | grep -E "^Done|ERROR|SUMMARY" | tail -5) || true
done
echo "crashers kept: $(find "$ROOT/tests/fuzz_corpus" -type f -name 'crash-*' | wc -l)"
