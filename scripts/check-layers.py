#!/usr/bin/env python3
"""Keeps the shape of src/: layers that point one way, and no import cycles between files.

Layers, top to bottom (a module may import its own layer and the ones below it):

    edge (server, cli, app) -> executor -> db -> trigger -> forge -> config

Leaf modules (telemetry, failpoint, token, footprint) may be imported from anywhere.

Reported, one line per import as `file:line: what`:
  - layers: a module that imports one above it;
  - cycles: files that import each other, directly or through others. An edge between a
    file and its own ancestor (a child using its parent `mod.rs`, a parent re-exporting
    its child) is the ordinary shape of a Rust module tree and is not counted; cycles
    between top-level modules are reported too;
  - db leaks (a separate group): `sea_orm::Value`, `sea_orm::DbErr`, `update_owned` or
    `.connection()` outside src/db/. `--allow-db-leaks` skips this group.

Test modules (`#[cfg(test)] mod ... { }`) and comments are not read. Exit status 1 when
anything is reported. Python 3 standard library only.
"""

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

LAYERS = {"config": 0, "forge": 1, "trigger": 2, "db": 3, "executor": 4, "server": 5, "cli": 5, "app": 5}
LEAVES = {"telemetry", "failpoint", "token", "footprint"}
DB_LEAKS = ["sea_orm::Value", "sea_orm::DbErr", "update_owned", ".connection()"]

PATH_RE = re.compile(r"\b(?:crate|super|self)(?:\s*::\s*(?:super|self|[A-Za-z_]\w*))+")


def strip_code(text):
    """The text with comments, string and char literals blanked, line breaks kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        two = text[i : i + 2]
        if two == "//":
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif two == "/*":
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif text[i] == '"' or (text[i] == "r" and re.match(r'r#*"', text[i:]) and not _ident_before(text, i)):
            end = _string_end(text, i)
            out.append('"' + re.sub(r"[^\n]", " ", text[i + 1 : end - 1]) + '"')
            i = end
        elif text[i] == "'" and re.match(r"'(\\.|\\u\{[0-9a-fA-F]+\}|[^\\'])'", text[i:]):
            m = re.match(r"'(\\.|\\u\{[0-9a-fA-F]+\}|[^\\'])'", text[i:])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _ident_before(text, i):
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")


def _string_end(text, i):
    if text[i] == "r":
        hashes = re.match(r"r(#*)\"", text[i:]).group(1)
        close = '"' + hashes
        start = i + 2 + len(hashes)
        end = text.find(close, start)
        return len(text) if end < 0 else end + len(close)
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == '"':
            return j + 1
        j += 1
    return len(text)


def blank_test_modules(code):
    """Blanks `#[cfg(test)]` modules (their `mod name { ... }` bodies)."""
    for m in reversed(list(re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", code))):
        depth, j = 0, m.end() - 1
        while j < len(code):
            if code[j] == "{":
                depth += 1
            elif code[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        code = code[: m.start()] + re.sub(r"[^\n]", " ", code[m.start() : j + 1]) + code[j + 1 :]
    return code


def expand_use_tree(tree):
    """`a::{b, c::{d, self}}` -> ['a::b', 'a::c::d', 'a::c']."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+\w+", "", tree))
    if "{" not in tree:
        return [re.sub(r"::self$", "", tree)]
    prefix, rest = tree.split("{", 1)
    body = rest[: rest.rfind("}")]
    parts, depth, current = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        current += ch
    parts.append(current)
    paths = []
    for part in filter(None, parts):
        for sub in expand_use_tree(part):
            paths.append(prefix + sub if sub != "self" else prefix.rstrip(":"))
    return paths


