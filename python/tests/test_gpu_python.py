# SPDX-License-Identifier: Apache-2.0
"""scripts/gpu_python.sh, the GPU run's Python step: it builds promptdistill._core and ._cuda against
the C++ build's static libraries with this interpreter (as the GPU machine does with its own Python
and PyTorch), imports them from its work folder and runs test_cuda.py; without a CUDA device every
test there skips and the script says so (exit 77), with one the tests must pass (exit 0)."""

import os
import pathlib
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

BUILD = pathlib.Path(os.environ.get("PROMPTDISTILL_BUILD_DIR", ROOT / "build" / "default"))


def test_the_gpu_runs_python_step_builds_the_modules_and_runs_test_cuda(tmp_path):
    if not (BUILD / "libpromptdistill_cuda.a").exists():
        pytest.skip(f"no CUDA build in {BUILD} (its static libraries are what the GPU bundle carries)")
    env = dict(os.environ, CCACHE_BASEDIR=str(tmp_path))
    out = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_python.sh"), str(BUILD), str(tmp_path / "work"), sys.executable],
                         capture_output=True, text=True, timeout=1200, env=env)
    log = out.stdout + out.stderr
    assert "== python/tests/test_cuda.py ==" in log, log[-3000:]
    assert list((tmp_path / "work" / "site" / "promptdistill").glob("_cuda*.so")), log[-3000:]
    if torch.cuda.is_available():
        assert out.returncode == 0, log[-3000:]
    else:
        assert out.returncode == 77, log[-3000:]
        assert "SKIPPED: every test of test_cuda.py skipped: no CUDA device" in log, log[-3000:]
