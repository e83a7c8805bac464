"""The hosts: the I/O around ``core.exchange``, and nothing it could decide itself.

* ``driver``: the asyncio driver loop, written against a small client/upstream interface;
* ``app``: the ASGI app (uvicorn, Vercel, Lambda) on that driver, with ``upstream`` and
  ``transport`` for httpx over a keep-alive HTTP/1.1 pool;
* ``web.mts`` and ``pyodide_bridge``: the web-standard driver, core in Pyodide, ``fetch`` for
  the calls (Netlify, Deno), with ``pyodide-snapshot.mts`` making its memory snapshot;
* ``cloudflare``: the Python Worker, the asyncio driver on the runtime's ``fetch``;
* one thin entry point per platform (``vercel``, ``aws_lambda``, ``lambda_web_adapter.sh``).
"""
