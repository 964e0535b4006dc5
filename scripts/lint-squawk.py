#!/usr/bin/env python3
"""Runs squawk on the plans and the files, and fails on every finding that
lint/squawk-ignores.toml does not justify.

  scripts/lint-squawk.py [--squawk PATH]

What is linted, with lint/squawk.toml and --pg-version 15:
  * src/kinds/*/plans/*.sql: each built-in migration's plan as the extension
    runs it (hr_plan; the golden files src/kinds/tests.rs holds equal to
    it), one step after the other, each retried step between the
    `SET lock_timeout` its attempts run under and a RESET;
  * sql/migrations/*.sql and sql/rollback/*.sql: the files as a runner
    sends them (CALLs of the extension's procedures and the top-level
    CREATE INDEX CONCURRENTLY statements).
Each finding is matched against the ignore entries by its rule, its file,
the flagged statement and whether its step has a skip condition (from the
plan's comment above it). An ignore entry no finding uses fails the lint
too (delete it once fixed).
"""
import argparse
import fnmatch
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "lint/squawk.toml"
IGNORES = ROOT / "lint/squawk-ignores.toml"
PG_VERSION = "15"


def files():
    found = sorted(ROOT.glob("src/kinds/*/plans/*.sql"))
    found += sorted(ROOT.glob("sql/migrations/*.sql")) + sorted(ROOT.glob("sql/rollback/*.sql"))
    return found


def squawk(exe, paths):
    res = subprocess.run([exe, "--config", str(CONFIG), "--pg-version", PG_VERSION, "--reporter", "json",
                          *map(str, paths)], capture_output=True, text=True)
    if res.returncode not in (0, 1):
        sys.exit(f"lint-squawk: squawk failed ({res.returncode}): {res.stderr.strip()}")
    try:
        return json.loads(res.stdout or "[]")
    except json.JSONDecodeError:
        sys.exit(f"lint-squawk: cannot read squawk's report: {res.stdout[:300]!r} {res.stderr[:300]!r}")


def load_ignores():
    data = tomllib.loads(IGNORES.read_text())
    entries = data.get("ignore", [])
    for n, e in enumerate(entries, 1):
        unknown = set(e) - {"rule", "files", "statement", "message", "guarded", "reason"}
        if unknown or not e.get("rule") or not str(e.get("reason", "")).strip() or "\n" in e.get("reason", ""):
            sys.exit(f"lint-squawk: {IGNORES.relative_to(ROOT)} entry {n}: needs rule and a one-line reason"
                     + (f" (unknown keys {sorted(unknown)})" if unknown else ""))
        if e["rule"] == "syntax-error":
            sys.exit(f"lint-squawk: {IGNORES.relative_to(ROOT)} entry {n}: a syntax error cannot be ignored")
        e["_n"] = n
    return entries


def step_of(lines, line):
    """The flagged statement and whether its plan step has a skip condition."""
    stmt = lines[line] if 0 <= line < len(lines) else ""
    guarded = False
    for back in range(line - 1, max(line - 4, -1), -1):
        text = lines[back]
        if text.startswith("--   skip when:"):
            guarded = True
        if re.match(r"^-- \d+\.\d+ ", text):
            break
    return stmt.strip(), guarded


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--squawk", default=str(ROOT / ".venv/bin/squawk"))
    a = ap.parse_args()
    paths = files()
    if not any("plans" in str(p) for p in paths):
        sys.exit("lint-squawk: no plan under src/kinds/*/plans/ (cargo test writes them: UPDATE_GOLDEN=1)")
    ignores = load_ignores()
    text = {}
    used = set()
    bad = []
    findings = squawk(a.squawk, paths)
    for v in findings:
        path = Path(v["file"]).resolve()
        rel = str(path.relative_to(ROOT))
        lines = text.setdefault(rel, path.read_text().split("\n"))
        stmt, guarded = step_of(lines, v["line"])
        match = None
        for e in ignores:
            if e["rule"] != v["rule_name"]:
                continue
            if not fnmatch.fnmatch(rel, e.get("files", "*")):
                continue
            if "statement" in e and not re.search(e["statement"], stmt):
                continue
            if "message" in e and not re.search(e["message"], v["message"]):
                continue
            if "guarded" in e and guarded != e["guarded"]:
                continue
            match = e
            break
        if match:
            used.add(match["_n"])
        else:
            bad.append((rel, v, stmt))
    for rel, v, stmt in bad:
        print(f"{rel}:{v['line'] + 1}: {v['level'].lower()}: {v['rule_name']}: {v['message']}")
        print(f"    {stmt[:200]}")
        if v.get("help"):
            print(f"    help: {v['help']}")
    stale = [e for e in ignores if e["_n"] not in used]
    for e in stale:
        print(f"{IGNORES.relative_to(ROOT)}: entry {e['_n']} ({e['rule']}: {e['reason']}) matches no finding any more: delete it")
    print(f"squawk: {len(findings)} findings in {len(paths)} files, "
          f"{len(findings) - len(bad)} justified by {IGNORES.relative_to(ROOT)}, {len(bad)} not"
          + (f"; {len(stale)} stale ignore entries" if stale else ""))
    return 1 if bad or stale else 0


if __name__ == "__main__":
    sys.exit(main())
