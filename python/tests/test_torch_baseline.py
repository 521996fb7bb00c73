# SPDX-License-Identifier: Apache-2.0
"""bench/torch_baseline.py, the GPU run's PyTorch baseline, checked here on the CPU with the pinned
transformers so that the GPU window does not find its faults: it builds its configurations with the
installed version's argument names (no deprecation warnings; the 8B shape's RoPE is llama3 with
factor 8 and theta 500000), runs the tiny shape end to end on the CPU (one JSON line per length,
in the end-to-end benchmark's field names), and reports itself skipped where CUDA is missing."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

SCRIPT = ROOT / "bench" / "torch_baseline.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=600)


def config_of(*args):
    out = run(*args, "--config-only")
    assert out.returncode == 0, out.stderr
    assert "deprecated" not in out.stderr.lower(), out.stderr
    return json.loads(out.stdout)


def test_configurations_use_the_installed_transformers_names():
    llama = config_of("--shape", "llama31-8b")
    assert (llama["layers"], llama["hidden_size"], llama["num_key_value_heads"], llama["vocab_size"]) == (32, 4096, 8, 128256)
    assert llama["rope"]["rope_type"] == "llama3"
    assert llama["rope"]["rope_theta"] == 500000.0
    assert (llama["rope"]["factor"], llama["rope"]["low_freq_factor"], llama["rope"]["high_freq_factor"]) == (8.0, 1.0, 4.0)
    assert llama["rope"]["original_max_position_embeddings"] == 8192
    smollm2 = config_of("--shape", "smollm2", "--layers", "16")
    assert smollm2["layers"] == 16
    assert smollm2["rope"]["rope_theta"] == 100000.0
    assert smollm2["rope"].get("rope_type", "default") == "default"


def test_the_tiny_shape_runs_on_the_cpu():
    out = run("--shape", "tiny", "--device", "cpu", "--lengths", "48", "96", "--decode", "3")
    assert out.returncode == 0, out.stderr
    assert "deprecated" not in out.stderr.lower(), out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [line["length"] for line in lines] == [48, 96]
    for line in lines:
        assert line["device"] == "cpu" and line["shape"] == "tiny" and line["layers"] == 2
        assert line["method"] == "torch-sdpa full"
        assert line["ttft_ms"] > 0 and line["decode_ms_per_token"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the GPU run covers the CUDA path")
def test_without_cuda_the_gpu_run_reads_skipped():
    out = run("--shape", "tiny", "--lengths", "16", "--decode", "2")
    assert out.returncode == 77, out.stderr
    assert out.stdout.startswith("SKIPPED: no CUDA device")
