"""The package layering of docs/architecture.md holds: no learnae package imports one it may not.

Every ``.py`` file under ``learnae/`` is parsed with :mod:`ast` (nothing is imported,
so the check is fast and cannot be fooled by lazy imports): ``import a.b``,
``from a.b import c``, relative imports resolved against the module's package,
``importlib.import_module("learnae....")`` with a literal name, at module level and
inside functions, classes and ``if TYPE_CHECKING`` blocks alike. A deferred import
is still a dependency: it only moves the cost, not the coupling.

Each imported ``learnae`` module is mapped to its package: the first component
under ``learnae`` (``learnae.storage.bitswap.engine`` -> ``storage``), or the
top-level module's name (``learnae.errors`` -> ``errors``). ``from learnae import
NAME`` counts as an import of the package that ``learnae/__init__.py`` takes NAME
from (it re-exports some names lazily), and as an import of the root itself
otherwise (``__version__``), which every package may do: ``import learnae.x``
runs ``learnae/__init__.py`` anyway.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = "learnae"  # the table's key for learnae/__init__.py, the public face

FOUNDATION = frozenset({"errors", "fsutil", "threads", "log"})

# Which learnae packages each package may import (itself always). The same table is in
# docs/architecture.md, "Packages and what they may import": change both together.
ALLOWED: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "fsutil": frozenset({"errors"}),
    "threads": frozenset({"errors"}),
    "log": frozenset({"errors"}),
    "identity": FOUNDATION,
    "averaging": frozenset(),
    "storage": FOUNDATION,
    "ledger": FOUNDATION | {"identity", "storage"},
    "gossip": FOUNDATION | {"identity", "ledger"},
    "training": FOUNDATION | {"storage"},
    "data": FOUNDATION | {"storage"},
    "peer": FOUNDATION | {"identity", "averaging", "storage", "ledger", "gossip", "training", "data"},
    "keras": FOUNDATION | {"training", "peer"},
    "scenario": FOUNDATION | {"identity", "peer", "data", "ledger", "storage"},
    "cli": FOUNDATION | {"identity", "peer", "scenario", "ledger", "data", "storage"},
    "testing": FOUNDATION | {"identity", "storage", "ledger", "averaging"},
    ROOT: frozenset({"errors", "keras", "peer", "training"}),
}


@dataclass(frozen=True, slots=True)
class Edge:
    """One import of a learnae module, as found in a source file."""

    path: str  # relative to the directory holding the ``learnae`` package
    line: int
    source: str  # the importing package (a key of ALLOWED, or an unknown name)
    target: str  # the imported package
    module: str  # the imported module, fully qualified

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.source} -> {self.target} ({self.module})"


def module_name(path: Path, base: Path) -> tuple[str, bool]:
    """``(dotted module name, is a package __init__)`` of ``path`` under ``base``."""
    parts = list(path.relative_to(base).with_suffix("").parts)
    is_init = parts[-1] == "__init__"
    if is_init:
        parts.pop()
    return ".".join(parts), is_init


def package_of(module: str) -> str:
    """``learnae.storage.cid`` -> ``storage``; ``learnae.errors`` -> ``errors``; ``learnae`` -> ROOT."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _resolve_relative(current: str, is_init: bool, level: int, module: str | None) -> str:
    """The absolute name of ``from <level dots><module> import ...`` inside ``current``."""
    package = current.split(".") if is_init else current.split(".")[:-1]
    if level > 1:
        package = package[: len(package) - (level - 1)]
    return ".".join(package + ([module] if module else []))


def _root_reexports(base: Path) -> dict[str, str]:
    """NAME -> the learnae module that ``learnae/__init__.py`` imports NAME from (eagerly or lazily)."""
    init = base / ROOT / "__init__.py"
    if not init.is_file():
        return {}
    names: dict[str, str] = {}
    for node in ast.walk(ast.parse(init.read_text(), str(init))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(ROOT + "."):
            for alias in node.names:
                names[alias.asname or alias.name] = node.module
    return names


def _is_module(base: Path, dotted: str) -> bool:
    path = base.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path, base: Path, reexports: dict[str, str]) -> list[tuple[int, str]]:
    """``(line, imported learnae module)`` for every import in one file, wherever it sits."""
    current, is_init = module_name(path, base)
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = (_resolve_relative(current, is_init, node.level, node.module) if node.level
                      else node.module or "")
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                if alias.name != "*" and _is_module(base, sub):
                    found.append((node.lineno, sub))  # from learnae.storage import cid: a module
                elif module == ROOT and alias.name in reexports:
                    found.append((node.lineno, reexports[alias.name]))
                else:
                    found.append((node.lineno, module))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            found.append((node.lineno, node.args[0].value))
    ours = [(line, m) for line, m in found if m == ROOT or m.startswith(ROOT + ".")]
    return list(dict.fromkeys(ours))  # one edge per line and module, however many names it imports


