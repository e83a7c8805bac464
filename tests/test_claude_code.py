"""Claude Code itself (npm, pinned in tools/npm) against the proxy on every host and both
backends: a one-shot answer, and a session in which the bot calls one of Claude Code's own tools
(``Read``, on a file in its working directory), Claude Code runs it and sends the result back,
and the bot's answer quotes the file. Offline: Claude Code's binary comes in its npm package,
and its nonessential traffic is turned off."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.hosts import Target
from tests.peers.bots import POE_KEY
from tests.peers.runtimes import npm_tool

CLAUDE = npm_tool("claude")
pytestmark = pytest.mark.skipif(CLAUDE is None, reason="make test installs Claude Code into tools/npm")


def claude(url: str, prompt: str, model: str, workdir: Path) -> str:
    """What ``claude -p`` prints, run as a user would with the two variables the README names."""
    home = workdir.parent / "home"
    home.mkdir(exist_ok=True)
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),  # a scratch one: no settings, no login
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": POE_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    done = subprocess.run(
        [str(CLAUDE), "-p", prompt, "--model", model],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_claude_code_answers_and_runs_its_own_tool_for_the_bot(proxy: Target, tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("the launch code is 4242\n")
    with proxy.served() as url:
        said = claude(url, "hello from claude code", "echo", workdir)
        quoted = claude(url, "what do my notes say?", "reader", workdir)
    assert "hello from claude code" in said
    assert "The file says:" in quoted and "the launch code is 4242" in quoted
