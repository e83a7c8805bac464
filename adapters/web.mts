/**
 * The web-standard driver: `(Request) => Promise<Response>` around the proxy's `core/` running in
 * Pyodide, with `fetch` doing the HTTP. Netlify's function uses it; so can any host whose
 * handlers take a WHATWG Request (Deno, edge runtimes).
 *
 * Like the asyncio driver (`adapters/driver.py`) it is a loop around `core.exchange`: it asks for
 * the next action and performs it (read the body, start or stop a call to Poe, send the head,
 * write bytes) and reports what the calls do. Nothing here decides anything a client sees;
 * `adapters/pyodide_bridge.py` turns each action into one plain JavaScript array (and the commonest
 * batch, bytes to write then a wait, into just the bytes).
 *
 * Streaming: the Response body is a ReadableStream fed by the loop as core writes; the loop
 * waits while the client has not taken what was written (backpressure). A client that leaves
 * cancels the stream, which aborts every call to Poe.
 */
import type { PyodideInterface } from "pyodide";
import type { PyProxy } from "pyodide/ffi";

export interface Host {
  /** The settings (POE_BASE_URL, POE_BACKEND, ...), as the host's environment gives them. */
  environment: Record<string, string>;
  /** The Python sources to run: paths like "core/exchange.py" with their contents. */
  sources(): Promise<Array<[string, Uint8Array]>>;
  /** Pyodide, started; `digest` names the sources (see `startPyodide`). */
  pyodide(digest: string): Promise<PyodideInterface>;
  /** Where the one log line per request goes. */
  log?(line: string): void;
  /** The runtime's `fetch`, where it needs help (default: the global one). */
  fetch?: typeof fetch;
  /** Where responses are kept (`core/state.py` says what); or why there is nowhere. */
  store: Store | { missing: string };
}

/** Bytes by key: the host platform's store (Deno KV, Netlify Blobs, ...). */
export interface Store {
  /** Each key's value, null where there is none. */
  get(keys: string[]): Promise<Array<Uint8Array | null>>;
  /** Write them; they may go after `ttl` seconds. */
  put(keys: string[], values: Uint8Array[], ttl: number): Promise<void>;
  delete(keys: string[]): Promise<void>;
}

interface Core {
  bridge: PyProxy;
  proxy: PyProxy;
  sealer: Sealer;
  /** POE_CONNECT_TIMEOUT and POE_READ_TIMEOUT, in milliseconds. */
  connectTimeout: number;
  readTimeout: number;
}

