#!/usr/bin/env python3
"""The test suite must not write into the source tree.

ctest runs `snapshot` before every other test (a fixture setup) and `compare` after all of them
(the fixture's cleanup): every file that git neither tracks nor ignores, and every tracked file
whose content changed, is recorded with a hash; a file that is new or different at the end fails
the run, named. Without git (a tarball) it reports itself skipped (exit code 77).

usage: source_tree_watch.py snapshot|compare SOURCE_DIR STATE_FILE
"""
import hashlib
import json
import pathlib
import subprocess
import sys


def state_of(source: pathlib.Path) -> dict:
    listing = subprocess.run(
        ["git", "-C", str(source), "status", "--porcelain=v1", "-z", "--untracked-files=all"],
        capture_output=True, check=True).stdout.decode("utf-8", "surrogateescape")
    files = {}
    for entry in filter(None, listing.split("\0")):
        path = entry[3:]
        full = source / path
        if full.is_file():
            files[path] = hashlib.sha1(full.read_bytes()).hexdigest()
        else:
            files[path] = entry[:2]  # deleted or not a regular file: its status letters
    return files


def main() -> int:
    mode, source, state_file = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    try:
        current = state_of(source)
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"SKIPPED: {source} is not a git checkout ({error}); cannot watch the source tree")
        return 77
    if mode == "snapshot":
        state_file.write_text(json.dumps(current))
        print(f"source tree: {len(current)} untracked or modified files before the tests")
        return 0
    before = json.loads(state_file.read_text())
    left = sorted(path for path, digest in current.items() if before.get(path) != digest)
    if left:
        print("the test suite wrote into the source tree (tests must write into a temporary folder):")
        for path in left:
            print(f"  {path}")
        return 1
    print("source tree untouched by the tests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
