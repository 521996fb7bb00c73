#!/usr/bin/env bash
# Run here (a machine that reaches Debian's mirrors) before a GPU session: downloads the Debian
# packages the build needs into .debs/ (ignored by git, a few MB). The GPU machines have nvcc,
# CMake and ninja but reach no registry; name ".debs" in the device tool's `carry` and
# scripts/gpu_check.sh unpacks them there (no root needed: dpkg -x into .debs/root).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$ROOT/.debs"
cd "$ROOT/.debs"
apt-get download libeigen3-dev doctest-dev libbenchmark-dev libbenchmark1debian nlohmann-json3-dev 2>/dev/null
ls -la "$ROOT/.debs"
