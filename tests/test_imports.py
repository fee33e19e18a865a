"""The library imports and runs without Streamlit (DESIGN §7): the app's shell lives in ui/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import importlib, pkgutil, sys
import alignment
# every module but __main__ (importing it runs the CLI)
names = sorted(m.name for m in pkgutil.walk_packages(alignment.__path__, "alignment.")
               if not m.name.endswith(".__main__"))
for name in names:
    importlib.import_module(name)
assert len(names) > 20, names
loaded = sorted(m for m in sys.modules if m == "streamlit" or m.startswith("streamlit."))
print(len(names), "modules;", "streamlit loaded:" if loaded else "no streamlit", *loaded[:5])
sys.exit(1 if loaded else 0)
"""


def test_every_library_module_imports_without_streamlit():
    """Import ``alignment`` and every submodule in a fresh interpreter; none may pull in Streamlit."""
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no streamlit" in proc.stdout


def test_the_app_shell_is_outside_the_library():
    assert not (ROOT / "alignment" / "app_state.py").exists()
    assert (ROOT / "ui" / "__init__.py").exists() and (ROOT / "app.py").exists()
