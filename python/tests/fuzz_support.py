# SPDX-License-Identifier: Apache-2.0
"""What every fuzz test shares: the Hypothesis settings (a fixed-seed, bounded run in the test
suite; long random runs from scripts/fuzz_python.sh), the regression examples kept in
python/tests/fuzz_regressions/ (replayed by every run), the record of a failing example for the
script to keep, the outcome rule (a result equal to the NumPy statement, or promptdistill.Error
with the caller's memory unchanged; nothing else) and a guard that turns a hang into a failure.

Environment (set by scripts/fuzz_python.sh; the defaults are the test suite's run):
  PROMPTDISTILL_FUZZ_SCALE  multiplies every test's example count (default 1)
  PROMPTDISTILL_FUZZ_SEED   a seed for a random run; unset: derandomized (the same examples always)
  PROMPTDISTILL_FUZZ_RECORD a file to which each failing example's spec is appended as JSON
"""

import faulthandler
import json
import os
import pathlib
import re
import sys

import hypothesis
import pytest
from hypothesis import HealthCheck, settings

import promptdistill as pd

REGRESSIONS = pathlib.Path(__file__).resolve().parent / "fuzz_regressions"
SCALE = float(os.environ.get("PROMPTDISTILL_FUZZ_SCALE", "1"))
SEED = os.environ.get("PROMPTDISTILL_FUZZ_SEED")
RECORD = os.environ.get("PROMPTDISTILL_FUZZ_RECORD")
#: Seconds one example may take before the process is stopped with every thread's traceback (a
#: hang in C++ cannot be interrupted from Python).
HANG_SECONDS = 120

#: Examples run in total by the fuzz tests of this session (printed by conftest at the end).
COUNTS = {}


def fuzz_settings(examples):
    """Settings of a fuzz test: `examples` examples (times PROMPTDISTILL_FUZZ_SCALE), no example
    database (nothing is written next to the tests), no deadline (the build machine is shared;
    hangs are caught by `HANG_SECONDS`), derandomized unless a seed is given."""
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, database=None,
                    derandomize=SEED is None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


def seeded(test):
    """Applies PROMPTDISTILL_FUZZ_SEED to a Hypothesis test (a different random run per seed)."""
    return hypothesis.seed(int(SEED))(test) if SEED is not None else test


def regressions(name):
    """The kept examples of fuzz test `name` (one JSON spec per line), as pytest parameters."""
    path = REGRESSIONS / f"{name}.jsonl"
    if not path.exists():
        return []
    specs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [pytest.param(s, id=f"{name}-{i}") for i, s in enumerate(specs)]


class Unexpected(AssertionError):
    """An outcome the rule forbids."""


def check(name, spec, run):
    """Runs `run(spec)` (which builds the arrays, calls the library and compares) under the hang
    guard; on failure appends the spec to PROMPTDISTILL_FUZZ_RECORD and re-raises with the spec."""
    if hypothesis.currently_in_test_context():
        COUNTS[name] = COUNTS.get(name, 0) + 1
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=sys.stderr)
    try:
        run(spec)
    except BaseException as e:
        if RECORD:
            with open(RECORD, "a") as f:
                f.write(json.dumps({"test": name, "spec": spec}) + "\n")
        if isinstance(e, (AssertionError, pd.Error)) or not isinstance(e, Exception):
            raise
        raise Unexpected(f"{name}: {type(e).__name__}: {e}\nspec={json.dumps(spec)}") from e
    finally:
        faulthandler.cancel_dump_traceback_later()


def _event(text):
    """A line of --hypothesis-show-statistics (nothing when a regression example is replayed)."""
    if hypothesis.currently_in_test_context():
        hypothesis.event(text)


def outcome(call, problem, snapshot, case):
    """Runs `call()`. `problem` is the documented rule the arguments break (None: valid). A valid
    call must succeed (its result is returned for comparison); an invalid one must raise
    promptdistill.Error; an Error must leave every buffer of `snapshot` unchanged. Returns the
    result, or None after an expected Error."""
    try:
        result = call()
    except pd.Error as e:
        _event(f"refused: {re.sub(r'[-0-9].*', '', str(problem))}")
        if not snapshot.unchanged():
            raise Unexpected(f"{case}\nError '{e}' but the caller's arrays changed") from e
        if problem is None:
            raise Unexpected(f"{case}\nvalid arguments refused: {e}") from e
        return None
    except Exception as e:
        raise Unexpected(f"{case}\n{type(e).__name__} instead of promptdistill.Error: {e}") from e
    if problem is not None:
        raise Unexpected(f"{case}\naccepted, but the arguments break a documented rule: {problem}")
    _event("accepted and compared")
    return result
