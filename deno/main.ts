/**
 * Deno (and Deno Deploy): the OpenAI API for Poe, with the proxy's Python core in Pyodide.
 *
 * How the platform calls it: `Deno.serve` hands every request to the web-standard driver
 * (`adapters/web.mts`), the same one Netlify's function uses: core decides, `fetch` talks to Poe.
 * Pyodide comes from npm (`deno.json`); the Python sources are read from the repository
 * (`adapters/node-sources.mts`, through Deno's `node:fs`).
 *
 * How it starts: from the Pyodide memory snapshot its build makes (`deno task snapshot`: Deno
 * Deploy's build command, and `make serve-deno`'s first step), with core already imported; a
 * plain start, said in the log, when there is none or it was made from other sources.
 *
 * How it streams: for real: the Response body is a ReadableStream fed as core writes.
 *
 * Where responses are kept: Deno KV. On Deno Deploy that is the app's own database (no set-up);
 * elsewhere a SQLite file (`DENO_KV_PATH`; `make serve-deno` puts it in STATE_DIR).
 *
 * Run: `make serve-deno` (HOST, PORT and the proxy's settings from the environment).
 */
import { fileURLToPath } from "node:url";
import { loadPyodide, version } from "pyodide";
import { pythonSources } from "../adapters/node-sources.mts";
import { type Snapshot, type Store, startPyodide, webHandler } from "../adapters/web.mts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SNAPSHOT = new URL("./.build/pyodide.snapshot", import.meta.url);

/** The snapshot the build made, if there is one. */
async function snapshot(): Promise<Snapshot | undefined> {
  try {
    const made = JSON.parse(await Deno.readTextFile(new URL(`${SNAPSHOT.href}.json`)));
    return { ...made, memory: await Deno.readFile(SNAPSHOT) };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * `fetch`, decoding a body Poe compressed although asked not to. Deno decodes only what it asked
 * for itself; when core asks for `identity` (event streams: tokens must not wait in a
 * compressor), a compressed answer arrives as it was sent. Node's fetch decodes it either way.
 */
async function fetchDecoded(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const response = await fetch(input, init);
  const encoding = response.headers.get("content-encoding");
  const asked = new Headers(init?.headers).get("accept-encoding");
  if (asked === "identity" && response.body && (encoding === "gzip" || encoding === "deflate")) {
    const body = response.body.pipeThrough(new DecompressionStream(encoding));
    return new Response(body, { status: response.status, headers: response.headers });
  }
  return response;
}

/** Deno KV, as a store of bytes: at most 10 keys per read and 10 values (60 KB each) per write,
 * within KV's limits (`getMany` of 10; 800 KB per atomic write). */
async function kvStore(): Promise<Store> {
  const kv = await Deno.openKv(Deno.env.get("DENO_KV_PATH") || undefined);
  const batches = <T,>(items: T[]): T[][] =>
    Array.from({ length: Math.ceil(items.length / 10) }, (_, i) => items.slice(i * 10, i * 10 + 10));
  const key = (name: string): Deno.KvKey => ["responses", name];
  const write = async (keys: string[], each: (op: Deno.AtomicOperation, name: string, i: number) => void) => {
    let done = 0;
    for (const batch of batches(keys)) {
      const op = kv.atomic();
      batch.forEach((name, i) => each(op, name, done + i));
      done += batch.length;
      const result = await op.commit();
      if (!result.ok) throw new Error("a Deno KV write did not commit");
    }
  };
  return {
    async get(keys) {
      const found: Array<Uint8Array | null> = [];
      for (const batch of batches(keys)) {
        const entries = await kv.getMany<Uint8Array[]>(batch.map(key));
        found.push(...entries.map((entry) => entry.value));
      }
      return found;
    },
    put: (keys, values, ttl) => write(keys, (op, name, i) => op.set(key(name), values[i], { expireIn: ttl * 1000 })),
    delete: (keys) => write(keys, (op, name) => op.delete(key(name))),
  };
}

const handler = webHandler({
  store: await kvStore(),
  fetch: fetchDecoded,
  environment: Deno.env.toObject(),
  sources: async () => pythonSources(ROOT), // the same files Netlify's function reads
  pyodide: async (digest) => startPyodide(loadPyodide, version, digest, await snapshot()),
});

// Last resort: whatever escapes a request is logged, and the server goes on serving the others.
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  console.error(JSON.stringify({ message: "unhandled rejection", error: String(event.reason).slice(0, 300) }));
});

await handler.ready(); // listen only once requests can be answered
Deno.serve(
  {
    hostname: Deno.env.get("HOST") ?? "127.0.0.1",
    port: Number(Deno.env.get("PORT") ?? "8000"),
    onListen: ({ hostname, port }) => console.log(`listening on http://${hostname}:${port}`),
  },
  handler,
);
