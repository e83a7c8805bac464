"""The sans-I/O core of the proxy: everything a client can see, decided without doing any I/O.

``core.exchange`` is the whole of what a host uses: one ``Proxy`` per process, one ``Exchange``
per request, driven by a short loop that performs the actions it asks for (read the body, call
Poe, send the answer) and reports what happened. No network, no framework, no globals, no
environment reads, so the same code runs under uvicorn, in AWS Lambda, on Vercel and in Pyodide.
"""
