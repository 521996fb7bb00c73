#!/usr/bin/env bash
# Shared by the scripts: repository root, CUDA on PATH, ccache, and one configure function.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
JOBS="${JOBS:-$(nproc)}"
export CCACHE_DIR="${CCACHE_DIR:-$ROOT/.cache/ccache}"

# CUDA machine code for this machine's GPU, or for sm_90 alone where there is none (CI): the
# installed default, every architecture from sm_80 to sm_100, compiles each kernel five times.
TEST_CUDA_ARCHITECTURES=90
if nvidia-smi -L >/dev/null 2>&1; then TEST_CUDA_ARCHITECTURES=native; fi

# configure BUILD_DIR [extra cmake args...]
configure() {
  local dir="$1"
  shift
  # The log sits next to the build folder, whose parent (build/) is ignored and so missing on a
  # fresh checkout or a GPU machine that received only the tracked files.
  mkdir -p "$(dirname "$dir")"
  local launchers=()
  if command -v ccache >/dev/null 2>&1; then
    launchers=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  fi
  cmake -S "$ROOT" -B "$dir" -G Ninja "${launchers[@]}" "$@" >"$dir.configure.log" 2>&1 || {
    cat "$dir.configure.log"
    return 1
  }
  grep -E "CUDA backend" "$dir.configure.log" || true
}
