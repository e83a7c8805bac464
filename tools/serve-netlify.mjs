// Netlify's platform, locally: a Blobs server in STATE_DIR (what `netlify dev` runs for a site's
// Blobs, from @netlify/blobs itself), its address given to the function as Netlify gives a
// deployed one its site's (NETLIFY_BLOBS_CONTEXT), then the function served as Netlify's Functions
// runtime serves it (tools/serve-web.mjs).
// Usage: node tools/serve-netlify.mjs <module.mjs> <host> <port>
import { randomUUID } from "node:crypto";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { setEnvironmentContext } from "../netlify/node_modules/@netlify/blobs/dist/main.js";
import { BlobsServer } from "../netlify/node_modules/@netlify/blobs/dist/server.js";
import { serveWeb } from "./serve-web.mjs";

const [, , modulePath, host, port] = process.argv;
const token = randomUUID();
const directory = resolve(process.env.STATE_DIR || ".state", "netlify-blobs");
const blobs = new BlobsServer({ directory, token, port: 0 });
const { port: blobsPort } = await blobs.start();
const url = `http://127.0.0.1:${blobsPort}`;
setEnvironmentContext({ edgeURL: url, uncachedEdgeURL: url, siteID: "local", token });

const { default: handler } = await import(pathToFileURL(modulePath).href);
await handler.ready(); // listen once it can answer
serveWeb(handler, host, port);
