#!/usr/bin/env python3
"""The documents tell the truth about the tree: every relative link in README.md and docs/*.md
points to a file that exists (and, for a link to a heading, to a heading that exists), and every
repository path written in backticks exists (a `*` or `<placeholder>` matches any name)."""
import glob
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\s]+)`")
PATHLIKE = re.compile(r"^[A-Za-z0-9_.\-/<>*{},]+$")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(md: pathlib.Path) -> set:
    return {slug(line.lstrip("#")) for line in md.read_text().splitlines() if line.startswith("#")}


def exists(path: str) -> bool:
    pattern = re.sub(r"<[^>]*>", "*", path)
    if "{" in pattern:  # brace lists: every alternative must exist
        head, rest = pattern.split("{", 1)
        options, tail = rest.split("}", 1)
        return all(exists(head + option + tail) for option in options.split(","))
    return bool(glob.glob(str(ROOT / pattern)))


def ignored(name: str) -> bool:
    """Build outputs and caches that git ignores (build/, .cache/, gpu_bundle/): documents may name
    what a script writes there, which a fresh clone does not have yet."""
    try:
        return subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", name]).returncode == 0
    except OSError:
        return False


def main() -> int:
    top_level = {p.name for p in ROOT.iterdir() if not ignored(p.name)}
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    problems, checked = [], 0
    for md in documents:
        text = md.read_text()
        in_fence = False
        for number, line in enumerate(text.splitlines(), 1):
            if line.startswith("```"):
                in_fence = not in_fence
                continue
            where = f"{md.relative_to(ROOT)}:{number}"
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target):
                    continue  # http:, https:, mailto:
                path, _, anchor = target.partition("#")
                resolved = (md.parent / path).resolve() if path else md
                checked += 1
                if not resolved.exists():
                    problems.append(f"{where}: link to {target}: no such file")
                elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                    problems.append(f"{where}: link to {target}: no such heading")
            if in_fence:
                continue
            for token in CODE.findall(line):
                token = token.rstrip(".,:;")
                if "/" not in token or not PATHLIKE.match(token) or token.startswith(("/", "--")):
                    continue
                first = token.split("/", 1)[0]
                if first in top_level:
                    candidate = token
                elif first == "detail":
                    candidate = "include/promptdistill/" + token
                else:
                    continue
                checked += 1
                if not exists(candidate):
                    problems.append(f"{where}: `{token}` does not exist")
    for problem in problems:
        print("FAILED:", problem)
    print(f"docs: {checked - len(problems)} of {checked} links and paths exist")
    return 1 if problems or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
