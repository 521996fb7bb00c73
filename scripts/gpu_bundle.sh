#!/usr/bin/env bash
# Builds, on a machine with nvcc and no GPU, everything a GPU machine runs in scripts/gpu_run.sh,
# into gpu_bundle/ (ignored by git): every CUDA test executable, the GPU benchmarks, the end-to-end
# shape benchmark, Release, with every shared library they load that a GPU machine may
# lack, and the static libraries the Python modules link. The GPU machine then needs no CUDA
# compile, Eigen, doctest or package; only the Python modules (three binding files, for its own
# Python) are compiled there, with its CMake, compiler and nanobind.
#
#   scripts/gpu_bundle.sh [--arch LIST] [--out DIR] [--build-dir DIR] [--skip-build] [--max-mib N]
#
#   --arch LIST     CUDA architectures (CMake syntax; default 90: the lent H200); "native" on a
#                   workstation with a GPU
#   --out DIR       the bundle (default gpu_bundle)
#   --build-dir DIR where to build (default build/bundle)
#   --skip-build    package what DIR already holds (the ctest of gpu_run.sh's dry run does)
#   --max-mib N     fail when the bundle is larger (default 52: the device tool carries 64 MiB
#                   in all, the working tree is about 10 MiB; 0 = no limit)
#
# Libraries: glibc, libstdc++, libgcc_s and the driver's libcuda come from the GPU machine, and so
# does cuBLASLt (over 500 MB: gpu_run.sh finds it in the CUDA toolkit there or next to PyTorch's
# CUDA libraries); every other library ldd lists is copied into lib/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

arch=90
out="$ROOT/gpu_bundle"
build="$ROOT/build/bundle"
skip_build=0
max_mib=52
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --build-dir) build="$2"; shift 2 ;;
    --skip-build) skip_build=1; shift ;;
    --max-mib) max_mib="$2"; shift 2 ;;
    *) echo "usage: $0 [--arch LIST] [--out DIR] [--build-dir DIR] [--skip-build] [--max-mib N]" >&2; exit 2 ;;
  esac
done

# What the GPU machine runs: the CUDA tests (not cuda_host, whose host checks run in CI), the GPU
# benchmarks and the end-to-end shape benchmark (not the CLI: no step runs it, and its 7 MB are
# what the static libraries of the Python modules need). Paths relative to the build folder.
executables=(
  tests/promptdistill.test.cuda_numerics
  tests/promptdistill.test.cuda_selector
  tests/promptdistill.test.cuda_graph_capture
  tests/promptdistill.test.cuda_tensor_parallel
  tests/promptdistill.test.cuda_blocks
  tests/promptdistill.test.cuda_session
  tests/promptdistill.test.cuda_session_smollm2
  tests/promptdistill.test.cuda_header_only
  bench/promptdistill.bench.selector
  bench/promptdistill.bench.blocks
  bench/promptdistill.bench.e2e_shape
)
# The static libraries the Python modules link (scripts/gpu_python.sh builds the modules on the GPU
# machine, for its own Python, against these).
static_libraries=(libpromptdistill_core.a libpromptdistill_cpu_reference.a libpromptdistill_models.a libpromptdistill_cuda.a)
# Provided by the GPU machine (see above).
system_libraries='^(linux-vdso|ld-linux[-a-z0-9_]*|libc|libm|libdl|libpthread|librt|libresolv|libstdc\+\+|libgcc_s|libcuda|libcublasLt|libcublas)\.so'

if [ "$skip_build" = 0 ]; then
  echo "== build (Release, CUDA architectures $arch) in $build =="
  configure "$build" -DCMAKE_BUILD_TYPE=Release -DPROMPTDISTILL_ENABLE_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$arch"
  targets=()
  for exe in "${executables[@]}"; do
    targets+=("$(basename "$exe")")
  done
  for library in "${static_libraries[@]}"; do
    name=${library#lib}
    targets+=("${name%.a}")
  done
  cmake --build "$build" -j "$JOBS" --target "${targets[@]}"
fi

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/python/lib"
declare -A libraries=()
for exe in "${executables[@]}"; do
  [ -x "$build/$exe" ] || { echo "error: $build/$exe is missing (build it, or drop --skip-build)" >&2; exit 1; }
  cp "$build/$exe" "$out/bin/"
  strip --strip-unneeded "$out/bin/$(basename "$exe")" 2>/dev/null || true
  while read -r name path; do
    [[ "$name" =~ $system_libraries ]] && continue
    [ -n "$path" ] && [ -f "$path" ] || { echo "error: $exe needs $name, which ldd cannot find here" >&2; exit 1; }
    libraries["$name"]="$path"
  done < <(ldd "$build/$exe" | awk '$2 == "=>" { print $1, $3; next } { n = split($1, part, "/"); print part[n] }')
done
for name in "${!libraries[@]}"; do
  cp -L "${libraries[$name]}" "$out/lib/$name"
  strip --strip-unneeded "$out/lib/$name" 2>/dev/null || true
done
for library in "${static_libraries[@]}"; do
  [ -f "$build/$library" ] || { echo "error: $build/$library is missing (build it, or drop --skip-build)" >&2; exit 1; }
  cp "$build/$library" "$out/python/lib/"
  strip --strip-debug "$out/python/lib/$library" 2>/dev/null || true
done

{
  echo "promptdistill GPU bundle"
  echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/CUDA \1/p')"
  echo "cuda_architectures: $(sed -n 's/^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=//p' "$build/CMakeCache.txt")"
  echo "needs_from_machine: glibc, libstdc++, libgcc_s, libcuda (driver >= the toolkit's), libcublasLt.so.13"
  echo "python_step_needs: cmake, a C++ compiler, the CUDA toolkit, and nanobind, numpy, pytest and torch for python3 (skipped without them)"
  echo "executables:"
  for exe in "${executables[@]}"; do echo "  bin/$(basename "$exe")"; done
  echo "libraries:"
  for name in $(printf '%s\n' "${!libraries[@]}" | sort); do echo "  lib/$name"; done
  echo "static libraries (the Python modules, built on the GPU machine by scripts/gpu_python.sh):"
  for library in "${static_libraries[@]}"; do echo "  python/lib/$library"; done
} >"$out/MANIFEST.txt"

bytes=$(du -sb "$out" | cut -f1)
mib=$(( (bytes + 1048575) / 1048576 ))
echo "bundle: $out, $mib MiB ($bytes bytes): ${#executables[@]} executables, ${#libraries[@]} libraries"
if [ "$max_mib" != 0 ] && [ "$bytes" -gt $(( max_mib * 1048576 )) ]; then
  echo "error: the bundle is $mib MiB, over the $max_mib MiB limit" >&2
  du -b "$out"/bin/* "$out"/lib/* "$out"/python/lib/* | sort -rn | head -5 >&2
  exit 1
fi
