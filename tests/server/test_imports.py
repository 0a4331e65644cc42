"""server/ never imports trainer/ or TensorFlow (checked in a fresh interpreter)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# import checks do not depend on the store backend: run them once (SQLite)
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_server_imports_neither_trainer_nor_tensorflow(tmp_path):
    code = ("import sys; from server import create_app; "
            f"create_app({{'data_dir': {str(tmp_path)!r}, 'exports_dir': {str(tmp_path)!r}}}); "
            "import tools.commands.serve; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('trainer', 'tensorflow', 'keras')); "
            "print(bad); sys.exit(1 if bad else 0)")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr[-2000:]


def test_no_source_file_mentions_trainer_imports():
    for f in (ROOT / "server").rglob("*.py"):
        text = f.read_text()
        assert "import trainer" not in text and "from trainer" not in text, f