/** A digest of the Python sources: a memory snapshot made from other sources is stale. */
export async function sourcesDigest(sources: Array<[string, Uint8Array]>): Promise<string> {
  const parts = sources.toSorted(([a], [b]) => (a < b ? -1 : 1)).flatMap(([path, content]) => [
    new TextEncoder().encode(`${path}\0${content.length}\0`),
    content,
  ]);
  const whole = concat(parts, parts.reduce((n, part) => n + part.length, 0));
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", whole));
  return Array.from(hash, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Put the sources where Python imports them from, and import the bridge (and so core). */
export function importSources(py: PyodideInterface, sources: Array<[string, Uint8Array]>): PyProxy {
  for (const [path, content] of sources) {
    py.FS.mkdirTree(`/proxy/${path.slice(0, path.lastIndexOf("/"))}`);
    py.FS.writeFile(`/proxy/${path}`, content);
  }
  py.runPython("import sys; sys.path.insert(0, '/proxy')");
  return py.pyimport("adapters.pyodide_bridge") as PyProxy;
}

export interface Snapshot {
  /** What it was made from: Pyodide's version and the sources' digest. */
  pyodide: string;
  sources: string;
  memory: Uint8Array;
}

/**
 * Pyodide from a memory snapshot made with the sources already imported (seconds less of start),
 * if there is one made by this Pyodide from these sources; otherwise a plain start, said in the
 * log. `load` is the host's `loadPyodide`; `version` is its package's version.
 */
export async function startPyodide(
  load: (options?: Record<string, unknown>) => Promise<PyodideInterface>,
  version: string,
  digest: string,
  snapshot: Snapshot | undefined,
  log: (line: string) => void = console.log,
): Promise<PyodideInterface> {
  if (snapshot && snapshot.pyodide === version && snapshot.sources === digest) {
    return load({ _loadSnapshot: snapshot.memory });
  }
  const why = !snapshot ? "there is none" : snapshot.pyodide !== version ? "another Pyodide made it" : "the sources changed";
  log(JSON.stringify({ message: `no memory snapshot (${why}): a plain Pyodide start` }));
  return load();
}

async function boot(host: Host): Promise<Core> {
  const sources = await host.sources();
  const py = await host.pyodide(await sourcesDigest(sources));
  const bridge = importSources(py, sources); // already imported, when from a snapshot
  // Invalid settings fail here, on every request, as the ASGI app refuses to start.
  const missing = "missing" in host.store ? host.store.missing : undefined; // undefined: None
  const proxy = bridge.start(host.environment, missing) as PyProxy;
  const settings = proxy.settings as PyProxy;
  const timeouts = { connectTimeout: settings.connect_timeout * 1000, readTimeout: settings.read_timeout * 1000 };
  settings.destroy();
  const seal = (bridge.SEAL as PyProxy).toJs({ dict_converter: Object.fromEntries });
  return { bridge, proxy, sealer: new Sealer(seal.salt, seal.info, seal.version), ...timeouts };
}

const utf8 = new TextEncoder();

/**
 * Seals and opens what the store keeps, as core's `Store` says: AES-256-GCM under a key that
 * HKDF-SHA256 derives from the caller's credential, a random 96-bit nonce, the entry's key as
 * additional data; `version`, the nonce, then the ciphertext and its tag. WebCrypto's, as every
 * JavaScript host has it (the Python hosts use the `cryptography` package).
 */
class Sealer {
  private readonly keys = new Map<string, Promise<CryptoKey>>(); // a key per credential, derived once
  private readonly salt: Uint8Array;
  private readonly info: Uint8Array;

  constructor(salt: string, info: string, private readonly version: number) {
    this.salt = utf8.encode(salt);
    this.info = utf8.encode(info);
  }

  private key(secret: string): Promise<CryptoKey> {
    let key = this.keys.get(secret);
    if (key === undefined) {
      if (this.keys.size >= 1024) this.keys.delete(this.keys.keys().next().value as string);
      const hkdf = { name: "HKDF", hash: "SHA-256", salt: this.salt, info: this.info };
      key = crypto.subtle
        .importKey("raw", utf8.encode(secret), "HKDF", false, ["deriveKey"])
        .then((base) => crypto.subtle.deriveKey(hkdf, base, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]));
      this.keys.set(secret, key);
    }
    return key;
  }

  async seal(secret: string, name: string, value: Uint8Array): Promise<Uint8Array> {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const algorithm = { name: "AES-GCM", iv, additionalData: utf8.encode(name) };
    const sealed = new Uint8Array(await crypto.subtle.encrypt(algorithm, await this.key(secret), value));
    const out = new Uint8Array(13 + sealed.length);
    out[0] = this.version;
    out.set(iv, 1);
    out.set(sealed, 13);
    return out;
  }

  async open(secret: string, name: string, value: Uint8Array): Promise<Uint8Array | null> {
    if (value[0] !== this.version || value.length < 29) return null;
    const algorithm = { name: "AES-GCM", iv: value.subarray(1, 13), additionalData: utf8.encode(name) };
    try {
      return new Uint8Array(await crypto.subtle.decrypt(algorithm, await this.key(secret), value.subarray(13)));
    } catch {
      return null; // another's, or not what this wrote
    }
  }
}

type Action = [string, ...unknown[]];

/** What the bridge answers with: the actions; or, for bytes to write and then a wait (the
 * commonest answer to a chunk of Poe's), just the bytes. */
function actionsOf(answer: Action[] | Uint8Array): Action[] {
  return answer instanceof Uint8Array ? [["write", answer], ["wait"]] : answer;
}
type Reason = "refused" | "connect_timeout" | "timeout" | "reset";

function failureReason(error: unknown, answered: boolean): Reason {
  if ((error as Error)?.name === "TimeoutError") return "timeout";
  if (answered) return "reset";
  const cause = (error as { cause?: { code?: string } })?.cause;
  const said = `${String(error)} ${cause?.code ?? ""} ${String(cause ?? "")}`;
  return /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|refused|dns error/i.test(said) ? "refused" : "reset";
}

/**
 * A call's timeout: each `arm(ms)` gives it `ms` more (the head, then each read), and when a
 * deadline passes unmet, `expire` runs (the call ends its pending `fetch` or read). One timer per
 * call, moved along rather than made per read: a deadline that has moved is checked when the
 * timer fires, and the timer set again for the rest.
 */
class Deadline {
  private at = 0;
  private timer?: ReturnType<typeof setTimeout>;
  private readonly due: number; // the whole call's end (`StartCall.deadline`), or Infinity

  constructor(private readonly expire: () => void, wholeMs?: number | null) {
    this.due = wholeMs == null ? Infinity : performance.now() + wholeMs;
  }

  arm(ms: number): void {
    ms = Math.max(0, Math.min(ms, this.due - performance.now()));
    this.at = performance.now() + ms;
    this.timer ??= setTimeout(this.check, ms);
  }

  disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private readonly check = (): void => {
    const left = this.at - performance.now();
    if (left > 0) {
      this.timer = setTimeout(this.check, left);
    } else {
      this.timer = undefined;
      this.expire();
    }
  };
}

/**
 * A response body read into one buffer of its own, handed back and forth (a BYOB reader): a
 * default reader gets a new buffer per read (Deno's fetch: 64 KiB each, however little came), and
 * an answer is hundreds of reads, so a hundred streams made gigabytes of garbage for the
 * collector to catch up with. Each piece read must be used before the next read (core copies it).
 */
class BodyReader {
  private readonly reader: ReadableStreamBYOBReader | ReadableStreamDefaultReader<Uint8Array>;
  private buffer?: ArrayBuffer;

  constructor(body: ReadableStream<Uint8Array>) {
    try {
      this.reader = body.getReader({ mode: "byob" });
      this.buffer = new ArrayBuffer(BUFFER_BYTES);
    } catch {
      this.reader = body.getReader(); // not a byte stream: a buffer per read after all
    }
  }

  async read(): Promise<ReadableStreamReadResult<Uint8Array>> {
    if (this.buffer === undefined) return (this.reader as ReadableStreamDefaultReader<Uint8Array>).read();
    const read = await (this.reader as ReadableStreamBYOBReader).read(new Uint8Array(this.buffer));
    if (read.value) this.buffer = read.value.buffer as ArrayBuffer; // the same memory, handed back
    return read as ReadableStreamReadResult<Uint8Array>;
  }

  cancel(): Promise<void> {
    return this.reader.cancel();
  }
}

const BUFFER_BYTES = 64 * 1024;
const OUT_HIGH_WATER = 64 * 1024; // answer bytes written but not yet taken by the client: the loop waits

function concat(parts: Uint8Array[], size: number): Uint8Array {
  const whole = new Uint8Array(size);
  parts.reduce((offset, part) => (whole.set(part, offset), offset + part.length), 0);
  return whole;
}

/** One call to Poe; each `next()` is the next thing to report about it. */
class Call {
  readonly abort = new AbortController();
  private readonly deadline: Deadline;
  private expired = false; // its deadline passed: whatever the pending step settles with, a timeout
  private reader?: BodyReader;
  private pending?: Promise<Action>;

  constructor(
    readonly id: number,
    private readonly request: (signal: AbortSignal) => Promise<Response>,
    private readonly timeouts: { head: number; read: number; whole?: number | null },
  ) {
    this.deadline = new Deadline(() => this.expire(), timeouts.whole);
  }

  next(): Promise<Action> {
    return (this.pending ??= this.read());
  }

  taken(): void {
    this.pending = undefined;
  }

  private async read(): Promise<Action> {
    try {
      if (!this.reader) {
        this.deadline.arm(this.timeouts.head);
        const response = await this.request(this.abort.signal);
        if (this.expired) {
          response.body?.cancel().catch(() => {}); // it came just as the deadline passed
          return ["failed", "timeout"];
        }
        this.reader = new BodyReader(response.body!);
        return ["answered", response.status, Object.fromEntries(response.headers)];
      }
      this.deadline.arm(this.timeouts.read);
      const { done, value } = await this.reader.read();
      if (this.expired) return ["failed", "timeout"];
      if (done) this.deadline.disarm();
      return done ? ["ended"] : ["data", value];
    } catch (error) {
      this.deadline.disarm();
      return ["failed", this.expired ? "timeout" : failureReason(error, this.reader !== undefined)];
    }
  }

  /** Out of time: the pending step ends, as a timeout. */
  private expire(): void {
    this.expired = true;
    this.close(new DOMException("Poe did not answer in time", "TimeoutError"));
  }

  /**
   * Abort the fetch, and cancel its body too. Closing the connection cancels the call at Poe,
   * and Deno's fetch does neither on the abort alone once the response has begun: it keeps the
   * connection, and a pending body read can go on waiting (seen under load: until the client
   * gave up, 30 s later). A cancelled reader settles the read at once.
   */
  private close(reason?: unknown): void {
    this.abort.abort(reason);
    this.reader?.cancel().catch(() => {});
  }

  stop(reuse: boolean): void {
    this.deadline.disarm();
    if (reuse && this.reader) {
      // Poe sent all that matters: let the body's end arrive, so the connection is kept.
      const reader = this.reader;
      const drain = (): Promise<void> => reader.read().then(({ done }) => (done ? undefined : drain()));
      drain().catch(() => {});
    } else {
      this.close();
    }
  }
}

function bytesOrNull(value: unknown): Uint8Array | undefined {
  return value === undefined || value === null ? undefined : (value as Uint8Array);
}

export interface WebHandler {
  (request: Request): Promise<Response>;
  /** Start Pyodide and core now (a host that can wait before it listens), not on the first request. */
  ready(): Promise<void>;
}

/** The handler for `host`; Pyodide and core start on its first request, or at `ready()`. */
export function webHandler(host: Host): WebHandler {
  let booting: Promise<Core> | undefined;
  const handler = async (request: Request) => {
    const received = performance.now(); // a request's duration includes waiting for the start
    return serve(await (booting ??= boot(host)), host, request, received);
  };
  return Object.assign(handler, { ready: async () => void (await (booting ??= boot(host))) });
}

/** The request body, a piece at a time, all of it due by one deadline (`Settings.body_timeout`). */
class Body {
  private readonly reader?: ReadableStreamDefaultReader<Uint8Array>;
  private deadline?: ReturnType<typeof setTimeout>;
  private ended?: "timeout" | "aborted"; // why reading stopped early

  constructor(request: Request) {
    this.reader = request.body?.getReader();
  }

  /** `[piece, more]`, or why it did not come: "timeout" or "aborted" (the client broke off). */
  async next(seconds: number): Promise<[Uint8Array, boolean] | "timeout" | "aborted"> {
    if (!this.reader) return [new Uint8Array(0), false];
    this.deadline ??= setTimeout(() => this.stop("timeout"), seconds * 1000);
    try {
      const read = await this.reader.read(); // cancelled at the deadline: then it is done
      if (this.ended) return this.ended;
      if (read.done) return [new Uint8Array(0), false];
      return [read.value, true];
    } catch {
      return "aborted";
    }
  }

  /** Stop reading: whatever is left of the body is not wanted (its connection can go). */
  close(): void {
    this.stop("aborted");
  }

  private stop(why: "timeout" | "aborted"): void {
    this.ended ??= why;
    clearTimeout(this.deadline);
    this.reader?.cancel().catch(() => {});
  }
}

/** The path and query of a request's URL, as they came. Not by `new URL`: a runtime builds the
 * URL from the Host header, which may not parse (`Host: a b`), and core answers for that. */
function targetOf(address: string): string {
  const start = address.indexOf("/", address.indexOf("//") + 2);
  if (start < 0) return "/";
  const fragment = address.indexOf("#", start);
  return fragment < 0 ? address.slice(start) : address.slice(start, fragment);
}

function log(host: Host, level: string, line: string): void {
  if (host.log) host.log(line);
  else if (level === "error") console.error(line);
  else if (level === "warning") console.warn(line);
  else console.log(line);
}

async function serve(core: Core, host: Host, request: Request, received: number): Promise<Response> {
  const { bridge } = core;
  const exchange = bridge.request(
    core.proxy,
    request.method,
    targetOf(request.url), // as it came, percent-encoded: core resolves it
    Object.fromEntries(request.headers), // a repeated field's values joined with ", "
    () => crypto.randomUUID().replaceAll("-", ""),
    Date.now() / 1000,
  ) as PyProxy;
  const calls = new Map<number, Call>();
  const body = new Body(request);
  const stopAll = () => {
    for (const call of calls.values()) call.stop(false);
    calls.clear();
    body.close();
  };

  let respond!: (response: Response) => void;
  const response = new Promise<Response>((resolve) => (respond = resolve));
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  // The answer's stream is pulled by the client (high-water mark 0: a pull means the client waits
  // for bytes). A write goes to a waiting client at once; what is written while the client is busy
  // waits here and goes as one chunk at its next pull (the client's pace coalesces the writes, and
  // adds no wait). Past OUT_HIGH_WATER bytes waiting, the loop waits for the client.
  let waiting: Uint8Array[] = [];
  let waitingBytes = 0;
  let wanted = false; // the client waits for bytes: the stream pulled and got none
  let taken: (() => void) | undefined; // the loop waiting for the client to take what waits
  let gone = false;
  const leave = () => {
    if (gone) return;
    gone = true; // the client left: stop everything (each pending read then ends), answer no one
    stopAll();
    taken?.();
    respond(new Response(null, { status: 499 }));
  };
  request.signal?.addEventListener("abort", leave);

  const flush = () => {
    const data = waiting.length === 1 ? waiting[0] : concat(waiting, waitingBytes);
    waiting = [];
    waitingBytes = 0;
    controller!.enqueue(data);
    taken?.();
  };

  const stream = () =>
    new ReadableStream<Uint8Array>(
      {
        start(c) {
          controller = c;
        },
        pull() {
          if (waiting.length > 0) flush();
          else wanted = true;
        },
        cancel: leave,
      },
      { highWaterMark: 0 },
    );

  async function write(data: Uint8Array): Promise<void> {
    if (gone || data.length === 0) return;
    if (wanted) {
      // Nothing waits after an enqueue: Deno may find the client gone within `enqueue` itself and
      // cancel the stream there, and then nothing would ever pull again.
      wanted = false;
      controller!.enqueue(data);
      return;
    }
    waiting.push(data);
    waitingBytes += data.length;
    if (waitingBytes >= OUT_HIGH_WATER) await clientTook();
  }

  /** Until the client has taken what waits here (or has left). */
  function clientTook(): Promise<void> {
    return new Promise<void>((resolve) => {
      taken = () => {
        taken = undefined;
        resolve();
      };
    });
  }

  /** Close the answer once the client has taken all of it (every chunk enqueued went to a read
   * that waited for it: the stream's queue holds none). */
  async function end(): Promise<void> {
    while (waiting.length > 0 && !gone) await clientTook();
    if (!gone) controller?.close();
  }

  /** The next thing an open call reports, reported to core; the actions it leads to. */
  async function nextEvent(): Promise<Action[]> {
    // Whichever open call has something first (a client that leaves stops them all, which
    // ends each pending read at once); with one call, as most requests have, just its next.
    const only = calls.size === 1 ? calls.values().next().value : undefined;
    const [call, event] = only
      ? [only, await only.next()]
      : await Promise.race([...calls.values()].map((c) => c.next().then((e) => [c, e] as const)));
    call.taken();
    if (!calls.has(call.id)) return actionsOf(bridge.next_actions(exchange)); // stopped meanwhile
    const [kind, a, b] = event;
    if (kind === "data") return actionsOf(bridge.data(exchange, call.id, a));
    if (kind === "answered") return actionsOf(bridge.answered(exchange, call.id, a, b));
    calls.delete(call.id);
    return actionsOf(kind === "ended" ? bridge.ended(exchange, call.id) : bridge.failed(exchange, call.id, a));
  }

  async function readBody(): Promise<Action[]> {
    const piece = await body.next(exchange.body_timeout as number);
    if (piece === "timeout" || piece === "aborted") {
      const actions = actionsOf(bridge.body_failed(exchange, piece));
      if (piece === "aborted") leave();
      return actions;
    }
    return actionsOf(bridge.body(exchange, piece[0], piece[1]));
  }

  async function store(op: string, keys: string[], values: Uint8Array[], ttl: number, secret: string): Promise<Action[]> {
    let read: Array<Uint8Array | undefined> | undefined; // undefined: Python's None
    const { sealer } = core;
    try {
      const kept = host.store as Store; // core asks only a host that has one
      if (op === "get") {
        const found = await kept.get(keys);
        const opened = secret ? await Promise.all(found.map((v, i) => (v ? sealer.open(secret, keys[i], v) : null))) : found;
        read = opened.map((value) => value ?? undefined);
      } else if (op === "put") {
        await kept.put(keys, secret ? await Promise.all(values.map((v, i) => sealer.seal(secret, keys[i], v))) : values, ttl);
      } else await kept.delete(keys);
    } catch (error) {
      return actionsOf(bridge.store_failed(exchange, String(error).slice(0, 200)));
    }
    return actionsOf(bridge.stored(exchange, read));
  }

  async function loop(): Promise<void> {
    // Core's actions come in batches, each up to one that waits on this loop (a call's next
    // event, the body, the store), which is answered with the next batch.
    let actions = actionsOf(bridge.next_actions(exchange));
    let at = 0;
    for (;;) {
      if (gone) return;
      const [kind, ...fields] = actions[at++];
      if (kind === "wait") [actions, at] = [await nextEvent(), 0];
      else if (kind === "write") await write(fields[0] as Uint8Array);
      else if (kind === "call") {
        const [id, method, target, headers, content, whole] = fields as [
          number, string, string, Record<string, string>, unknown, number | null,
        ];
        // "manual": a redirect is core's to follow or not (it checks where one leads), as on
        // the asyncio hosts, whose client follows none.
        const init: RequestInit = { method, headers, body: bytesOrNull(content), redirect: "manual" };
        const request = (signal: AbortSignal) => (host.fetch ?? fetch)(target, { ...init, signal });
        // The head (connecting included) and each later read get the read timeout, as httpx
        // gives the asyncio hosts' calls once connected.
        // A call core bounds as a whole (a bot's file) is also cut at its deadline, whatever comes.
        const timeouts = { head: core.readTimeout, read: core.readTimeout, whole: whole == null ? null : whole * 1000 };
        calls.set(id, new Call(id, request, timeouts));
      } else if (kind === "stop") {
        const call = calls.get(fields[0] as number);
        calls.delete(fields[0] as number);
        call?.stop(fields[1] as boolean);
      } else if (kind === "respond") {
        body.close(); // what the answer did not need of the body is not read
        const [status, headers, content, more] = fields as [number, Record<string, string>, Uint8Array, boolean];
        if (!more) {
          respond(new Response(status === 204 ? null : content, { status, headers }));
        } else {
          respond(new Response(stream(), { status, headers }));
          await write(content);
        }
      } else if (kind === "read_body") {
        [actions, at] = [await readBody(), 0];
      } else if (kind === "store") {
        [actions, at] = [await store(...(fields as [string, string[], Uint8Array[], number, string])), 0];
      } else {
        await end(); // done
        return;
      }
    }
  }

  loop()
    .catch((error) => {
      // A failure of this driver's own: core still says what the client gets (and the log line,
      // at error level); its name and message are logged here, never a body.
      log(host, "error", JSON.stringify({ message: "the driver failed", error: String(error).slice(0, 300) }));
      const [kind, status, headers, content] = actionsOf(bridge.crash(exchange, String(error)))[0];
      if (kind === "respond") respond(new Response(content as Uint8Array, { status: status as number, headers: headers as Record<string, string> }));
      else if (kind === "write" && controller && !gone) {
        waiting.push(status as Uint8Array); // after what was written before it, if not yet taken
        controller.enqueue(concat(waiting, waitingBytes + (status as Uint8Array).length));
      }
      if (!gone) controller?.close();
    })
    .catch(() => respond(new Response(null, { status: 500 }))) // not even that: still an answer
    .finally(() => {
      try {
        request.signal?.removeEventListener("abort", leave); // the runtime may keep the request a while
        stopAll();
        if (gone) bridge.client_left(exchange);
        const line = bridge.record(exchange) as [string, Record<string, unknown>] | null;
        if (line) {
          const [level, record] = line;
          record.duration_ms = Math.round((performance.now() - received) * 10) / 10;
          log(host, level, JSON.stringify(record));
        }
      } finally {
        exchange.destroy();
      }
    });
  return response;
}
