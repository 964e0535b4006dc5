#!/usr/bin/env python3
"""Renders the migration and rollback scripts into the plain SQL the server
runs, so that squawk (which cannot parse psql) can lint it.

  scripts/render-sql.py FILE...                    print the rendering of these scripts
  scripts/render-sql.py --out DIR                  render every sql/migrations/*.sql and
                                                   sql/rollback/*.sql into DIR (see below)
  scripts/render-sql.py --out DIR --verify CONNINFO
                                                   also check the registry and every rendered
                                                   template against hr_render() in a database
                                                   where the extension is installed

For each script, as psql and the server would run it for a built-in
migration, with the extension in schema `extensions` (--schema):
  * \\ir includes are inlined; \\set, \\gset and the psql variables (:tbl,
    :'migration', :"hr_schema", ...) are substituted with the values they
    have for that migration, taken from the registry rows inserted by
    src/sql/operations.sql (hr_migration_registry);
  * every branch of \\if/\\elif/\\else is rendered (the conditions are data
    only known at run time); \\echo becomes a comment;
  * a query ending in \\gexec is followed by the statement it generates;
  * CALL hr_ddl(migration, $ddl$TEMPLATE$ddl$ [, skip_when => ...]) becomes
    what hr_ddl runs: SET lock_timeout = '1s' (hr_ddl's per-attempt
    lock_timeout, hr_migrations.ddl_lock_timeout), the template rendered
    like hr_render() does, then SET lock_timeout = 0 (hr_ddl's setting is
    transaction-local: the preamble's is back after its COMMIT). No
    BEGIN/COMMIT around it, although hr_ddl runs a step in one transaction:
    squawk assumes a transaction makes any statement re-runnable, and
    every step must also be re-runnable after it committed (the scripts'
    "run the file again"). Steps with skip_when are marked guarded in
    map.json. CALL hr_drop_legacy(...) becomes the hr_ddl steps it runs
    (one per legacy trigger and policy);
  * every other meta-command is dropped.
An unknown meta-command, psql variable or \\gexec generator is an error:
teach this script its meaning rather than let a statement go unlinted.

--out DIR writes DIR/migrations/*.sql and DIR/rollback/*.sql; DIR/direct/,
one file per statement the scripts run directly (outside hr_ddl, so under
the preamble's lock_timeout 0), with no timeout setting: squawk judges the
lock each of them takes on its own (scripts/lint-squawk.py); and
DIR/map.json, which maps every rendered line back to its source line.
"""
import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS_SQL = ROOT / "src/sql/operations.sql"

# pg_get_keywords() WHERE catcode <> 'U' (PostgreSQL 15): quote_ident()
# quotes these even when they are lower case.
RESERVED = set("""
all analyse analyze and any array as asc asymmetric authorization between bigint binary bit boolean
both case cast char character check coalesce collate collation column concurrently constraint
create cross current_catalog current_date current_role current_schema current_time
current_timestamp current_user dec decimal default deferrable desc distinct do else end except
exists extract false fetch float for foreign freeze from full grant greatest group grouping having
ilike in initially inner inout int integer intersect interval into is isnull join lateral leading
least left like limit localtime localtimestamp national natural nchar none normalize not notnull
null nullif numeric offset on only or order out outer overlaps overlay placing position precision
primary real references returning right row select session_user setof similar smallint some
substring symmetric table tablesample then time timestamp to trailing treat trim true union unique
user using values varchar variadic verbose when where window with xmlattributes xmlconcat
xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot xmlserialize xmltable
""".split())

# What hr_ddl sets for each attempt: hr_migrations.ddl_lock_timeout, 1 s by default.
DDL_LOCK_TIMEOUT = "1s"

# psql variables whose value the scripts \gset from data only known at run
# time: they may only steer \if or be \echoed, never reach SQL text.
RUNTIME_VARIABLES = {
    "has_hash", "refuse", "has_credentials", "left_linked", "non_envelopes", "has_non_envelopes",
    "hr_search_path",
}

