# SPDX-License-Identifier: Apache-2.0
"""Shared by the Python tests: where the repository, the CLI and the embedded model are, and a runner
for the CLI whose output the package must reproduce. Tests write only under pytest's tmp_path."""

import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
CLI = pathlib.Path(os.environ.get("PROMPTDISTILL_CLI", ROOT / "build" / "default" / "bin" / "promptdistill"))
MODEL = pathlib.Path(os.environ.get("PROMPTDISTILL_MODEL", ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))


def _need(path, what, how):
    if not path.exists():
        pytest.skip(f"{what} not found at {path} ({how})")


@pytest.fixture(scope="session")
def cli():
    """Runs `promptdistill ARGS... --json` and returns the parsed JSON."""
    _need(CLI, "the promptdistill CLI", "build it, or set PROMPTDISTILL_CLI")

    def run(*args):
        out = subprocess.run([str(CLI), *map(str, args), "--json"], capture_output=True, text=True)
        assert out.returncode == 0, f"promptdistill {' '.join(map(str, args))} failed: {out.stderr}"
        return json.loads(out.stdout)

    return run


@pytest.fixture(scope="session")
def smollm2_path():
    _need(MODEL, "the embedded SmolLM2 GGUF", "scripts/fetch_model.sh fetches it")
    return MODEL


@pytest.fixture(scope="session")
def smollm2_model(smollm2_path):
    """SmolLM2 from the embedded GGUF in transformers, float32, loaded once for every test file."""
    import torch
    import transformers
    return transformers.AutoModelForCausalLM.from_pretrained(smollm2_path.parent, gguf_file=smollm2_path.name,
                                                             dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def smollm2_prompt():
    """The golden haystack prompt cut in the middle (as the reference drivers truncate): the fact
    and the question stay, and H2O's quadratic scoring stays cheap."""
    ids = json.loads((GOLDEN / "smollm2_methods.json").read_text())["ids"]
    return ids[:200] + ids[-100:]


def selected_rows(cli_entry):
    """A layer's selection as the CLI's JSON gives it: a list of rows (one per KV group or query
    head), or only row 0 as a flat list (older CLIs). Returned as a list of rows."""
    return cli_entry if cli_entry and isinstance(cli_entry[0], list) else [cli_entry]


def pytest_terminal_summary(terminalreporter):
    """How many generated examples each fuzz test ran (python/tests/test_fuzz_*.py)."""
    import sys
    support = sys.modules.get("fuzz_support")
    if support is None or not support.COUNTS:
        return
    counts = support.COUNTS
    terminalreporter.write_line(f"fuzz examples: {sum(counts.values())} ("
                                + ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) + ")")