class Source:
    def __init__(self, root, path):
        self.path = path
        self.rel = path.relative_to(root.parent)
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "mod":
            parts.pop()
        if parts in (["lib"], ["main"]):
            parts = []
        self.module = tuple(parts)
        self.is_dir_module = path.name in ("mod.rs", "lib.rs", "main.rs")
        self.text = path.read_text(encoding="utf-8")
        self.code = blank_test_modules(strip_code(self.text))
        self.children = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", self.code, re.M))

    def parent_module(self):
        return self.module[:-1]

    def references(self):
        """(line, module path as a tuple) for every path this file names."""
        refs = []
        for m in re.finditer(r"\buse\s+([^;]+);", self.code):
            line = self.code.count("\n", 0, m.start()) + 1
            for path in expand_use_tree(m.group(1)):
                refs.append((line, path))
        without_uses = re.sub(r"\buse\s+[^;]+;", lambda m: re.sub(r"[^\n]", " ", m.group(0)), self.code)
        for m in PATH_RE.finditer(without_uses):
            line = without_uses.count("\n", 0, m.start()) + 1
            refs.append((line, re.sub(r"\s+", "", m.group(0))))
        resolved = []
        for line, path in refs:
            absolute = self.resolve(path.split("::"))
            if absolute is not None:
                resolved.append((line, path, absolute))
        return resolved

    def resolve(self, segments):
        """The absolute path (tuple) of `segments`, or None for another crate."""
        here = list(self.module)
        if segments[0] == "crate":
            return tuple(segments[1:])
        if segments[0] in ("super", "self"):
            base = here
            while segments and segments[0] in ("super", "self"):
                if segments[0] == "super":
                    base = base[:-1]
                segments = segments[1:]
            return tuple(base + segments)
        if segments[0] in self.children:
            return tuple(here + segments)
        return None


def owner(files_by_module, path):
    """The file whose module is the longest prefix of `path`."""
    for n in range(len(path), 0, -1):
        found = files_by_module.get(path[:n])
        if found:
            return found
    return None


def is_ancestor(a, b):
    return len(a) < len(b) and b[: len(a)] == a


def strongly_connected(graph):
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check(root):
    sources = [Source(root, p) for p in sorted(root.rglob("*.rs"))]
    files_by_module = {s.module: s for s in sources if s.module}
    layer_problems, edges, top_edges = [], defaultdict(dict), defaultdict(dict)
    for source in sources:
        if not source.module:
            continue
        top = source.module[0]
        if len(source.module) == 1 and top not in LAYERS and top not in LEAVES:
            layer_problems.append(f"{source.rel}:1: the module {top} has no layer: add it to LAYERS or LEAVES")
        for line, written, target in source.references():
            if not target:
                continue
            other = target[0]
            if other != top and other not in LEAVES and top in LAYERS and other in LAYERS:
                if LAYERS[other] > LAYERS[top]:
                    layer_problems.append(f"{source.rel}:{line}: {top} imports {written} ({other} is a higher layer)")
            if other != top and (other,) in files_by_module:
                top_edges[top].setdefault(other, (source, line, written))
            target_file = owner(files_by_module, target)
            if target_file is None or target_file is source:
                continue
            if is_ancestor(target_file.module, source.module) or is_ancestor(source.module, target_file.module):
                continue
            edges[source.module].setdefault(target_file.module, (source, line, written))
    cycle_problems = []
    for graph, label in ((edges, "files"), (top_edges, "top-level modules")):
        for component in strongly_connected(graph):
            members = set(component)
            names = ", ".join("::".join(m) if isinstance(m, tuple) else m for m in component)
            for node in component:
                for target, (source, line, written) in sorted(graph[node].items()):
                    if target in members:
                        cycle_problems.append(f"{source.rel}:{line}: {written} (a cycle between {label}: {names})")
    return sources, layer_problems, cycle_problems


def db_leaks(sources, root):
    problems = []
    for source in sources:
        if source.module[:1] == ("db",):
            continue
        uses = set()
        for m in re.finditer(r"\buse\s+([^;]+);", source.code):
            line = source.code.count("\n", 0, m.start()) + 1
            for path in expand_use_tree(m.group(1)):
                if path in ("sea_orm::Value", "sea_orm::DbErr"):
                    uses.add(line)
                    problems.append(f"{source.rel}:{line}: {path} outside src/db/")
        for number, text in enumerate(source.code.split("\n"), 1):
            for leak in DB_LEAKS:
                if leak in text and number not in uses:
                    problems.append(f"{source.rel}:{number}: {leak} outside src/db/")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", default=str(Path(__file__).resolve().parent.parent / "src"))
    parser.add_argument("--allow-db-leaks", action="store_true", help="do not report the db leaks group")
    args = parser.parse_args()
    root = Path(args.src).resolve()
    sources, layers, cycles = check(root)
    groups = [("imports up the layer order", layers), ("import cycles", cycles)]
    if not args.allow_db_leaks:
        groups.append(("database types and calls outside src/db/", db_leaks(sources, root)))
    failed = False
    for title, problems in groups:
        if problems:
            failed = True
            print(f"{title}:")
            for problem in problems:
                print(f"  {problem}")
    if not failed:
        print(f"check-layers: {len(sources)} files, layers and imports in order")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
