// Anchor: the web-standard relay, the floor of the JavaScript hosts. The same Request => Response
// shape as the proxy's web driver (adapters/web.mts), with nothing in between: the upstream's
// answer is passed through as it comes, each chunk read from `fetch` and written to the Response. Under Node it
// is served by tools/serve-web.mjs, as `make serve-netlify` serves the Netlify function (and
// `make serve-cloudflare` is Node too); under Deno by Deno.serve, as `make serve-deno` is.
// Usage: UPSTREAM=<url> node tools/serve-web.mjs bench/anchors/web_relay.mjs <host> <port>
//    or: UPSTREAM=<url> deno run --allow-net --allow-env bench/anchors/web_relay.mjs <host> <port>
const env = (name) => (globalThis.Deno ? Deno.env.get(name) : process.env[name]);
const upstream = env("UPSTREAM");

export default async function relay(request) {
  const answer = await fetch(upstream + new URL(request.url).pathname, {
    method: "POST",
    headers: { authorization: request.headers.get("authorization") ?? "", "content-type": "application/json" },
    body: await request.arrayBuffer(),
  });
  const type = answer.headers.get("content-type") ?? "application/json";
  // Each chunk through JavaScript, as a converting proxy must take it (a body handed to the
  // Response whole may be passed on natively, never seen by JavaScript: Deno does that).
  const reader = answer.body.getReader();
  const body = new ReadableStream({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
  return new Response(body, { status: answer.status, headers: { "content-type": type } });
}

if (globalThis.Deno && import.meta.main) {
  const [hostname, port] = Deno.args;
  Deno.serve({ hostname, port: Number(port), onListen() {} }, relay);
}
