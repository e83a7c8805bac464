"""The Python Worker's entry module (``wrangler.toml``'s ``main``): ``adapters/cloudflare.py``.

wrangler uploads the Python modules under its ``main``'s folder. Its build command (in
``wrangler.toml``) lays that folder out in ``build/cloudflare/``: this file, ``core/`` and
``adapters/``, so that no test, tool or benchmark goes along.
"""

from adapters.cloudflare import Default

__all__ = ["Default"]
