// `lens serve`: the models loaded once behind a small HTTP server on 127.0.0.1, one page and a JSON
// API built on the library (so its records equal --json). Guarded against other origins (DNS
// rebinding), large bodies and floods: one forward at a time, a bounded queue, nothing but the
// models loaded at start.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { networkInterfaces } from 'node:os';
import { randomBytes } from 'node:crypto';
import { LensError, openLens, toLensError, type AttributeOptions, type Lens, type OpenOptions, type RunOptions } from '../index.js';
import { renderLivePage } from '../render/live.js';

/** Request bodies past this are refused (413). */
export const MAX_BODY_BYTES = 1 << 20;
/** Requests waiting behind the running one before more are refused (503), by default. */
export const DEFAULT_QUEUE = 16;

export interface ServeOptions extends Omit<OpenOptions, 'model' | 'signal' | 'onProgress'> {
  /** Models to load (hub ids or directories); requests name one of these, the first by default. */
  models: string[];
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Requests that may wait behind the running one. */
  queue?: number;
  onProgress?: OpenOptions['onProgress'];
}

export interface Served {
  /** The origin served, e.g. http://127.0.0.1:8080 (no trailing slash). */
  origin: string;
  close(): Promise<void>;
}

/** What the server answers with: a status and a JSON body. */
class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly code = 'E_USAGE') { super(message); }
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

/** Whether `host` only listens on this machine. */
export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host);
}

/** The Host header values that name this server: the bound address (every interface's for a wildcard), and localhost for loopback. */
function allowedHosts(host: string, port: number): Set<string> {
  const bracket = (address: string) => (address.includes(':') ? `[${address}]` : address);
  const names = host === '0.0.0.0' || host === '::'
    ? ['localhost', ...Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address))]
    : isLoopback(host) ? ['127.0.0.1', 'localhost', '[::1]'] : [host];
  return new Set(names.map((name) => `${bracket(name.replace(/^\[|\]$/g, '')).toLowerCase()}:${port}`));
}

/** The request body as text, refusing more than MAX_BODY_BYTES (413). */
function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > MAX_BODY_BYTES) { reject(new HttpError(413, `the body is ${declared} bytes; at most ${MAX_BODY_BYTES} are read`)); return; }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) { reject(new HttpError(413, `the body is over ${MAX_BODY_BYTES} bytes`)); req.pause(); return; }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
    req.on('aborted', () => reject(new HttpError(400, 'the request was aborted')));
  });
}

/** The run options a request may set, checked for type; everything else in the body is refused. */
const RUN_FIELDS = ['command', 'positions', 'targets', 'k', 'sublayers', 'layers', 'raw', 'lensTargets', 'lens'] as const;
/** The same for /api/attribute. */
const ATTRIBUTE_FIELDS = ['positions', 'targets', 'heads'] as const;

/** A request's model, prompt and options (only `fields`, passed on to the library, which checks their values). Throws HttpError 400. */
function parseRequest<O>(text: string, models: Map<string, Lens>, first: string, fields: readonly string[]): { lens: Lens; prompt: string | string[]; options: O } {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, `the body is not JSON: ${(error as Error).message}`);
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'the body must be a JSON object such as {"prompt": "Paris is capital of"}');
  const { prompt, model = first, ...rest } = body as Record<string, unknown>;
  if (typeof prompt !== 'string' && !(Array.isArray(prompt) && prompt.length > 0 && prompt.every((p) => typeof p === 'string'))) {
    throw new HttpError(400, '"prompt" must be a string (or an array of strings)');
  }
  if (typeof model !== 'string' || !models.has(model)) {
    throw new HttpError(400, `model ${JSON.stringify(model)} is not served (serving: ${[...models.keys()].map((m) => JSON.stringify(m)).join(', ')})`);
  }
  const unknown = Object.keys(rest).filter((key) => !fields.includes(key));
  if (unknown.length > 0) throw new HttpError(400, `unknown field${unknown.length === 1 ? '' : 's'} ${unknown.map((k) => JSON.stringify(k)).join(', ')} (known: prompt, model, ${fields.join(', ')})`);
  return { lens: models.get(model)!, prompt, options: rest as O };
}

function send(res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, {
    'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store',
    'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY', ...extra,
  });
  res.end(body);
}

const sendJson = (res: ServerResponse, status: number, value: unknown) => send(res, status, 'application/json; charset=utf-8', JSON.stringify(value));

