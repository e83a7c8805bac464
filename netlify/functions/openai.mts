/**
 * Netlify: the OpenAI API for Poe, with the proxy's own Python core running in Pyodide.
 *
 * How the platform calls it: Netlify Functions have no Python runtime, so this is a Node function
 * (v2: `export default (request) => Response`) that every path reaches (`config.path`). At cold
 * start it loads Pyodide (CPython in WebAssembly, from the bundled `pyodide` package) and the
 * `core/` package's source files (`included_files` in netlify.toml). For each request,
 * `core.exchange.start` authenticates, routes and validates it and says which calls to make to
 * Poe; this file makes them with `fetch` and feeds what Poe answers back into core, which turns
 * it into OpenAI responses and chunks. Everything between the two is core's Python.
 *
 * How it streams: for real. The Response body is a ReadableStream that receives each SSE chunk
 * as core produces it from Poe's events (Netlify streams v2 function responses, up to 20 MB).
 * A client that leaves cancels the stream, which aborts the calls to Poe.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadPyodide, type PyodideInterface } from "pyodide";
import type { PyProxy } from "pyodide/ffi";

export const config = { path: "/*" };

// Where the core/*.py files are: next to the function's working directory on Netlify
// (included_files keeps repository paths), or wherever POE_PROXY_CORE_DIR says.
const CORE_DIR = process.env.POE_PROXY_CORE_DIR ?? resolve("core");

interface Core {
  py: PyodideInterface;
  exchange: PyProxy;
  settings: PyProxy;
  isinstance: PyProxy;
  streamHeaders: Record<string, string>;
}

let booting: Promise<Core> | undefined;

async function boot(): Promise<Core> {
  const py = await loadPyodide();
  py.FS.mkdirTree("/proxy/core");
  for (const name of readdirSync(CORE_DIR).filter((n) => n.endsWith(".py"))) {
    py.FS.writeFile(`/proxy/core/${name}`, readFileSync(join(CORE_DIR, name)));
  }
  py.runPython("import sys; sys.path.insert(0, '/proxy')");
  const exchange = py.pyimport("core.exchange");
  const environment = Object.fromEntries(
    Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );
  // Invalid settings fail here, on every request, as the ASGI app refuses to start.
  const settings = py.pyimport("core.settings").Settings.from_mapping(py.toPy(environment));
  const streamHeaders = {
    ...(exchange.SSE_HEADERS.toJs({ dict_converter: Object.fromEntries }) as Record<string, string>),
    ...(exchange.CORS_HEADERS.toJs({ dict_converter: Object.fromEntries }) as Record<string, string>),
  };
  return { py, exchange, settings, isinstance: py.runPython("isinstance"), streamHeaders };
}

/** Python bytes as a Uint8Array (and the proxy released). */
function bytes(value: PyProxy): Uint8Array {
  const out = value.toJs() as Uint8Array;
  value.destroy();
  return out;
}

function reply(answer: PyProxy): Response {
  const headers = answer.headers.toJs({ dict_converter: Object.fromEntries }) as Record<string, string>;
  const status = answer.status as number;
  const body = bytes(answer.body);
  answer.destroy();
  return new Response(status === 204 ? null : body, { status, headers });
}

type Emit = (chunk: Uint8Array) => void;

/** Read every call's body into core as it arrives; stop reading a call core no longer wants. */
async function pump(exchange: PyProxy, responses: Response[], emit: Emit): Promise<void> {
  await Promise.all(
    responses.map(async (response, index) => {
      const reader = response.body!.getReader();
      try {
        while (exchange.wants(index)) {
          const { done, value } = await reader.read();
          if (done) break;
          emit(bytes(exchange.feed(index, value)));
        }
      } catch {
        emit(bytes(exchange.lost(index)));
      } finally {
        reader.cancel().catch(() => {}); // closing the connection cancels the call at Poe
      }
      emit(bytes(exchange.end(index)));
    }),
  );
}

export default async function handler(request: Request): Promise<Response> {
  const core = await (booting ??= boot());
  const { py } = core;
  const url = new URL(request.url);
  const body = new Uint8Array(await request.arrayBuffer());
  const started = core.exchange.start.callKwargs(
    request.method,
    url.pathname,
    py.toPy(Object.fromEntries(request.headers)),
    body,
    core.settings,
    { new_token: () => crypto.randomUUID().replaceAll("-", ""), now: Date.now() / 1000 },
  ) as PyProxy;
  if (core.isinstance(started, core.exchange.Reply)) return reply(started);
  const exchange = started;

  const abort = new AbortController();
  request.signal?.addEventListener("abort", () => abort.abort());
  const calls: PyProxy[] = Array.from({ length: exchange.calls.length }, (_, i) => exchange.calls.get(i));
  const answers = await Promise.allSettled(
    calls.map((call) =>
      fetch(call.url, {
        method: call.method,
        headers: call.headers.toJs({ dict_converter: Object.fromEntries }),
        body: call.body === undefined || call.body === null ? undefined : bytes(call.body),
        signal: abort.signal,
      }),
    ),
  );
  for (const [index, answer] of answers.entries()) {
    if (answer.status === "rejected") {
      abort.abort();
      const reason = answer.reason as Error;
      return reply(exchange.unreachable(reason?.name === "TimeoutError"));
    }
    if (answer.value.status !== 200) {
      abort.abort();
      const text = new Uint8Array(await answer.value.arrayBuffer().catch(() => new ArrayBuffer(0)));
      const headers = py.toPy(Object.fromEntries(answer.value.headers));
      return reply(exchange.refused(index, answer.value.status, headers, text));
    }
  }
  const responses = answers.map((a) => (a as PromiseFulfilledResult<Response>).value);

  if (!exchange.stream) {
    await pump(exchange, responses, () => {});
    return reply(exchange.reply());
  }

  // Streaming: hold the answer until core has produced something, so that an upstream that
  // fails at once (an error event) still gets a real HTTP error status, as with the ASGI app.
  const early: Uint8Array[] = [bytes(exchange.head)];
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  let wake!: () => void;
  const produced = new Promise<void>((resolve) => (wake = resolve));
  const emit: Emit = (chunk) => {
    if (chunk.length === 0) return;
    if (controller) controller.enqueue(chunk);
    else early.push(chunk);
    wake();
  };
  const finished = pump(exchange, responses, emit).then(() => emit(bytes(exchange.finish())));
  await Promise.race([produced, finished]);
  if (exchange.failed && !exchange.answered) {
    abort.abort();
    return reply(exchange.reply());
  }
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      early.filter((chunk) => chunk.length > 0).forEach((chunk) => c.enqueue(chunk));
      controller = c;
      finished.then(
        () => c.close(),
        (error) => c.error(error),
      );
    },
    cancel() {
      abort.abort();
    },
  });
  return new Response(stream, { status: 200, headers: core.streamHeaders });
}
