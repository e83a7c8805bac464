// Netlify's platform, locally: a Blobs server in STATE_DIR (what `netlify dev` runs for a site's
// Blobs, from @netlify/blobs itself), its address given to the function as Netlify gives a
// deployed one its site's (NETLIFY_BLOBS_CONTEXT), then the function served as Netlify's Functions
// runtime serves it (tools/serve-web.mjs).
// Usage: node tools/serve-netlify.mjs <module.mjs> <host> <port>
import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import http from "node:http";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { setEnvironmentContext } from "../netlify/node_modules/@netlify/blobs/dist/main.js";
import { serveWeb } from "./serve-web.mjs";

const [, , modulePath, host, port] = process.argv;
const token = randomUUID();
const directory = resolve(process.env.STATE_DIR || ".state", "netlify-blobs");
// BlobsServer.start() listens on every interface; the function alone reaches it, so it is served
// here, as start() serves it, on the loopback address only. The server's code is loaded when the
// first request for it comes (a Responses call), not at the start: it is a tenth of a second of
// the platform's, which Netlify's own start does not have.
await mkdir(directory, { recursive: true });
let blobsHandling;
const blobsServer = http.createServer((req, res) => {
  blobsHandling ??= blobsHandler();
  blobsHandling.then((handle) => handle(req, res), (error) => res.destroy(error));
});
await new Promise((listening) => blobsServer.listen(0, "127.0.0.1", listening));
const url = `http://127.0.0.1:${blobsServer.address().port}`;
setEnvironmentContext({ edgeURL: url, uncachedEdgeURL: url, siteID: "local", token });

async function blobsHandler() {
  const { BlobsServer } = await import("../netlify/node_modules/@netlify/blobs/dist/server.js");
  const { createServerAdapter } = await import("../netlify/node_modules/@whatwg-node/server/esm/index.js");
  const blobs = new BlobsServer({ directory, token });
  blobs.address = url;
  return createServerAdapter((request) => blobs.handleRequest(request));
}

const { default: handler } = await import(pathToFileURL(modulePath).href);
await handler.ready(); // listen once it can answer
serveWeb(handler, host, port);
