#!/usr/bin/env python3
"""The C++ and CUDA sources follow .clang-format (100 columns, Google style): `clang-format
--dry-run --Werror` on every tracked source, the generated tables left out. Exits 77 (ctest:
skipped) where clang-format is not installed (scripts/install_deps.sh installs it).

  python3 tests/scripts/check_format.py [--fix]     # --fix rewrites the files in place
"""
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
FOLDERS = ("include", "src", "cpu_reference", "cuda", "pipelines", "tools", "tests", "bench", "examples", "fuzz",
           "python/src")
SUFFIXES = {".h", ".cpp", ".cu", ".cuh", ".inc"}
GENERATED = {"src/models/unicode_tables.inc"}


def sources():
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--", *FOLDERS], capture_output=True, text=True)
    if listed.returncode != 0:  # not a git checkout: every file under the folders
        names = [str(p.relative_to(ROOT)) for f in FOLDERS if (ROOT / f).is_dir() for p in (ROOT / f).rglob("*")]
    else:
        names = listed.stdout.split()
    return sorted(n for n in names if pathlib.Path(n).suffix in SUFFIXES and n not in GENERATED and (ROOT / n).is_file())


def main():
    exe = shutil.which("clang-format")
    if exe is None:
        print("clang-format is not installed: format check skipped")
        return 77
    files = sources()
    if not files:
        print("no sources found")
        return 1
    args = ["-i"] if "--fix" in sys.argv else ["--dry-run", "--Werror"]
    bad = []
    for i in range(0, len(files), 100):
        batch = files[i:i + 100]
        run = subprocess.run([exe, "--style=file", *args, *batch], cwd=ROOT, capture_output=True, text=True)
        if run.returncode != 0:
            bad.append(run.stderr)
    if bad:
        text = "".join(bad)
        print(text[:6000])
        print(f"format: {text.count('error:')} places differ from .clang-format "
              f"(python3 tests/scripts/check_format.py --fix rewrites them)")
        return 1
    print(f"format: {len(files)} sources follow .clang-format")
    return 0


if __name__ == "__main__":
    sys.exit(main())
