/**
 * Makes the memory snapshot the web-standard hosts start from: Pyodide booted with the proxy's
 * Python sources imported, saved as `<dir>/pyodide.snapshot` with `<dir>/pyodide.snapshot.json`
 * (the Pyodide version and the sources' digest it was made from; `startPyodide` falls back to a
 * plain start when either differs). Run at build time, by the runtime that will start from it:
 * Netlify's build command and `make serve-netlify` (Node, bundled), Deno Deploy's build command
 * and `make serve-deno` (`deno task snapshot`). Usage: <runtime> <this> <repository root> <dir>
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadPyodide } from "pyodide";
import { importSources, sourcesDigest } from "./web.mts";
import { pythonSources } from "./node-sources.mts";

const [, , root, dir] = process.argv;
const sources = pythonSources(root);
const py = await loadPyodide({ _makeSnapshot: true } as Record<string, unknown>);
importSources(py, sources);
const memory = (py as unknown as { makeMemorySnapshot(): Uint8Array }).makeMemorySnapshot();
const version = py.version;
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, "pyodide.snapshot"), memory);
writeFileSync(join(dir, "pyodide.snapshot.json"), JSON.stringify({ pyodide: version, sources: await sourcesDigest(sources) }));
console.log(`snapshot: ${(memory.length / 2 ** 20).toFixed(1)} MiB, Pyodide ${version}`);
