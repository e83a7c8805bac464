"""Netlify: ``netlify.toml`` read by Netlify's own config parser.

The function itself is one of the hosts of the behaviour suite (``tests/hosts.py``): ``make
serve-netlify`` compiles it with esbuild as Netlify's bundler does and serves it under Node
(``tools/serve-web.mjs`` stands in for Netlify's Functions runtime), so every behaviour test
also runs against it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.peers.runtimes import ROOT, npm_tool

NODE = shutil.which("node")
NETLIFY_CONFIG = npm_tool("netlify-config")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="Node.js is not installed"),
    pytest.mark.skipif(NETLIFY_CONFIG is None, reason="make test installs tools/npm"),
]


def test_netlify_config_parses_and_names_the_function_setup() -> None:
    done = subprocess.run(
        [str(NETLIFY_CONFIG), "--offline", "--cwd", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NETLIFY_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)["config"]
    assert config["build"]["command"] == "npm ci --prefix netlify && sh netlify/snapshot.sh"
    assert config["build"]["functions"].endswith("netlify/functions")
    assert config["build"]["publish"].endswith("netlify/public")
    functions = config["functions"]["*"]
    assert functions["node_bundler"] == "esbuild"
    assert functions["external_node_modules"] == ["pyodide"]
    assert functions["included_files"] == [
        "core/*.py",
        "adapters/__init__.py",
        "adapters/pyodide_bridge.py",
        "netlify/.build/pyodide.snapshot*",
    ]