# What a query ending in \gexec generates, by the format() string it uses:
# (pattern of that string, the value its %s stands for).
GEXEC_GENERATORS = [
    # (an index of the migration's table; which one does not matter to squawk)
    (r"DROP INDEX CONCURRENTLY (IF EXISTS )?%s",
     lambda v: qualified(v["tbl_schema"], v.get("index_name") or v["tenant_index"])),
]


class RenderError(Exception):
    pass


def quote_ident(name):
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name) and name not in RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def qualified(schema, name):
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def quote_literal(value):
    return "'" + value.replace("'", "''") + "'"


# ---------------------------------------------------------------------------
# The registry, as src/sql/operations.sql inserts it.

@dataclass
class Entry:
    migration: str
    position: int
    kind: str
    table_schema: str
    table_name: str
    default_batch_size: int
    objects: dict


def _sql_values(text):
    """Parses the literals of one VALUES tuple list: strings, numbers, booleans."""
    tuples, row, i = [], None, 0
    while i < len(text):
        c = text[i]
        if c == "(" and row is None:
            row = []
            i += 1
        elif c == ")" and row is not None:
            tuples.append(row)
            row = None
            i += 1
        elif c == "'" and row is not None:
            j, buf = i + 1, []
            while True:
                k = text.index("'", j)
                buf.append(text[j:k])
                if text.startswith("''", k):
                    buf.append("'")
                    j = k + 2
                else:
                    i = k + 1
                    break
            row.append("".join(buf))
        elif row is not None and (m := re.match(r"-?\d+|true|false|NULL", text[i:], re.I)):
            tok = m.group(0)
            row.append({"true": True, "false": False, "null": None}.get(tok.lower(), None)
                       if not tok.lstrip("-").isdigit() else int(tok))
            i += len(tok)
        elif c in " \t\r\n,":
            i += 1
        elif c == ";" and row is None:
            break
        else:
            raise RenderError(f"{OPERATIONS_SQL}: cannot parse the registry rows near {text[i:i + 40]!r}")
    return tuples


def load_registry(path=OPERATIONS_SQL):
    sql = Path(path).read_text()
    m = re.search(r"INSERT INTO hr_migrations\.hr_migration_registry \(([^)]*)\) VALUES\s*(.*?\));\s*$", sql, re.S | re.M)
    if not m:
        raise RenderError(f"{path}: no INSERT INTO hr_migration_registry (...) VALUES found")
    columns = [c.strip() for c in m.group(1).split(",")]
    entries = {}
    for values in _sql_values(m.group(2) + ";"):
        row = dict(zip(columns, values))
        e = Entry(
            migration=row["migration"], position=row["position"], kind=row["kind"],
            table_schema=row.get("table_schema", "public"), table_name=row["table_name"],
            default_batch_size=row["default_batch_size"], objects=json.loads(row.get("objects", "{}")),
        )
        entries[e.migration] = e
    if not entries:
        raise RenderError(f"{path}: the registry INSERT has no rows")
    return entries


def hr_render(entry, template, ext):
    """hr_render(migration, template) of src/sql/operations.sql."""
    if template is None:
        return None
    out = template.replace("{table}", qualified(entry.table_schema, entry.table_name))
    out = out.replace("{table_schema}", quote_ident(entry.table_schema))
    out = out.replace("{ext}", "hr_migrations")  # the extension's own schema, whatever @extschema@ is
    for k, v in entry.objects.items():
        if not isinstance(v, str):
            continue
        if k in ("credentials_table", "log_table"):
            out = out.replace("{" + k + "}", qualified(entry.table_schema, v))
        else:
            out = out.replace("{" + k + "}", quote_ident(v))
    m = re.search(r"\{[a-z_]+\}", out)
    if m:
        raise RenderError(f"DDL template of {entry.migration} names {m.group(0)}, which its registry entry does not define")
    return out


