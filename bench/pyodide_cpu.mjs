// CPU that core spends in Pyodide per request, for the Pyodide hosts' plans (Cloudflare's free
// plan allows 10 ms of CPU per request, Netlify Edge 50 ms): Pyodide's start and core's import,
// the start from a memory snapshot with core imported, then one chat request answered from a bot
// stream of N text events, driven through core.exchange with no I/O (the host's share, fetch and
// the network, is left out), streamed and not. Then, per chunk as Poe streams: the web driver's
// crossing, and each Pyodide host's whole path in one process (the Cloudflare Worker; the Netlify
// function, once make serve-netlify has built it). Prints JSON.
// Usage: node bench/pyodide_cpu.mjs <repository root>
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { loadPyodide } from "../netlify/node_modules/pyodide/pyodide.mjs";

const root = process.argv[2];
const cpuMs = (since) => {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
};

const bootStarted = process.cpuUsage();
const py = await loadPyodide();
const pyodideMs = cpuMs(bootStarted);
py.FS.mkdirTree("/proxy/core");
for (const name of readdirSync(join(root, "core")).filter((n) => n.endsWith(".py"))) {
  py.FS.writeFile(`/proxy/core/${name}`, readFileSync(join(root, "core", name)));
}
py.runPython("import sys; sys.path.insert(0, '/proxy')");
const importStarted = process.cpuUsage();
py.runPython("import core.exchange");
const importMs = cpuMs(importStarted);

const answer = py.runPython(`
import json
from core.exchange import DONE, READ_BODY, WAIT, Proxy, StartCall
from core.settings import Settings

proxy = Proxy(Settings(), store_missing="The benchmark keeps no responses.")
token = iter(range(10**9))

def answer(events, stream):
    """One chat request through core, its bot stream fed in 1 KiB pieces as a socket would."""
    body = json.dumps({"model": "bot", "messages": [{"role": "user", "content": "hi"}], "stream": stream}).encode()
    sse = b"".join(b'event: text\\ndata: {"text": "token "}\\n\\n' for _ in range(events)) + b"event: done\\ndata: {}\\n\\n"
    exchange = proxy.request("POST", "/v1/chat/completions", {"authorization": "Bearer k"},
                             new_token=lambda: f"{next(token):032x}", now=0.0)
    sent = 0
    while (action := exchange.next_action()) is not DONE:
        if action is READ_BODY:
            exchange.body(body, False)
        elif isinstance(action, StartCall):
            call = action.call
            exchange.answered(call, 200, {})
            for start in range(0, len(sse), 1024):
                exchange.data(call, sse[start:start + 1024])
            exchange.ended(call)
        elif hasattr(action, "data"):
            sent += len(action.data)
        elif hasattr(action, "body"):
            sent += len(action.body)
    return sent
answer
`);

// From a memory snapshot made with core imported (what the Netlify function starts from).
const maker = await loadPyodide({ _makeSnapshot: true });
maker.FS.mkdirTree("/proxy/core");
for (const name of readdirSync(join(root, "core")).filter((n) => n.endsWith(".py"))) {
  maker.FS.writeFile(`/proxy/core/${name}`, readFileSync(join(root, "core", name)));
}
maker.runPython("import sys; sys.path.insert(0, '/proxy'); import core.exchange");
const memory = maker.makeMemorySnapshot();
const snapshotStarted = process.cpuUsage();
await loadPyodide({ _loadSnapshot: memory });
const snapshotMs = cpuMs(snapshotStarted);

const results = {
  pyodide_start_ms: pyodideMs,
  import_core_ms: importMs,
  snapshot_start_ms: snapshotMs,
  snapshot_mib: memory.length / 2 ** 20,
  per_request_ms: {},
};
for (const events of [32, 300]) {
  for (const stream of [false, true]) {
    for (let i = 0; i < 20; i++) answer(events, stream); // warm-up
    const runs = 200;
    const started = process.cpuUsage();
    for (let i = 0; i < runs; i++) answer(events, stream);
    results.per_request_ms[`${events} events, ${stream ? "streamed" : "not streamed"}`] = cpuMs(started) / runs;
  }
}
// The web driver's crossing, as Poe streams: one event a chunk, each reported through
// adapters/pyodide_bridge.py (bytes into Python, core's conversion, the actions back as
// JavaScript arrays), as adapters/web.mts reports it; no fetch, no server. Per chunk: the
// 300-event request less the 32-event one, over 268.
for (const name of readdirSync(join(root, "adapters")).filter((n) => n.endsWith(".py"))) {
  py.FS.mkdirTree("/proxy/adapters");
  py.FS.writeFile(`/proxy/adapters/${name}`, readFileSync(join(root, "adapters", name)));
}
const bridge = py.pyimport("adapters.pyodide_bridge");
const core = bridge.start({}, "The benchmark keeps no responses.");
const encoder = new TextEncoder();
const chatBody = encoder.encode(JSON.stringify({ model: "bot", messages: [{ role: "user", content: "hi" }], stream: true }));
const event = encoder.encode('event: text\ndata: {"text": "token "}\n\n');
const done = encoder.encode("event: done\ndata: {}\n\n");
let tokens = 0;
const bridged = (events) => {
  const exchange = bridge.request(core, "POST", "/v1/chat/completions", { authorization: "Bearer k" },
    () => (tokens++).toString(16).padStart(32, "0"), 0);
  bridge.next_actions(exchange);
  bridge.body(exchange, chatBody, false);
  bridge.answered(exchange, 0, 200, {});
  for (let i = 0; i < events; i++) bridge.data(exchange, 0, event);
  bridge.data(exchange, 0, done);
  bridge.ended(exchange, 0);
  exchange.destroy();
};
const bridgedMs = {};
for (const events of [32, 300]) {
  for (let i = 0; i < 20; i++) bridged(events); // warm-up
  const started = process.cpuUsage();
  for (let i = 0; i < 100; i++) bridged(events);
  bridgedMs[events] = cpuMs(started) / 100;
}
results.bridge_us_per_chunk = (1000 * (bridgedMs[300] - bridgedMs[32])) / 268;

