"""learnae.averaging is pure numpy: it imports nothing else of learnae and no TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

# Every module of the package, so a new one is checked without editing this test.
CHECK = """
import importlib, json, pkgutil, sys
import learnae.averaging
for info in pkgutil.iter_modules(learnae.averaging.__path__):
    importlib.import_module("learnae.averaging." + info.name)
print(json.dumps(sorted(sys.modules)))
"""


def test_averaging_imports_only_numpy_and_the_stdlib():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=120)
    modules = json.loads(out.stdout)
    ours = [m for m in modules if m.split(".")[0] == "learnae"]
    assert all(m == "learnae" or m.startswith("learnae.averaging") for m in ours), ours
    third_party = {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names) - {"learnae", "numpy"}
    # site machinery of an editable install, not imported by our code
    third_party = {m for m in third_party if not m.startswith(("__editable__", "_distutils_hack", "__main__"))}
    assert third_party == set(), third_party
    assert "tensorflow" not in modules and "keras" not in modules
