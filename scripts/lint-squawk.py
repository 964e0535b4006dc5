#!/usr/bin/env python3
"""Runs squawk on the scripts rendered by scripts/render-sql.py and fails on
every finding that lint/squawk-ignores.toml does not justify.

  scripts/lint-squawk.py RENDERED_DIR [--squawk PATH]

Two squawk runs, both with lint/squawk.toml and --pg-version 15:
  * every rendered migration and rollback script, whole;
  * every statement the scripts run directly (RENDERED_DIR/direct/), alone
    and with no timeout setting: squawk's require-lock-timeout only checks
    that some `SET lock_timeout` precedes the DDL in a file (the preamble's
    `SET lock_timeout = 0` satisfies it), so this run is what tells which
    lock each direct statement takes. Only its require-lock-timeout findings
    count; the rest are the first run's.
Each finding is reported at the line of the psql source that produced it.
An ignore entry no finding uses fails the lint too (delete it once fixed).
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


def squawk(exe, files):
    if not files:
        return []
    res = subprocess.run([exe, "--config", str(CONFIG), "--pg-version", PG_VERSION, "--reporter", "json",
                          *map(str, files)], capture_output=True, text=True)
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
        unknown = set(e) - {"rule", "scripts", "statement", "message", "guarded", "reason"}
        if unknown or not e.get("rule") or not str(e.get("reason", "")).strip() or "\n" in e.get("reason", ""):
            sys.exit(f"lint-squawk: {IGNORES.relative_to(ROOT)} entry {n}: needs rule and a one-line reason"
                     + (f" (unknown keys {sorted(unknown)})" if unknown else ""))
        if e["rule"] == "syntax-error":
            sys.exit(f"lint-squawk: {IGNORES.relative_to(ROOT)} entry {n}: a syntax error cannot be ignored")
        e["_n"] = n
    return entries


def squash(text):
    return " ".join(text.split()) if text else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rendered")
    ap.add_argument("--squawk", default=str(ROOT / ".venv/bin/squawk"))
    a = ap.parse_args()
    out = Path(a.rendered)
    mapping = json.loads((out / "map.json").read_text())
    ignores = load_ignores()

    findings = []  # (script, finding, item or None)
    for v in squawk(a.squawk, [out / s for s in mapping]):
        script = str(Path(v["file"]).resolve().relative_to(out.resolve()))
        lines = mapping[script]["lines"]
        w = lines[v["line"]] if 0 <= v["line"] < len(lines) else None
        item = mapping[script]["items"][w["item"]] if w else None
        findings.append((script, v, item, w))
    direct = {f: (s, d) for s, m in mapping.items() for f, d in m["direct"].items()}
    for v in squawk(a.squawk, [out / f for f in direct]):
        if v["rule_name"] != "require-lock-timeout":
            continue
        script, d = direct[str(Path(v["file"]).resolve().relative_to(out.resolve()))]
        item = mapping[script]["items"][d["item"]]
        # Report it at the statement's line in the whole rendered script.
        lines = mapping[script]["lines"]
        v = dict(v, line=next((n for n, w in enumerate(lines) if w and w["item"] == d["item"]), 0))
        findings.append((script, v, item, {"src": d["src"], "line": d["line"]}))

    used = set()
    bad = []
    for script, v, item, w in findings:
        stmt = squash(item["text"]) if item else ""
        match = None
        for e in ignores:
            if e["rule"] != v["rule_name"]:
                continue
            if not fnmatch.fnmatch(script, e.get("scripts", "*")):
                continue
            if "statement" in e and not re.search(e["statement"], stmt):
                continue
            if "message" in e and not re.search(e["message"], v["message"]):
                continue
            if "guarded" in e and bool(item and item.get("guarded")) != e["guarded"]:
                continue
            match = e
            break
        if match:
            used.add(match["_n"])
        else:
            bad.append((script, v, item, w, stmt))

    for script, v, item, w, stmt in bad:
        where = f"{w['src']}:{w['line']}" if w else f"{script}:{v['line'] + 1}"
        print(f"{where}: {v['level'].lower()}: {v['rule_name']}: {v['message']}")
        if stmt:
            print(f"    {stmt[:200]}")
        print(f"    (line {v['line'] + 1} of: scripts/render-sql.py {mapping[script]['source']}"
              f"{'; help: ' + v['help'] if v.get('help') else ''})")
    stale = [e for e in ignores if e["_n"] not in used]
    for e in stale:
        print(f"{IGNORES.relative_to(ROOT)}: entry {e['_n']} ({e['rule']}: {e['reason']}) matches no finding any more: delete it")
    print(f"squawk: {len(findings)} findings in {len(mapping)} rendered scripts, "
          f"{len(findings) - len(bad)} justified by {IGNORES.relative_to(ROOT)}, {len(bad)} not"
          + (f"; {len(stale)} stale ignore entries" if stale else ""))
    return 1 if bad or stale else 0


if __name__ == "__main__":
    sys.exit(main())
