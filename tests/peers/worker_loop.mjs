// Python code on the event loop a Cloudflare Python Worker runs on: Pyodide's own (the version
// cloudflare/package.json pins), under Node, with the Worker's modules importable as the stand-in
// (tools/python-worker.mjs) makes them. Prints what the code's last expression awaits to, as JSON.
// Usage: node tests/peers/worker_loop.mjs <repository root>  (the Python code on stdin)
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { loadPyodide } from "../../cloudflare/node_modules/pyodide/pyodide.mjs";

const root = process.argv[2];
const py = await loadPyodide();
for (const folder of ["core", "adapters"]) {
  for (const entry of readdirSync(join(root, folder), { recursive: true })) {
    if (!entry.endsWith(".py")) continue;
    const target = `/worker/${folder}/${entry}`;
    py.FS.mkdirTree(dirname(target));
    py.FS.writeFile(target, readFileSync(join(root, folder, entry)));
  }
}
py.FS.writeFile("/worker/workers.py", "class WorkerEntrypoint:\n    pass\n");
py.runPython("import sys; sys.path.insert(0, '/worker')");
const code = readFileSync(0, "utf8");
const result = await py.runPythonAsync(code);
console.log(JSON.stringify(result?.toJs ? result.toJs({ dict_converter: Object.fromEntries }) : result));
process.exit(0); // whatever timers the code left pending
