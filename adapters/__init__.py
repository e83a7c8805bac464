"""Everything that does I/O around ``core``.

* ``app``: the one Starlette ASGI app (routes, auth, CORS, streaming); uvicorn serves it.
* ``upstream``: the one httpx client that talks to Poe.
* one thin entry point per platform (AWS Lambda, Vercel, Netlify), each over the same app
  or, where no Python runtime exists, over ``core`` directly.
"""
