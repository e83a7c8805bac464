/**
 * Netlify: the OpenAI API for Poe, with the proxy's own Python core running in Pyodide.
 *
 * How the platform calls it: Netlify Functions have no Python runtime, so this is a Node function
 * (v2: `export default (request) => Response`) that every path reaches (`config.path`). At cold
 * start it loads Pyodide (CPython in WebAssembly, from the bundled `pyodide` package), from the
 * memory snapshot the build made (`adapters/pyodide-snapshot.mts`: the sources already imported)
 * when it matches, and the Python sources (`included_files` in netlify.toml);
 * `adapters/web.mts`, the web-standard driver, does the rest: core decides, `fetch` talks to Poe.
 *
 * How it streams: for real. The Response body is a ReadableStream that receives each SSE chunk
 * as core produces it from Poe's events (Netlify streams v2 function responses, up to 20 MB).
 * A client that leaves cancels the stream, which aborts the calls to Poe.
 *
 * Where responses are kept: Netlify Blobs, in the site's store "responses" (no set-up: Netlify
 * gives every function its site's Blobs). `make serve-netlify` runs a local Blobs server, as
 * `netlify dev` does (`tools/serve-netlify.mjs`).
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { getStore } from "@netlify/blobs";
import { loadPyodide } from "pyodide";
import { pythonSources } from "../../adapters/node-sources.mts";
import { type Snapshot, type Store, startPyodide, webHandler } from "../../adapters/web.mts";

export const config = { path: "/*" };

// Where the Python sources and the snapshot are: the function's working directory on Netlify
// (included_files keeps repository paths), or wherever POE_PROXY_SOURCE_DIR says.
const ROOT = process.env.POE_PROXY_SOURCE_DIR ?? resolve(".");
const SNAPSHOT = join(ROOT, "netlify", ".build", "pyodide.snapshot");
const require = createRequire(import.meta.url);
const PYODIDE = JSON.parse(readFileSync(require.resolve("pyodide/package.json"), "utf8"));

/** Pyodide's glue script (pyodide.asm.js, 1.2 MB), loaded as the CommonJS script it is before
 * `loadPyodide` would import it: imported, Node first parses it whole to tell its format, then
 * again for its exports (measured: 454 -> 360 ms from the snapshot to a started Pyodide). It
 * defines what `loadPyodide` looks for, and then loads nothing more. */
function loadPyodideGlue(): void {
  require("pyodide/pyodide.asm.js");
}

function snapshot(): Snapshot | undefined {
  if (!existsSync(SNAPSHOT) || !existsSync(`${SNAPSHOT}.json`)) return undefined;
  return { ...JSON.parse(readFileSync(`${SNAPSHOT}.json`, "utf8")), memory: readFileSync(SNAPSHOT) };
}

/** The site's Blobs, strongly consistent: a turn must find the one before it. Blobs keep no
 * expiry of their own; core checks the one its values carry. */
const blobs = (): ReturnType<typeof getStore> => getStore({ name: "responses", consistency: "strong" });
const store: Store = {
  get: (keys) => {
    const site = blobs();
    return Promise.all(
      keys.map(async (key) => {
        const found = await site.get(key, { type: "arrayBuffer" });
        return found === null ? null : new Uint8Array(found);
      }),
    );
  },
  put: async (keys, values) => {
    const site = blobs();
    await Promise.all(keys.map((key, i) => site.set(key, new Blob([values[i]]))));
  },
  delete: async (keys) => {
    const site = blobs();
    await Promise.all(keys.map((key) => site.delete(key)));
  },
};

export default webHandler({
  store,
  environment: Object.fromEntries(
    Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined),
  ),
  sources: async () => pythonSources(ROOT),
  pyodide: (digest) => {
    loadPyodideGlue();
    return startPyodide(loadPyodide, PYODIDE.version, digest, snapshot());
  },
});
