/**
 * Deno (and Deno Deploy): the OpenAI API for Poe, with the proxy's Python core in Pyodide.
 *
 * How the platform calls it: `Deno.serve` hands every request to the web-standard driver
 * (`adapters/web.mts`), the same one Netlify's function uses: core decides, `fetch` talks to Poe.
 * Pyodide comes from npm (`deno.json`); the Python sources are read from the repository
 * (`adapters/node-sources.mts`, through Deno's `node:fs`).
 *
 * How it streams: for real: the Response body is a ReadableStream fed as core writes.
 *
 * Run: `make serve-deno` (HOST, PORT and the proxy's settings from the environment).
 */
import { fileURLToPath } from "node:url";
import { loadPyodide } from "pyodide";
import { pythonSources } from "../adapters/node-sources.mts";
import { webHandler } from "../adapters/web.mts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

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

const handler = webHandler({
  fetch: fetchDecoded,
  environment: Deno.env.toObject(),
  sources: async () => pythonSources(ROOT), // the same files Netlify's function reads
  pyodide: () => loadPyodide(), // a plain start: Deno Deploy keeps no build output to start from
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
