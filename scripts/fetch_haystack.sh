#!/usr/bin/env bash
# The needle evaluation's real-prose haystack, available offline from a Debian package:
#   source:  the King James Version of the Bible, Genesis and Exodus (~74,000 words), printed by the
#            `bible` program of Debian's bible-kjv / bible-kjv-text packages;
#   licence: the KJV text's copyright has expired (the package's copyright file says so; the
#            translation dates from 1611). The program itself is GPL-2+; only its output is used.
# Writes .cache/haystack/kjv_genesis_exodus.txt (ignored by git) and prints its path.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${PROMPTDISTILL_HAYSTACK:-$ROOT/.cache/haystack/kjv_genesis_exodus.txt}"
if [ -s "$OUT" ]; then
  echo "$OUT"
  exit 0
fi
if ! command -v bible >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq bible-kjv >/dev/null
fi
mkdir -p "$(dirname "$OUT")"
# Drop the verse references ("Ge1:1 ") and join the verses into running prose.
bible -f "Genesis1:1-Exodus40:38" | sed -E 's/^[0-9A-Za-z]+[0-9]+:[0-9]+ //' | tr '\n' ' ' >"$OUT.part"
[ "$(wc -w <"$OUT.part")" -gt 50000 ] || { echo "error: the haystack text is too short" >&2; exit 1; }
mv "$OUT.part" "$OUT"
echo "$OUT"