// Each Pyodide host's whole path, as Poe streams: fetch answers with a byte stream that gives one
// event per turn of Node's event loop, and the answer is read to its end; no network, no server.
// Per chunk, as above. First the Cloudflare Worker (adapters/cloudflare.py: the asyncio driver on
// Pyodide's event loop, Poe's body piped in, the answer's stream fed).
py.FS.writeFile("/proxy/workers.py", "class WorkerEntrypoint:\n    def __init__(self, ctx, env):\n        self.ctx, self.env = ctx, env\n");
const workerImportStarted = process.cpuUsage();
const worker = py.pyimport("adapters.cloudflare"); // core is imported already: the rest of the Worker's module
results.import_worker_module_ms = cpuMs(workerImportStarted);
const env = { POE_BASE_URL: "http://127.0.0.1:9", POE_BACKEND: "bot", LOG_LEVEL: "WARNING" };
const upstreamFetch = (events) => async () => {
  let sent = 0;
  const body = new ReadableStream({
    type: "bytes",
    async pull(controller) {
      await new Promise((resolve) => setImmediate(resolve)); // the next chunk comes later
      if (sent < events) controller.enqueue(event.slice());
      else if (sent === events) controller.enqueue(done.slice());
      else {
        controller.close();
        controller.byobRequest?.respond(0);
      }
      sent++;
    },
  });
  return new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } });
};
const realFetch = globalThis.fetch;
const chatRequest = () =>
  new Request("http://proxy/v1/chat/completions", {
    method: "POST",
    body: chatBody,
    headers: { authorization: "Bearer k", "content-type": "application/json" },
  });
/** CPU ms per streamed answer of 32 and 300 events from `handle` (a Request => Response). */
async function answeredMs(handle) {
  const figures = {};
  for (const events of [32, 300]) {
    globalThis.fetch = upstreamFetch(events);
    const answer = async () => {
      const response = await handle(chatRequest());
      for await (const _ of response.body);
      if (response.status !== 200) throw new Error(`answered ${response.status}`);
    };
    for (let i = 0; i < 30; i++) await answer(); // warm-up (V8 tiers Pyodide up as it runs)
    const started = process.cpuUsage();
    for (let i = 0; i < 30; i++) await answer();
    figures[events] = cpuMs(started) / 30;
  }
  globalThis.fetch = realFetch;
  return figures;
}
const workerMs = await answeredMs(async (request) => {
  const entry = worker.Default({ waitUntil() {} }, env);
  try {
    return await entry.fetch(request);
  } finally {
    entry.destroy();
  }
});
results.worker_us_per_chunk = (1000 * (workerMs[300] - workerMs[32])) / 268;
results.worker_ms_300_stream = workerMs[300];
results.worker_ms_32_stream = workerMs[32];

// The same through the Netlify function as make serve-netlify built it (the web driver,
// adapters/web.mts, in JavaScript; core in Pyodide from its memory snapshot), when it is there.
const bundle = join(root, "netlify", ".build", "openai.mjs");
if (existsSync(bundle)) {
  Object.assign(process.env, env, { POE_PROXY_SOURCE_DIR: root });
  const { default: handler } = await import(pathToFileURL(bundle).href);
  const webMs = await answeredMs(handler);
  results.web_driver_us_per_chunk = (1000 * (webMs[300] - webMs[32])) / 268;
  results.web_driver_ms_300_stream = webMs[300];
  results.web_driver_ms_32_stream = webMs[32];
}
console.log(JSON.stringify(results));
process.exit(0); // the function's Blobs client may hold the loop open
