#!/bin/sh
# Makes Pyodide's memory snapshot with the proxy's Python sources imported, into netlify/.build/
# (adapters/pyodide-snapshot.mts, bundled by esbuild as the function is). Netlify's build command
# and make serve-netlify run it; the function falls back to a plain start without it.
set -eu
cd "$(dirname "$0")/.."
mkdir -p netlify/.build
netlify/node_modules/.bin/esbuild adapters/pyodide-snapshot.mts --bundle --platform=node --format=esm \
  --target=node20 --external:pyodide --log-level=warning --outfile=netlify/.build/snapshot.mjs
node netlify/.build/snapshot.mjs . netlify/.build