def variables(entry, ext):
    """The psql variables the preamble and the kinds' scripts \\gset, for one migration."""
    o = entry.objects
    v = {
        "migration": entry.migration,
        "hr_schema": ext,
        "tbl": qualified(entry.table_schema, entry.table_name),
        "tbl_schema": entry.table_schema,
        "default_batch_size": str(entry.default_batch_size),
        # the caller's search_path, saved by the preamble, restored by the epilogue
        "hr_saved_search_path": '"$user", public, extensions',
    }
    for var, key in (("fk", "fk"), ("index_name", "index"), ("unique_index", "unique_index"),
                     ("credentials_org_index", "credentials_org_index"), ("tenant_index", "tenant_index"),
                     ("envelope_check", "envelope_check"),
                     ("hash_check", "hash_check")):
        if isinstance(o.get(key), str):
            v[var] = o[key]
    if isinstance(o.get("credentials_table"), str):
        v["creds"] = hr_render(entry, "{credentials_table}", ext)
    if isinstance(o.get("log_table"), str):
        v["log_table"] = hr_render(entry, "{log_table}", ext)
    return v


# ---------------------------------------------------------------------------
# A psql script, lexed the way psql does: statements end at an unquoted ';',
# meta-commands start at an unquoted backslash and run to the end of the line,
# variables are substituted outside quotes and comments.

@dataclass
class Stmt:
    text: str          # as the server receives it (variables substituted)
    raw: str           # as written
    line: int          # source line of its first character


@dataclass
class Meta:
    cmd: str
    args: str
    line: int
    query: Stmt = None  # the query buffer a \g, \gset or \gexec sends


@dataclass
class Comment:
    text: str
    line: int


DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
VARIABLE = re.compile(r":(?:'([A-Za-z0-9_]+)'|\"([A-Za-z0-9_]+)\"|([A-Za-z0-9_]+))")


def lex(text, substitute):
    """Yields Stmt, Meta and Comment items. substitute(kind, name, line) returns
    the replacement of :name (kind ''), :'name' (kind "'") or :"name" (kind '"')."""
    i, n, line = 0, len(text), 1
    raw, sub, start = [], [], None

    def take(s, s_sub=None):
        nonlocal start
        if start is None and s.strip():
            start = line
        raw.append(s)
        sub.append(s if s_sub is None else s_sub)

    def flush():
        nonlocal raw, sub, start
        st = Stmt("".join(sub).strip(), "".join(raw).strip(), start)
        raw, sub, start = [], [], None
        return st

    while i < n:
        c = text[i]
        empty = start is None
        if c == "\n":
            take(c)
            line += 1
            i += 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            if empty:
                yield Comment(text[i:j], line)
            else:
                take(text[i:j])
            i = j
        elif text.startswith("/*", i):
            depth, j = 0, i
            while j < n:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                    if depth == 0:
                        break
                else:
                    j += 1
            take(text[i:j])
            line += text.count("\n", i, j)
            i = j
        elif c in "'\"":
            j = i + 1
            while True:
                k = text.find(c, j)
                if k < 0:
                    raise RenderError(f"line {line}: unterminated {c}")
                if text.startswith(c * 2, k):
                    j = k + 2
                else:
                    break
            take(text[i:k + 1])
            line += text.count("\n", i, k + 1)
            i = k + 1
        elif c == "$" and (m := DOLLAR.match(text, i)) and not (i and re.match(r"[A-Za-z0-9_$]", text[i - 1])):
            tag = m.group(0)
            k = text.find(tag, m.end())
            if k < 0:
                raise RenderError(f"line {line}: unterminated {tag}")
            take(text[i:k + len(tag)])
            line += text.count("\n", i, k + len(tag))
            i = k + len(tag)
        elif text.startswith("::", i):
            take("::")
            i += 2
        elif c == ":" and (m := VARIABLE.match(text, i)):
            kind = "'" if m.group(1) else '"' if m.group(2) else ""
            take(m.group(0), substitute(kind, m.group(1) or m.group(2) or m.group(3), line))
            i = m.end()
        elif c == ";":
            take(c)
            i += 1
            st = flush()
            yield st
        elif c == "\\":
            j = text.find("\n", i)
            j = n if j < 0 else j
            m = re.match(r"\\([A-Za-z?!]+)\s*(.*)", text[i:j])
            if not m:
                raise RenderError(f"line {line}: cannot read the meta-command {text[i:j]!r}")
            cmd, args = m.group(1), m.group(2).strip()
            query = None
            if cmd in ("g", "gset", "gexec"):
                if empty:
                    raise RenderError(f"line {line}: \\{cmd} with an empty query buffer")
                query = flush()
            elif not empty:
                raise RenderError(f"line {line}: \\{cmd} in the middle of a statement")
            yield Meta(cmd, args, line, query)
            i = j
        else:
            take(c)
            i += 1
    if start is not None:
        raise RenderError(f"line {start}: statement without a terminating ';'")


