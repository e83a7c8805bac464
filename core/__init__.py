"""The sans-I/O core of the proxy: OpenAI requests in, Poe requests out; Poe events in,
OpenAI responses and stream chunks out. No network, no framework, no globals, no env reads.

Every public function takes plain data (dicts, bytes, ``Settings``) and returns plain data, so
the same code runs under uvicorn, in AWS Lambda, and in Pyodide on Netlify.
"""