def edges(base: Path) -> list[Edge]:
    """Every learnae import in every ``.py`` file of ``base/learnae``, sorted by file and line."""
    reexports = _root_reexports(base)
    out = []
    for path in sorted((base / ROOT).rglob("*.py")):
        source = package_of(module_name(path, base)[0])
        rel = path.relative_to(base).as_posix()
        for line, module in imports_of(path, base, reexports):
            out.append(Edge(rel, line, source, package_of(module), module))
    return out


def violations(base: Path) -> list[Edge]:
    """The edges the table does not allow (including any from or to a package it does not list)."""
    bad = []
    for e in edges(base):
        if e.source == e.target or (e.target == ROOT and e.module == ROOT):
            continue  # itself; or the root package, which importing anything in learnae runs anyway
        if e.source not in ALLOWED or e.target not in ALLOWED[e.source]:
            bad.append(e)
    return bad


def test_every_import_is_allowed_by_the_layering_table():
    bad = violations(REPO)
    assert not bad, (f"{len(bad)} imports break the layering (docs/architecture.md):\n"
                     + "\n".join(map(str, bad)))


def test_the_table_covers_every_package():
    present = {package_of(module_name(p, REPO)[0]) for p in (REPO / ROOT).rglob("*.py")}
    assert present <= set(ALLOWED), f"packages missing from the table: {sorted(present - set(ALLOWED))}"
    assert all(deps <= set(ALLOWED) for deps in ALLOWED.values())


def _write(base: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_catches_every_kind_of_import(tmp_path):
    _write(tmp_path, {
        "learnae/__init__.py": ("__version__ = '0'\n"
                                "def __getattr__(name):\n"
                                "    from learnae.peer.node import PeerNode\n"
                                "    return PeerNode\n"),
        "learnae/errors.py": "",
        "learnae/averaging/__init__.py": "",
        "learnae/averaging/x.py": "def f():\n    from learnae.gossip import host\n",
        "learnae/storage/__init__.py": "",
        "learnae/storage/bitswap/__init__.py": "",
        "learnae/storage/bitswap/engine.py": (
            "from .. import cid\n"                     # storage itself: fine
            "from ...errors import LearnaeError\n"     # foundation: fine
            "from ...ledger import entry\n"            # relative, two levels up: not allowed
            "class C:\n"
            "    import learnae.peer.node as n\n"      # inside a class
            "import importlib\n"
            "m = importlib.import_module('learnae.training.models')\n"
            "from learnae import PeerNode, __version__\n"),  # a lazy re-export of peer; the root
        "learnae/storage/cid.py": "",
        "learnae/ledger/__init__.py": "",
        "learnae/ledger/entry.py": "from learnae.storage.cid import x\nimport learnae.identity\n",
        "learnae/gossip/__init__.py": "",
        "learnae/gossip/host.py": "",
        "learnae/newpkg/__init__.py": "import learnae.errors\n",
    })
    found = {(e.path, e.line, e.source, e.target) for e in violations(tmp_path)}
    assert found == {
        ("learnae/averaging/x.py", 2, "averaging", "gossip"),
        ("learnae/storage/bitswap/engine.py", 3, "storage", "ledger"),
        ("learnae/storage/bitswap/engine.py", 5, "storage", "peer"),
        ("learnae/storage/bitswap/engine.py", 7, "storage", "training"),
        ("learnae/storage/bitswap/engine.py", 8, "storage", "peer"),
        ("learnae/newpkg/__init__.py", 1, "newpkg", "errors"),  # a package the table does not know
    }
    # the relative imports resolved to the right modules
    modules = {(e.line, e.module) for e in edges(tmp_path) if e.path.endswith("engine.py")}
    assert {(1, "learnae.storage.cid"), (2, "learnae.errors"), (3, "learnae.ledger.entry")} <= modules