def split_statements(sql):
    """Splits plain SQL (a rendered hr_ddl template) into statements; no psql
    variables inside. Returns (line offset, text) pairs; the last statement may
    lack its ';'."""
    def no_vars(kind, name, line):
        raise RenderError(f"psql variable :{name} inside a DDL template")
    items = []
    body = sql if sql.rstrip().endswith(";") else sql.rstrip() + ";"
    for it in lex(body, no_vars):
        if isinstance(it, Stmt):
            items.append((it.line - 1, it.text))
        elif isinstance(it, Meta):
            raise RenderError(f"meta-command \\{it.cmd} inside a DDL template")
    return items


def parse_call(text):
    """CALL name(args): returns (qualified name, [(arg name or None, value)]),
    each value a decoded string literal or the argument's text."""
    m = re.match(r"\s*CALL\s+((?:\"[^\"]+\"|[A-Za-z_][A-Za-z0-9_]*)\.)?([A-Za-z_][A-Za-z0-9_]*)\s*\(", text, re.I)
    if not m:
        return None, None
    i, n, depth = m.end(), len(text), 0
    args, cur = [], []
    while i < n:
        c = text[i]
        if c == "'":
            k = i + 1
            while True:
                k = text.index("'", k)
                if text.startswith("''", k):
                    k += 2
                else:
                    break
            cur.append(text[i:k + 1])
            i = k + 1
        elif c == "$" and (d := DOLLAR.match(text, i)):
            k = text.index(d.group(0), d.end())
            cur.append(text[i:k + len(d.group(0))])
            i = k + len(d.group(0))
        elif c == "(":
            depth += 1
            cur.append(c)
            i += 1
        elif c == ")" and depth:
            depth -= 1
            cur.append(c)
            i += 1
        elif c in ",)" and not depth:
            args.append("".join(cur).strip())
            cur = []
            i += 1
            if c == ")":
                break
        else:
            cur.append(c)
            i += 1
    out = []
    for a in args:
        name = None
        nm = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\s*=>\s*(.*)", a, re.S)
        if nm:
            name, a = nm.group(1), nm.group(2).strip()
        if (d := DOLLAR.match(a)) and a.endswith(d.group(0)) and len(a) >= 2 * len(d.group(0)):
            value = a[len(d.group(0)):-len(d.group(0))]
        elif a.startswith("'") and a.endswith("'"):
            value = a[1:-1].replace("''", "'")
        else:
            value = a
        out.append((name, value))
    return m.group(2), out


# ---------------------------------------------------------------------------
# Rendering.

@dataclass
class Out:
    """One rendered item: a statement (kind 'direct', 'hr_ddl', 'gexec' or
    'tx' for hr_ddl's own lock_timeout settings) or a comment ('comment')."""
    kind: str
    text: str
    src: str
    line: int
    guarded: bool = False  # an hr_ddl step with skip_when: skipped once its result exists


