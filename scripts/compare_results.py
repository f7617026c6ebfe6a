#!/usr/bin/env python3
"""Compares two results trees (clem run's and clemhost run's) file by file.

Every JSON file under each folder is read; timestamps and durations are left
out (the keys host/tests/cli/times.rs leaves out), and with
--without-backend-objects also the backend's own recorded prompt and
response objects (`manipulated_prompt_obj`, `raw_response_obj`). Prints one
line per game (episodes, failed episodes with error.json, files that
differ) and the first differences; exits 1 when the trees differ.
Standard library only.

    python3 scripts/compare_results.py THEIRS OURS [--without-backend-objects] [--quiet]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List

TIMES = {
    "timestamp", "created", "benchmark_start", "benchmark_end",
    "duration", "duration_seconds", "call_start", "call_duration",
}
BACKEND_OBJECTS = {"manipulated_prompt_obj", "raw_response_obj"}


def without(value: Any, keys: set) -> Any:
    if isinstance(value, dict):
        return {k: without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [without(v, keys) for v in value]
    return value


def tree(root: Path, keys: set) -> Dict[str, Any]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            rel = str(path.relative_to(root))
            try:
                out[rel] = without(json.loads(path.read_text(encoding="utf-8")), keys)
            except (ValueError, UnicodeDecodeError) as e:
                out[rel] = f"<not JSON: {e}>"
    return out


def game_of(rel: str) -> str:
    parts = rel.split("/")
    return parts[1] if len(parts) >= 3 else "(run)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("theirs", type=Path)
    p.add_argument("ours", type=Path)
    p.add_argument("--without-backend-objects", action="store_true")
    p.add_argument("--quiet", action="store_true", help="only the verdict line")
    args = p.parse_args()
    keys = TIMES | (BACKEND_OBJECTS if args.without_backend_objects else set())
    theirs, ours = tree(args.theirs, keys), tree(args.ours, keys)
    differing: List[str] = []
    for rel in sorted(set(theirs) | set(ours)):
        if theirs.get(rel, "<missing>") != ours.get(rel, "<missing>"):
            differing.append(rel)
    per_game: Dict[str, Dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for rel in ours:
        parts = rel.split("/")
        if len(parts) == 5:
            per_game[parts[1]]["episodes"].add("/".join(parts[2:4]))
            if parts[4] == "error.json":
                per_game[parts[1]]["errors"].add("/".join(parts[2:4]))
    for rel in differing:
        per_game[game_of(rel)]["differ"].add(rel)
    if not args.quiet:
        print(f"{'game':32} {'episodes':>8} {'errors':>7} {'differ':>7}")
        for game in sorted(per_game):
            g = per_game[game]
            print(f"{game:32} {len(g['episodes']):8} {len(g['errors']):7} {len(g['differ']):7}")
        for rel in differing[:10]:
            print(f"differs: {rel}", file=sys.stderr)
            if rel in theirs and rel in ours:
                a, b = json.dumps(theirs[rel], sort_keys=True), json.dumps(ours[rel], sort_keys=True)
                i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
                print(f"  clem run: ...{a[max(0, i - 80):i + 80]}", file=sys.stderr)
                print(f"  clemhost: ...{b[max(0, i - 80):i + 80]}", file=sys.stderr)
            else:
                print(f"  only in {'clem run' if rel in theirs else 'clemhost'}'s tree", file=sys.stderr)
    verdict = "equal" if not differing else f"{len(differing)} of {len(set(theirs) | set(ours))} files differ"
    print(f"{args.theirs} vs {args.ours}: {len(ours)} files, {verdict}")
    return 0 if not differing else 1


if __name__ == "__main__":
    sys.exit(main())
