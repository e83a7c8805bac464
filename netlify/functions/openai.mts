/**
 * Netlify: the OpenAI API for Poe, with the proxy's own Python core running in Pyodide.
 *
 * How the platform calls it: Netlify Functions have no Python runtime, so this is a Node function
 * (v2: `export default (request) => Response`) that every path reaches (`config.path`). At cold
 * start it loads Pyodide (CPython in WebAssembly, from the bundled `pyodide` package) and the
 * Python sources (`included_files` in netlify.toml); `adapters/web.mts`, the web-standard
 * driver, does the rest: core decides, `fetch` talks to Poe.
 *
 * How it streams: for real. The Response body is a ReadableStream that receives each SSE chunk
 * as core produces it from Poe's events (Netlify streams v2 function responses, up to 20 MB).
 * A client that leaves cancels the stream, which aborts the calls to Poe.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadPyodide } from "pyodide";
import { webHandler } from "../../adapters/web.mts";

export const config = { path: "/*" };

// Where the Python sources are: the function's working directory on Netlify (included_files
// keeps repository paths), or wherever POE_PROXY_SOURCE_DIR says.
const ROOT = process.env.POE_PROXY_SOURCE_DIR ?? resolve(".");
const SOURCES = ["core", "adapters/__init__.py", "adapters/pyodide_bridge.py"];

function read(path: string): Array<[string, Uint8Array]> {
  if (path.endsWith(".py")) return [[path, readFileSync(join(ROOT, path))]];
  return readdirSync(join(ROOT, path))
    .filter((name) => name.endsWith(".py"))
    .map((name) => [`${path}/${name}`, readFileSync(join(ROOT, path, name))]);
}

export default webHandler({
  environment: Object.fromEntries(
    Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined),
  ),
  sources: async () => SOURCES.flatMap(read),
  pyodide: () => loadPyodide(),
});
