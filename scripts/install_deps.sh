#!/usr/bin/env bash
# Installs what the build needs from Debian packages, only what is missing (idempotent).
# The CUDA toolkit (nvcc) is expected on the machine; without it the CUDA backend is skipped.
set -euo pipefail
packages=(cmake ninja-build g++ ccache python3 libeigen3-dev doctest-dev libbenchmark-dev nlohmann-json3-dev bible-kjv clang-format)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[install_deps] installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "[install_deps] nvcc found at /usr/local/cuda/bin (add it to PATH to build the CUDA backend)"
fi
