"""Where the platform runtimes' local stand-ins live: Python 3.12 (Lambda's and Vercel's runtime)
and the npm CLIs ``make test`` installs into tools/npm."""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NPM_BIN = ROOT / "tools" / "npm" / "node_modules" / ".bin"


@functools.cache
def python312() -> str | None:
    """A real Python 3.12 executable: ``$PYTHON312``, ``python3.12`` on PATH, or pyenv's 3.12."""
    candidates = [os.environ.get("PYTHON312", ""), shutil.which("python3.12") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.12*/bin/python3.12"), reverse=True)
    for candidate in filter(None, candidates):
        done = subprocess.run(
            [candidate, "-c", "import sys; print(sys.executable, sys.version_info[:2] == (3, 12))"],
            capture_output=True,
            text=True,
            check=False,
        )
        executable, _, is_312 = done.stdout.strip().rpartition(" ")
        if done.returncode == 0 and is_312 == "True":
            return executable  # the interpreter itself, not a shim that needs the shell's setup
    return None


def npm_tool(name: str) -> Path | None:
    path = NPM_BIN / name
    return path if path.exists() else None
