"""``make bench``: list the benchmarks and how to run each (they are long; run the ones you need)."""

from __future__ import annotations

import ast
from pathlib import Path

here = Path(__file__).resolve().parent
print("Benchmarks (results and the exact commands used: docs/BENCHMARKS.md):\n")
for path in sorted(here.glob("*.py")):
    text = path.read_text()
    # Helpers (the averaging simulator, its MLP) have no entry point: they are not benchmarks.
    if path.name.startswith("_") or 'if __name__ == "__main__"' not in text:
        continue
    doc = ast.get_docstring(ast.parse(text)) or ""
    print(f"  python -m bench.{path.stem:<20} {doc.splitlines()[0] if doc else ''}")
print("\n`make scenarios` runs every shipped scenario (python -m bench.scenarios).")
