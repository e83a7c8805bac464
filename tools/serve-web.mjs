// A local stand-in for Netlify's Functions runtime (v2): serves one function module on
// 127.0.0.1, turning each Node request into a WHATWG Request and streaming the Response back.
// Usage: node tests/peers/netlify_host.mjs <function.mjs> <port>
import http from "node:http";
import { pathToFileURL } from "node:url";

const [, , modulePath, port] = process.argv;
const { default: handler } = await import(pathToFileURL(modulePath).href);
const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "host"]);

http
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
      if (response.body) for await (const chunk of response.body) res.write(chunk);
      res.end();
    } catch (error) {
      console.error(error);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    }
  })
  .listen(Number(port), "127.0.0.1", () => console.log(`listening on ${port}`));
