"""The house rules of the layout (README "What is where", docs/interfaces.md), checked from source.

Imports are read with `ast` from every module of the project packages (function-level imports
count too); `import server.store` is checked in a fresh interpreter.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("callmark", "trainer", "publisher", "server", "tools")
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """Every module `name` imports (absolute names; `from a import b` gives a.b when that is a module)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text("utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for a in node.names:
                full = f"{base}.{a.name}"
                out.add(full if full in MODULES else base)
    return out


IMPORTS = {m: _imports(m) for m in MODULES}


def _top(mod: str) -> str:
    return mod.split(".")[0]


def _offenders(prefix: str, allowed) -> list[str]:
    return sorted(f"{m} imports {i}" for m in MODULES if m == prefix or m.startswith(prefix + ".")
                  for i in IMPORTS[m] if not allowed(i))


def test_callmark_imports_no_other_folder_and_never_tensorflow():
    project = set(PACKAGES) - {"callmark"}
    bad = _offenders("callmark", lambda i: _top(i) not in project and _top(i) not in ("tensorflow", "keras"))
    assert bad == []


HANDSET = [m for m in MODULES if m.startswith("tools.handset")]
HANDSET_THIRD_PARTY = {"ai_edge_litert", "requests", "click", "tqdm"}


def test_handset_client_imports_only_callmark_litert_and_requests():
    assert "tools.handset" in HANDSET and "tools.handset_cli" in HANDSET
    bad = sorted(f"{m} imports {i}" for m in HANDSET for i in IMPORTS[m]
                 if not (_top(i) in STDLIB or _top(i) == "callmark" or i.startswith("tools.handset")
                         or _top(i) in HANDSET_THIRD_PARTY))
    assert bad == []


def _fresh_modules(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_server_store_loads_no_flask():
    loaded = _fresh_modules("import server.store")
    web = sorted(m for m in loaded if _top(m) in ("flask", "werkzeug", "flask_smorest", "flask_limiter",
                                                  "marshmallow"))
    assert "server.store" in loaded and web == []


def test_trainer_reads_server_only_through_the_flask_free_store():
    allowed = {"server", "server.store", "server.store_errors"}
    bad = _offenders("trainer", lambda i: _top(i) != "server" or i in allowed)
    assert bad == []
    users = sorted(m for m in MODULES if m.startswith("trainer") and any(_top(i) == "server" for i in IMPORTS[m]))
    assert users == ["trainer.sources"], "the build reads the store only through trainer/sources.py"
    assert "server.store_errors" in IMPORTS["server.store"] and "server.errors" not in IMPORTS["server.store"]


def test_publisher_never_imports_server_trainer_or_tensorflow():
    bad = _offenders("publisher", lambda i: _top(i) not in ("server", "trainer", "tools", "tensorflow", "keras"))
    assert bad == []
    loaded = _fresh_modules("import publisher")
    assert sorted(m for m in loaded if _top(m) in ("tensorflow", "flask", "server", "trainer")) == []


def test_server_never_imports_trainer():
    assert _offenders("server", lambda i: _top(i) != "trainer") == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in graph:
        if v not in index:
            visit(v)
    return out


def _project_graph() -> dict[str, set[str]]:
    graph = {}
    for m, deps in IMPORTS.items():
        # a package's __init__ re-exporting its modules is not a cycle of the modules themselves
        graph[m] = {d for d in deps if d in MODULES and d != m and not m.startswith(d + ".")}
    return graph


def test_no_import_cycles_between_modules():
    assert _cycles(_project_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_private_names_of_another():
    bad = []
    for m, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and _top(node.module) in PACKAGES:
                bad += [f"{m}: {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert bad == []


@pytest.mark.parametrize("contract, where", [
    ("FLAG_VERIFIED = ", "callmark/labels.py"), ("FLAG_APPEAL_SUPPRESSED = ", "callmark/labels.py"),
    ("LABEL_COLUMNS = ", "callmark/labels.py"), ("RANGE_COLUMNS = ", "callmark/labels.py"),
    ("MAX_ROOT_BYTES = ", "callmark/exports.py"), ("MAX_MANIFEST_BYTES = ", "callmark/exports.py"),
    ("CHANNEL_RE = ", "callmark/exports.py"), ("ARTEFACT_RE = ", "callmark/exports.py"),
    ('"artefacts', "callmark/exports.py"), ("def atomic_write(", "callmark/files.py"),
])
def test_each_contract_is_written_in_one_room(contract, where):
    rooms = sorted(str(p.relative_to(ROOT)) for p in MODULES.values() if contract in p.read_text("utf-8"))
    assert rooms == [where]
