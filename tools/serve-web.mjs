// Serves a web-standard handler (`(request, context) => Response`) on HOST:PORT under Node, as
// Netlify's Functions runtime calls a v2 function: each HTTP request becomes a WHATWG Request
// whose body streams in as it arrives (so the handler can refuse it before reading it) and whose
// signal aborts when the client leaves; the Response streams back, with backpressure, and a
// client that leaves cancels its body.
//
// It is the stand-in of a platform's server, so it is built to survive any client: a request
// that Node or the WHATWG classes refuse (bad framing, TRACE, a body broken off mid-upload, a
// handler that throws) ends that request with an OpenAI-shaped error, never the process.
// Usage: node tools/serve-web.mjs <module.mjs> <host> <port>   (the module's default export)
//    or: import { serveWeb } from "./serve-web.mjs"
import http from "node:http";
import { pathToFileURL } from "node:url";

// How long a client may take to send a request's head, as a platform's front end allows.
const HEAD_TIMEOUT_MS = 10_000;
const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade"]);
// What a platform's front refuses before any function runs, answered as the proxy answers.
const CORS = { "access-control-allow-origin": "*", "content-type": "application/json" };

function refusal(status, message, code, extra = {}) {
  const body = JSON.stringify({ error: { message, type: "invalid_request_error", param: null, code } });
  return { status, headers: { ...CORS, ...extra }, body };
}

function send(res, { status, headers, body }) {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { ...headers, "content-length": Buffer.byteLength(body) }).end(body);
}

/** A refusal written straight to a socket that has no response object, then closed. */
function sendRaw(socket, { status, headers, body }) {
  const head = Object.entries({ ...headers, "content-length": Buffer.byteLength(body), connection: "close" })
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join("");
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n${head}\r\n${body}`);
}

/**
 * `req`'s body as a web stream that errors when the upload breaks off (Readable.toWeb ends it as
 * if it were complete), read only as fast as it is taken.
 */
function bodyStream(req) {
  let open = true; // until it ends, errors, or the handler cancels it
  return new ReadableStream({
    start(controller) {
      req.on("data", (chunk) => {
        if (!open) return;
        controller.enqueue(new Uint8Array(chunk));
        if ((controller.desiredSize ?? 1) <= 0) req.pause();
      });
      req.on("end", () => {
        if (open) controller.close();
        open = false;
      });
      req.on("close", () => {
        if (open && !req.complete) controller.error(new Error("the client broke off its upload"));
        open = false;
      });
    },
    pull() {
      req.resume();
    },
    cancel() {
      open = false;
      req.resume(); // the rest is not wanted: let it drain (or the socket close)
    },
  });
}

/** The WHATWG Request for `req`, its body streamed; a refusal if there can be none. */
function toRequest(req, origin, signal) {
  let url;
  try {
    // Origin-form (/path) or absolute-form: only the path and query count. Origin-form is joined
    // to the origin as text: as a relative URL, "//evil.example/v1" would name another host.
    url = new URL(req.url.startsWith("/") ? origin + req.url : req.url);
  } catch {
    return refusal(400, "The request target is not a valid URL.", "invalid_request_target");
  }
  const headers = new Headers();
  try {
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i].toLowerCase();
      if (!HOP_BY_HOP.has(name)) headers.append(name, req.rawHeaders[i + 1]); // repeats joined ", "
    }
  } catch {
    return refusal(400, "A request header is not valid.", "invalid_header");
  }
  const hasBody = !["GET", "HEAD"].includes(req.method);
  try {
    return new Request(new URL(origin + url.pathname + url.search), {
      method: req.method,
      headers,
      body: hasBody ? bodyStream(req) : undefined,
      duplex: "half",
      signal,
    });
  } catch {
    // The WHATWG classes refuse some methods (TRACE, CONNECT, TRACK).
    return refusal(405, `Method ${req.method} is not allowed.`, "method_not_allowed", { allow: "GET, POST, DELETE, OPTIONS" });
  }
}

async function answer(handler, req, res, origin) {
  const abort = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) abort.abort(); // the client left
  });
  req.on("error", () => {}); // a body broken off reaches the handler as its stream's error
  const request = toRequest(req, origin, abort.signal);
  if (!(request instanceof Request)) return send(res, request);
  const response = await handler(request, {});
  res.writeHead(response.status, Object.fromEntries(response.headers));
  if (response.body) {
    const reader = response.body.getReader();
    abort.signal.addEventListener("abort", () => reader.cancel().catch(() => {}));
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) {
        await new Promise((resolve) => res.once("drain", resolve).once("close", resolve));
      }
    }
  }
  res.end();
}

export function serveWeb(handler, host, port, onListening) {
  const origin = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  // The request body's time limit is the proxy's own (BODY_TIMEOUT): Node's would cut it at 300 s.
  // A head must arrive within HEAD_TIMEOUT_MS (Node's own default, min(60 s, requestTimeout), is
  // no limit at all once requestTimeout is 0), checked every second.
  const server = http.createServer(
    { requestTimeout: 0, headersTimeout: HEAD_TIMEOUT_MS, connectionsCheckingInterval: 1000 },
    (req, res) => {
      answer(handler, req, res, origin).catch((error) => {
        console.error(JSON.stringify({ message: "the server failed", error: String(error).slice(0, 300) }));
        send(res, { ...refusal(500, "The proxy failed unexpectedly.", "internal_error"), status: 500 });
      });
    },
  );
  server.on("connect", (req, socket) => {
    // CONNECT (a tunnel): Node hands it over apart from requests; no function answers it.
    socket.on("error", () => {});
    const allow = { allow: "GET, POST, DELETE, OPTIONS" };
    sendRaw(socket, refusal(405, "Method CONNECT is not allowed.", "method_not_allowed", allow));
  });
  server.on("clientError", (error, socket) => {
    // Bad framing, oversized heads, a head too slow: Node's own refusals, in the proxy's shape.
    if (!socket.writable || error.code === "ECONNRESET") return void socket.destroy();
    const timeout = error.code === "ERR_HTTP_REQUEST_TIMEOUT";
    const big = error.code === "HPE_HEADER_OVERFLOW";
    sendRaw(
      socket,
      timeout
        ? refusal(408, "The request did not arrive in time.", "request_timeout")
        : big
          ? refusal(431, "The request's headers are too large.", "request_header_fields_too_large")
          : refusal(400, "The request is not valid HTTP.", "invalid_http"),
    );
  });
  server.listen(Number(port), host, () => {
    console.log(`listening on ${origin}`);
    onListening?.();
  });
  return server;
}

// Last resort: whatever escapes a request is logged, and the server goes on serving the others.
for (const event of ["unhandledRejection", "uncaughtException"]) {
  process.on(event, (error) => {
    console.error(JSON.stringify({ message: event, error: String(error).slice(0, 300) }));
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [, , modulePath, host, port] = process.argv;
  const { default: handler } = await import(pathToFileURL(modulePath).href);
  if (typeof handler.ready === "function") await handler.ready(); // listen once it can answer
  serveWeb(handler, host, port);
}
