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
from pathlib import Path

import pytest

from tests.hosts import HostProcesses, listening_pid
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


def test_make_serve_netlify_listens_only_where_host_says(
    host_processes: HostProcesses, poe_server: str
) -> None:
    """The function on HOST, and the local Blobs server beside it on the loopback address only
    (``BlobsServer.start()`` would listen on every interface)."""
    url, _ = host_processes.start("netlify", {"POE_BASE_URL": poe_server})
    listening = listening_addresses(listening_pid(url))
    assert listening and all(address == "127.0.0.1" for address, _ in listening), listening
    assert len(listening) == 2  # the function and its Blobs server


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """The (IPv4 address, port) pairs process ``pid`` listens on; any IPv6 socket as ``::``."""
    inodes = {
        os.readlink(fd).removeprefix("socket:[").removesuffix("]") for fd in Path(f"/proc/{pid}/fd").iterdir()
    }
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for fields in (line.split() for line in Path(table).read_text().splitlines()[1:]):
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN, and this process's
                address, port = fields[1].split(":")
                ipv4 = ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0))  # little-endian
                found.append((ipv4 if table.endswith("tcp") else "::", int(port, 16)))
    return found
