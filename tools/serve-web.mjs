// Serves a web-standard handler (`(request, context) => Response`) on HOST:PORT under Node, as
// Netlify's Functions runtime calls a v2 function: each HTTP request becomes a WHATWG Request
// (its signal aborts when the client leaves) and the Response streams back, with backpressure;
// a client that leaves cancels the Response's body.
// Usage: node tools/serve-web.mjs <module.mjs> <host> <port>   (the module's default export)
//    or: import { serveWeb } from "./serve-web.mjs"
import http from "node:http";
import { pathToFileURL } from "node:url";

const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "host"]);

export function serveWeb(handler, host, port) {
  return http
    .createServer(async (req, res) => {
      const abort = new AbortController();
      res.on("close", () => {
        if (!res.writableFinished) abort.abort(); // the client left
      });
      const chunks = [];
      for await (const chunk of req) chunks.push(chunk);
      const headers = Object.entries(req.headers).filter(([name]) => !HOP_BY_HOP.has(name));
      const hasBody = !["GET", "HEAD"].includes(req.method);
      const request = new Request(`http://${req.headers.host}${req.url}`, {
        method: req.method,
        headers: headers.map(([name, value]) => [name, String(value)]),
        body: hasBody ? Buffer.concat(chunks) : undefined,
        signal: abort.signal,
      });
      try {
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
      } catch (error) {
        console.error(error);
        if (!res.headersSent) res.writeHead(500);
        res.end();
      }
    })
    .listen(Number(port), host, () => console.log(`listening on http://${host}:${port}`));
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [, , modulePath, host, port] = process.argv;
  const { default: handler } = await import(pathToFileURL(modulePath).href);
  serveWeb(handler, host, port);
}
