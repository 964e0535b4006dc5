#!/usr/bin/env python3
"""Runs `pgrls lint` with lint/pgrls.toml on a database and fails on every
finding its allowlists do not justify, on an allowlist entry without its
one-line reason (a `# ...` comment on the entry's line), and on an entry
that matches no finding any more (delete it once fixed).

  scripts/lint-pgrls.py DATABASE_URL [--pgrls PATH]
"""
import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "lint/pgrls.toml"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("database_url")
    ap.add_argument("--pgrls", default=str(ROOT / ".venv/bin/pgrls"))
    a = ap.parse_args()
    rel = CONFIG.relative_to(ROOT)
    text = CONFIG.read_text()
    config = tomllib.loads(text)
    schemas = ",".join(config.get("database", {}).get("schemas", ["public"]))
    problems = []

    # Every allowlist entry on its own line, with its reason.
    allow = []
    for rule, opts in config.get("lint", {}).get("rules", {}).items():
        for name in opts.get("allowlist", []):
            allow.append((rule.upper(), name))
            lines = [ln for ln in text.splitlines() if re.match(r'\s*"' + re.escape(name) + r'"\s*,?\s*#', ln)]
            if not any(re.search(r"#\s*\S", ln) for ln in lines):
                problems.append(f"{rel}: [lint.rules.{rule}] allowlist entry {name!r} has no '# reason' on its line")
    for rule in config.get("lint", {}).get("disable", []):
        if not re.search(r'"' + re.escape(rule) + r'"\s*,?\s*#\s*\S', text):
            problems.append(f"{rel}: disabled rule {rule} has no '# reason' on its line")

    # The verdict, with the configuration.
    res = subprocess.run([a.pgrls, "lint", "--config", str(CONFIG), "--database-url", a.database_url],
                         capture_output=True, text=True)
    sys.stdout.write(res.stdout)
    if res.returncode not in (0, 1):
        sys.stderr.write(res.stderr)
        print(f"pgrls: failed to run (exit {res.returncode})")
        return 1
    failed = res.returncode != 0

    # Stale entries: run again with no configuration at all.
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as empty:
        raw = subprocess.run([a.pgrls, "lint", "--config", empty.name, "--database-url", a.database_url,
                              "--schemas", schemas, "--fail-on", "info", "--format", "json"],
                             capture_output=True, text=True)
    try:
        found = {(v["rule_id"].upper(), v["location"]) for v in json.loads(raw.stdout)["violations"]}
    except (json.JSONDecodeError, KeyError):
        print(f"pgrls: cannot read its JSON report: {raw.stdout[:300]!r} {raw.stderr[:300]!r}")
        return 1
    for rule, name in allow:
        if (rule, name) not in found:
            problems.append(f"{rel}: [lint.rules.{rule}] allowlist entry {name!r} matches no finding any more: delete it")

    for p in problems:
        print(p)
    print(f"pgrls: {len(found)} findings on schemas {schemas}, {len(allow)} allowlist entries in {rel}; "
          + ("FAILED" if failed or problems else "every finding justified"))
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
