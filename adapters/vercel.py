"""Vercel: the app for Vercel's Python runtime.

How the platform calls it: ``pyproject.toml`` names this module in ``[project.scripts] app``;
Vercel's builder installs the project with uv and serves the module's top-level ASGI ``app`` with
its own uvicorn, one function for every path (the "python" framework preset routes ``/(.*)``).

How it streams: for real. The runtime marks the function ``supportsResponseStreaming`` and
uvicorn sends each chunk as the app yields it; a stream may last up to the function's
``maxDuration`` (``vercel.json``).
"""

from __future__ import annotations

from .app import app

__all__ = ["app"]