@dataclass
class Script:
    path: Path
    ext: str
    registry: dict
    items: list = field(default_factory=list)
    vars: dict = field(default_factory=dict)
    entry: Entry = None
    templates: list = field(default_factory=list)  # (migration, template, rendered) for --verify

    def rel(self, p):
        try:
            return str(Path(p).resolve().relative_to(ROOT))
        except ValueError:
            return str(p)

    def substitute(self, src):
        def sub(kind, name, line):
            if name not in self.vars:
                if name in RUNTIME_VARIABLES:
                    raise RenderError(f"{src}:{line}: :{name} is only known at run time and cannot be rendered")
                raise RenderError(f"{src}:{line}: unknown psql variable :{name} (teach scripts/render-sql.py its value)")
            v = self.vars[name]
            if kind == "'":
                return quote_literal(v)
            if kind == '"':
                return '"' + v.replace('"', '""') + '"'
            return v
        return sub

    def set_migration(self, key, src, line):
        if key not in self.registry:
            raise RenderError(f"{src}:{line}: migration {key} is not in the registry of {self.rel(OPERATIONS_SQL)}")
        self.entry = self.registry[key]
        self.vars.update(variables(self.entry, self.ext))

    def render(self):
        self.render_file(self.path)
        return self

    def render_file(self, path):
        src = self.rel(path)
        text = Path(path).read_text()
        for it in lex(text, self.substitute(src)):
            if isinstance(it, Comment):
                self.items.append(Out("comment", it.text, src, it.line))
            elif isinstance(it, Stmt):
                self.statement(it, src)
            else:
                self.meta(it, src, path)

    def meta(self, m, src, path):
        cmd, args = m.cmd, m.args
        if cmd == "set":
            parts = args.split(None, 1)
            if not parts:
                raise RenderError(f"{src}:{m.line}: \\set without a name")
            name, value = parts[0], parts[1] if len(parts) > 1 else ""
            if name == "migration":
                self.set_migration(value, src, m.line)
            self.vars[name] = value
        elif cmd == "ir":
            target = (Path(path).parent / args).resolve()
            self.items.append(Out("comment", f"-- psql \\ir {args} ({self.rel(target)})", src, m.line))
            self.render_file(target)
            self.items.append(Out("comment", f"-- end of {self.rel(target)}", src, m.line))
        elif cmd in ("if", "elif", "else", "endif"):
            self.items.append(Out("comment", f"-- psql \\{cmd} {args}".rstrip()
                                  + (" (every branch is rendered)" if cmd == "if" else ""), src, m.line))
        elif cmd == "echo":
            self.items.append(Out("comment", f"-- psql \\echo {args}", src, m.line))
        elif cmd == "gset":
            self.gset(m, src)
        elif cmd == "gexec":
            self.gexec(m, src)
        else:
            raise RenderError(f"{src}:{m.line}: meta-command \\{cmd} unknown to scripts/render-sql.py")

    def gset(self, m, src):
        q = m.query
        self.items.append(Out("direct", q.text, src, q.line))
        if m.args:  # \gset prefix_: nothing of it is used by the scripts' SQL
            return
        for alias in re.findall(r"\bAS\s+([A-Za-z_][A-Za-z0-9_]*)", q.raw, re.I):
            if alias not in self.vars and alias not in RUNTIME_VARIABLES:
                raise RenderError(f"{src}:{q.line}: \\gset sets :{alias}, whose value scripts/render-sql.py does not know")

    def gexec(self, m, src):
        q = m.query
        self.items.append(Out("direct", q.text, src, q.line))
        fm = re.search(r"format\(\s*'((?:[^']|'')*)'", q.raw)
        fmt = fm.group(1).replace("''", "'") if fm else None
        gen = next((g for pat, g in GEXEC_GENERATORS if fmt and re.fullmatch(pat, fmt)), None)
        if gen is None:
            raise RenderError(f"{src}:{q.line}: \\gexec generator unknown to scripts/render-sql.py: {q.raw[:80]!r}")
        stmt = fmt.replace("%s", gen(self.vars))
        self.items.append(Out("comment", "-- generated by the \\gexec above (when its query returns a row):", src, q.line))
        self.items.append(Out("gexec", stmt, src, q.line))

    def statement(self, st, src):
        name, args = parse_call(st.text)
        if name == "hr_ddl":
            self.hr_ddl(st, args, src)
        elif name == "hr_drop_legacy":
            self.hr_drop_legacy(st, src)
        else:
            self.items.append(Out("direct", st.text, src, st.line))

    def migration_arg(self, key, st, src):
        if key not in self.registry:
            raise RenderError(f"{src}:{st.line}: cannot tell which migration {key!r} is")
        return self.registry[key]

    def hr_ddl(self, st, args, src):
        positional = [v for k, v in args if k is None]
        named = {k: v for k, v in args if k is not None}
        if len(positional) < 2 or set(named) - {"skip_when", "ddl", "migration"}:
            raise RenderError(f"{src}:{st.line}: cannot read this hr_ddl call")
        # The migration argument arrives substituted (:'migration' -> 'key').
        entry = self.migration_arg(positional[0], st, src)
        template = positional[1]
        skip = named.get("skip_when", positional[2] if len(positional) > 2 else None)
        rendered = hr_render(entry, template, self.ext)
        self.templates.append((entry.migration, template, rendered))
        if skip is not None:
            self.templates.append((entry.migration, skip, hr_render(entry, skip, self.ext)))
        # Where the template starts in the source, to map each statement back.
        tstart = st.line + st.raw[:st.raw.find(template)].count("\n") if template in st.raw else st.line
        self.ddl_block(f"CALL hr_ddl({quote_literal(entry.migration)}, ...)", rendered, src, tstart,
                       hr_render(entry, skip, self.ext) if skip is not None else None, st.line)

    def ddl_block(self, what, rendered, src, tstart, skip, line):
        self.items.append(Out("comment", f"-- {what}: one transaction, each attempt under lock_timeout = "
                              f"hr_migrations.ddl_lock_timeout ({DDL_LOCK_TIMEOUT} by default), retried with backoff", src, line))
        if skip is not None:
            self.items.append(Out("comment", "-- skipped when: " + " ".join(skip.split()), src, line))
        self.items.append(Out("tx", f"SET lock_timeout = '{DDL_LOCK_TIMEOUT}';", src, line))
        for offset, text in split_statements(rendered):
            self.items.append(Out("hr_ddl", text, src, tstart + offset, guarded=skip is not None))
        self.items.append(Out("comment", "-- (hr_ddl COMMITs; its lock_timeout was transaction-local: back to the preamble's)", src, line))
        self.items.append(Out("tx", "SET lock_timeout = 0;", src, line))

    def hr_drop_legacy(self, st, src):
        """hr_drop_legacy(migration): one hr_ddl per legacy trigger and policy, when present."""
        _, args = parse_call(st.text)
        entry = self.migration_arg(args[0][1] if args else None, st, src)
        tbl = qualified(entry.table_schema, entry.table_name)
        steps = [f"DROP TRIGGER {quote_ident(t)} ON {tbl}" for t in entry.objects.get("legacy_triggers", [])]
        steps += [f"DROP POLICY {quote_ident(p)} ON {tbl}" for p in entry.objects.get("legacy_policies", [])]
        self.items.append(Out("comment", f"-- CALL hr_drop_legacy({quote_literal(entry.migration)}): "
                              "one hr_ddl step per legacy trigger and policy, each only when present", src, st.line))
        for s in steps:
            self.ddl_block(f"hr_drop_legacy -> hr_ddl({quote_literal(entry.migration)}, ...)", s, src, st.line, None, st.line)

    def write(self):
        """The rendered SQL, and per output line (1-based) its source and item index."""
        lines, where = [], []
        head = [f"-- Rendered by scripts/render-sql.py from {self.rel(self.path)} for squawk: what the server runs",
                f"-- for migration {self.entry.migration if self.entry else '?'} with the extension in schema {self.ext}. Do not edit."]
        for h in head:
            lines.append(h)
            where.append(None)
        for idx, it in enumerate(self.items):
            text = it.text
            if it.kind in ("direct", "hr_ddl", "gexec"):
                lines.append(f"-- @ {it.src}:{it.line}")
                where.append(None)
                if not text.rstrip().endswith(";"):
                    text = text.rstrip() + ";"
            for k, ln in enumerate(text.split("\n")):
                lines.append(ln)
                where.append({"src": it.src, "line": it.line + (k if it.kind in ("direct", "hr_ddl", "gexec") else 0),
                              "item": idx, "kind": it.kind})
        return "\n".join(lines) + "\n", where