const STATUS_OF: Record<string, number> = { E_USAGE: 400, E_ABORTED: 499, E_CLOSED: 503, E_MODEL: 500, E_NETWORK: 502, E_INTERNAL: 500 };

/** Loads the models, then serves them until close(). Rejects with LensError when a model cannot be loaded or the port cannot be bound. */
export async function serve(options: ServeOptions): Promise<Served> {
  const host = options.host ?? '127.0.0.1';
  const queueLimit = options.queue ?? DEFAULT_QUEUE;
  const models = new Map<string, Lens>();
  try {
    for (const model of options.models) {
      if (!models.has(model)) models.set(model, await openLens({ ...options, model }));
    }
  } catch (error) {
    await Promise.all([...models.values()].map((lens) => lens.close()));
    throw error;
  }
  const first = options.models[0];
  const catalogue = { models: [...models.values()].map((lens) => ({ model: lens.model, layers: lens.layers, contextLength: lens.contextLength, vocabSize: lens.vocabSize, tuned: lens.tuned })) };

  // One forward at a time over all models: each run waits for the one before; `waiting` counts them.
  let chain: Promise<unknown> = Promise.resolve();
  let waiting = 0;
  const runSerially = async <T>(work: () => Promise<T>): Promise<T> => {
    if (waiting > queueLimit) throw new HttpError(503, `busy: ${waiting} requests are waiting; try again shortly`, 'E_BUSY');
    waiting++;
    const job = chain.then(work);
    chain = job.catch(() => {});
    try {
      return await job;
    } finally {
      waiting--;
    }
  };

  let hosts = new Set<string>();
  let origin = '';
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const hostHeader = (req.headers.host ?? '').toLowerCase();
    const originHeader = req.headers.origin;
    if (!hosts.has(hostHeader) || (originHeader !== undefined && !(originHeader.startsWith('http://') && hosts.has(originHeader.slice('http://'.length).toLowerCase())))) {
      throw new HttpError(403, `refused: requests must come from ${origin}`, 'E_FORBIDDEN');
    }
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/' && (req.method === 'GET' || req.method === 'HEAD')) {
      const nonce = randomBytes(16).toString('base64');
      send(res, 200, 'text/html; charset=utf-8', renderLivePage({ models: catalogue.models, nonce }), {
        'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
      });
      return;
    }
    if (path === '/api/models' && req.method === 'GET') { sendJson(res, 200, catalogue); return; }
    if (path === '/api/run' || path === '/api/attribute') {
      if (req.method !== 'POST') throw new HttpError(405, `POST a JSON body to ${path}`);
      const attribution = path === '/api/attribute';
      const { lens, prompt, options } = parseRequest<RunOptions & AttributeOptions>(await readBody(req), models, first, attribution ? ATTRIBUTE_FIELDS : RUN_FIELDS);
      // A client that goes away cancels its run, queued or running.
      const gone = new AbortController();
      res.on('close', () => { if (!res.writableFinished) gone.abort(); });
      const call = () => (attribution ? lens.attribute(prompt, { ...options, signal: gone.signal }) : lens.run(prompt, { ...options, signal: gone.signal }));
      const records = await runSerially<unknown[]>(() => (gone.signal.aborted ? Promise.reject(new LensError('E_ABORTED', 'cancelled')) : call()));
      sendJson(res, 200, { records });
      return;
    }
    throw new HttpError(404, `no ${req.method} ${path} here (GET /, GET /api/models, POST /api/run, POST /api/attribute)`, 'E_NOT_FOUND');
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      // After a refused body the rest of it may still be coming: the connection is not reused.
      if (error instanceof HttpError) { if (error.status === 413) res.setHeader('connection', 'close'); sendJson(res, error.status, { error: error.message, code: error.code }); return; }
      const lensError = toLensError(error);
      sendJson(res, STATUS_OF[lensError.code] ?? 500, { error: lensError.message, code: lensError.code });
    });
  });
  // A client that stalls on its headers or body is cut off rather than held forever.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.on('clientError', (_error, socket) => { if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n'); else socket.destroy(); });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(new LensError('E_USAGE', `cannot listen on ${host}:${options.port ?? 0}: ${error.code ?? error.message}`)));
    server.listen(options.port ?? 0, host, () => resolve());
  }).catch(async (error) => { await Promise.all([...models.values()].map((lens) => lens.close())); throw error; });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port ?? 0;
  hosts = allowedHosts(host, port);
  origin = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return {
    origin,
    async close() {
      await new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); });
      await Promise.all([...models.values()].map((lens) => lens.close()));
    },
  };
}
