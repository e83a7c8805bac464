// A local stand-in for Cloudflare's Python Workers runtime, for `make serve-cloudflare`: it builds
// the Worker as wrangler does (wrangler.toml's [build] command), then serves the modules under
// `main`'s folder (what wrangler uploads) on HOST:PORT, with the Worker's variables taken from the
// environment. workerd cannot run a Python Worker offline (it downloads its Pyodide bundle at
// start), so this runs the same modules in Pyodide under Node, with exactly the part of the
// runtime the entry uses: a `workers` module whose WorkerEntrypoint holds `ctx` and `env`, a
// Request wrapper with `js_object`, `ctx.waitUntil`, and the web platform (`fetch`,
// `TransformStream`, `Response`) that Node provides as workerd does. The RESPONSES binding is a
// stand-in of Workers KV (get, put, delete) keeping one file per key in STATE_DIR/cloudflare-kv.
// Usage: node tools/python-worker.mjs <repository root> <host> <port>
import { execSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative } from "node:path";
import { loadPyodide } from "../cloudflare/node_modules/pyodide/pyodide.mjs";
import { serveWeb } from "./serve-web.mjs";

const [, , root, host, port] = process.argv;
const config = readFileSync(join(root, "wrangler.toml"), "utf8");
const main = /^main\s*=\s*"([^"]+)"/m.exec(config)[1];
const build = /^\[build\][^[]*?^command\s*=\s*"""([\s\S]*?)"""/m.exec(config)[1];
execSync(build, { cwd: root, stdio: "inherit", shell: "/bin/sh" });

const RUNTIME = `
class WorkerEntrypoint:
    def __init__(self, ctx, env):
        self.ctx = ctx
        self.env = env


class Request:
    def __init__(self, js_object):
        self.js_object = js_object
`;

function* pythonFiles(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) yield* pythonFiles(join(dir, entry.name));
    else if (entry.name.endsWith(".py")) yield join(dir, entry.name);
  }
}

const py = await loadPyodide();
const uploaded = join(root, dirname(main));
for (const file of pythonFiles(uploaded)) {
  const target = `/worker/${relative(uploaded, file)}`;
  py.FS.mkdirTree(dirname(target));
  py.FS.writeFile(target, readFileSync(file));
}
py.FS.writeFile("/worker/workers.py", RUNTIME);
py.runPython("import sys; sys.path.insert(0, '/worker')");
const entry = py.pyimport(basename(main, ".py"));
const workers = py.pyimport("workers");
/** Workers KV's binding, as much of it as the Worker uses, on files (expiry is core's to check). */
function kvStandIn(directory) {
  mkdirSync(directory, { recursive: true });
  const file = (key) => join(directory, encodeURIComponent(key));
  return {
    async get(key, type) {
      if (type !== "arrayBuffer") throw new TypeError("the stand-in reads arrayBuffer only");
      try {
        const data = readFileSync(file(key));
        return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
      } catch (error) {
        if (error.code === "ENOENT") return null;
        throw error;
      }
    },
    async put(key, value) {
      const bytes = ArrayBuffer.isView(value) ? new Uint8Array(value.buffer, value.byteOffset, value.byteLength) : new Uint8Array(value);
      writeFileSync(file(key), bytes);
    },
    async delete(key) {
      rmSync(file(key), { force: true });
    },
  };
}

const env = Object.fromEntries(Object.entries(process.env).filter(([, value]) => value !== undefined));
env.RESPONSES = kvStandIn(join(process.env.STATE_DIR || ".state", "cloudflare-kv"));

serveWeb(
  async (request) => {
    const ctx = { waitUntil() {}, passThroughOnException() {} }; // Node keeps the work alive itself
    const worker = entry.Default(ctx, env);
    const wrapped = workers.Request(request);
    try {
      return await worker.fetch(wrapped);
    } finally {
      wrapped.destroy();
      worker.destroy();
    }
  },
  host,
  port,
);