# ---------------------------------------------------------------------------

def scripts():
    return sorted((ROOT / "sql/migrations").glob("*.sql")) + sorted((ROOT / "sql/rollback").glob("*.sql"))


def verify(conninfo, registry, rendered_scripts, ext):
    """Checks the parsed registry and every rendered template against the database."""
    problems = []
    tag = "tpl_render_check"
    pairs = sorted({(m, t) for s in rendered_scripts for (m, t, _) in s.templates})
    ours = {(m, t): r for s in rendered_scripts for (m, t, r) in s.templates}
    for m, t in pairs:
        if f"${tag}$" in t:
            raise RenderError(f"a template contains ${tag}$")
    values = ",\n".join(f"({quote_literal(m)}, ${tag}${t}${tag}$, {i})" for i, (m, t) in enumerate(pairs))
    q = f"""SELECT json_build_object(
  'renders', (SELECT json_agg(hr_migrations.hr_render(m, t) ORDER BY i) FROM (VALUES {values}) v(m, t, i)),
  'registry', (SELECT json_agg(json_build_object('migration', r.migration, 'position', r.position, 'kind', r.kind,
        'table_schema', r.table_schema, 'table_name', r.table_name, 'default_batch_size', r.default_batch_size,
        'objects', r.objects) ORDER BY r.position)
     FROM hr_migrations.hr_migration_registry r WHERE r.builtin))"""
    res = subprocess.run(["psql", conninfo, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"], input=q,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RenderError(f"--verify: psql failed: {res.stderr.strip()}")
    got = json.loads(res.stdout)
    for (m, t), r in zip(pairs, got["renders"] or []):
        if ours[(m, t)] != r:
            problems.append(f"hr_render({m!r}, ...) differs from scripts/render-sql.py:\n  db:   {r!r}\n  ours: {ours[(m, t)]!r}")
    db = {r["migration"]: r for r in got["registry"] or []}
    if set(db) != set(registry):
        problems.append(f"built-in migrations differ: database {sorted(db)}, {OPERATIONS_SQL.name} {sorted(registry)}")
    for key, e in registry.items():
        r = db.get(key)
        if r and (r["position"], r["kind"], r["table_schema"], r["table_name"], r["default_batch_size"], r["objects"]) != \
                (e.position, e.kind, e.table_schema, e.table_name, e.default_batch_size, e.objects):
            problems.append(f"registry row {key} differs between the database and {OPERATIONS_SQL.name}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="scripts to print (default with --out: every migration and rollback)")
    ap.add_argument("--out", help="write the renderings, the direct-statement files and map.json here")
    ap.add_argument("--schema", default="extensions", help="schema of the extension (default: extensions)")
    ap.add_argument("--verify", metavar="CONNINFO", help="check against hr_render() and the registry in this database")
    a = ap.parse_args()
    if not a.files and not a.out:
        ap.error("name scripts to print, or --out DIR")
    try:
        registry = load_registry()
        paths = [Path(f) for f in a.files] or scripts()
        rendered = [Script(p, a.schema, registry).render() for p in paths]
        if a.out:
            out = Path(a.out)
            mapping = {}
            for s in rendered:
                rel = Path(s.rel(s.path))
                target = out / rel.relative_to("sql") if rel.parts[0] == "sql" else out / rel.name
                target.parent.mkdir(parents=True, exist_ok=True)
                text, where = s.write()
                target.write_text(text)
                key = str(target.relative_to(out))
                mapping[key] = {"source": s.rel(s.path), "lines": where, "direct": {}}
                # One file per statement run directly, for the lock check.
                ddir = out / "direct" / rel.with_suffix("").relative_to("sql" if rel.parts[0] == "sql" else ".")
                ddir.mkdir(parents=True, exist_ok=True)
                n = 0
                for idx, it in enumerate(s.items):
                    if it.kind in ("direct", "gexec"):
                        n += 1
                        f = ddir / f"{n:03d}.sql"
                        f.write_text(f"-- @ {it.src}:{it.line}\n{it.text.rstrip().rstrip(';')};\n")
                        mapping[key]["direct"][str(f.relative_to(out))] = {"src": it.src, "line": it.line, "item": idx}
                mapping[key]["items"] = [{"kind": it.kind, "text": it.text, "src": it.src, "line": it.line,
                                          "guarded": it.guarded} for it in s.items]
            (out / "map.json").write_text(json.dumps(mapping, indent=1))
        else:
            for s in rendered:
                sys.stdout.write(s.write()[0])
        if a.verify:
            problems = verify(a.verify, registry, rendered, a.schema)
            for p in problems:
                print(f"render-sql: {p}", file=sys.stderr)
            if problems:
                return 1
            print(f"render-sql: {sum(len(s.templates) for s in rendered)} rendered templates and "
                  f"{len(registry)} registry rows agree with the database")
    except RenderError as e:
        print(f"render-sql: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
