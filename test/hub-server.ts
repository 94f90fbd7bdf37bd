// A stand-in for the Hugging Face hub on 127.0.0.1: serves model directories under
// /{org}/{name}/resolve/{revision}/{file} (Spaces under /spaces/{org}/{name}/…), counts requests and bytes, and misbehaves on request.
// As the hub does, it answers LFS files (the ONNX files and their data) with a redirect to
// storage carrying X-Linked-Etag (the file's sha256) and X-Linked-Size; storage (here the same
// path with ?storage) has its own ETag and honours Range and If-Range. Other files are served
// directly with a git-blob ETag and their Content-Length.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { readFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';

/**
 * stall: half the body, then silence; short: half the body, then the connection closed;
 * missing: 404; cut: the connection closed after `cutAfter` bytes of the body (each request);
 * tamper: one byte of the body changed, the published sha256 and size unchanged;
 * throttle: the body in `throttle.bytes` pieces every `throttle.everyMs`.
 */
export type Fault = 'none' | 'stall' | 'short' | 'missing' | 'cut' | 'tamper' | 'throttle';

export interface Served { method: string; path: string; storage: boolean; range?: string; ifRange?: string; status: number; bodyBytes: number }

export interface HubServer {
  url: string;
  /** Requests received, by path. */
  requests: string[];
  /** Every request with what was answered; bodyBytes counts the body bytes actually written. */
  served: Served[];
  /** repo id (revision main) or `id@revision` → local directory; a Space's id starts with `spaces/`. */
  repos: Map<string, string>;
  /** file name (e.g. "onnx/model.onnx") → fault to inject for it. */
  faults: Map<string, Fault>;
  /** file name → bytes served instead of the file on disk (a file changed on the hub). */
  contents: Map<string, Buffer>;
  /** For the fault `cut`: body bytes sent before the connection is closed. */
  cutAfter: number;
  /** For the fault `throttle`. */
  throttle: { bytes: number; everyMs: number };
  /** Added before every answer, as a far hub's round trip. */
  latencyMs: number;
  /** Whether storage honours Range (false: it answers every request with the whole file, 200). */
  ranges: boolean;
  /** Whether storage sends its ETag (false: no validator at all, as some mirrors). */
  storageEtags: boolean;
  close(): Promise<void>;
}

/** Files the hub keeps in LFS (as it does for the ONNX files and their weights). */
const isLfs = (file: string) => /\.onnx(_data(_\d+)?)?$/.test(file);

const gitBlobId = (body: Buffer) => createHash('sha1').update(`blob ${body.length}\0`).update(body).digest('hex');
const sha256 = (body: Buffer) => createHash('sha256').update(body).digest('hex');
/** Storage's own validator: not the sha256, as a CDN's is not. */
const storageEtag = (body: Buffer) => `"${createHash('md5').update(body).digest('hex')}"`;

/** Starts the server on an ephemeral loopback port. */
export async function startHub(): Promise<HubServer> {
  const hub: Omit<HubServer, 'url' | 'close'> = {
    requests: [], served: [], repos: new Map(), faults: new Map(), contents: new Map(),
    cutAfter: 0, throttle: { bytes: 1024, everyMs: 100 }, latencyMs: 0, ranges: true, storageEtags: true,
  };

  const answer = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = decodeURIComponent(url.pathname);
    hub.requests.push(path);
    const storage = url.searchParams.has('storage');
    const record: Served = { method: req.method ?? 'GET', path, storage, range: req.headers.range, ifRange: req.headers['if-range'] as string | undefined, status: 0, bodyBytes: 0 };
    hub.served.push(record);
    const send = (status: number, headers: Record<string, string>, body?: Buffer) => {
      record.status = status;
      res.writeHead(status, headers);
      if (body && req.method !== 'HEAD') { record.bodyBytes += body.length; res.end(body); } else res.end();
    };
    const match = /^\/((?:spaces\/)?[^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const revision = match ? decodeURIComponent(match[2]) : '';
    const dir = match && hub.repos.get(revision === 'main' ? match[1] : `${match[1]}@${revision}`);
    const file = match ? decodeURIComponent(match[3]) : '';
    const local = dir ? join(dir, file) : '';
    const fault = hub.faults.get(file) ?? 'none';
    const present = hub.contents.has(file) || (local !== '' && existsSync(local) && statSync(local).isFile());
    if (!dir || fault === 'missing' || file.includes('..') || !present) {
      send(404, { 'content-type': 'text/plain' }, Buffer.from('Entry not found'));
      return;
    }
    const body = hub.contents.get(file) ?? readFileSync(local);
    if (isLfs(file) && !storage) {
      const digest = sha256(body);
      send(302, { location: `${url.pathname}?storage=${digest}`, 'x-linked-etag': `"${digest}"`, 'x-linked-size': String(body.length), etag: `"${digest}"`, 'content-length': '0' });
      return;
    }
    const etag = isLfs(file) ? storageEtag(body) : `"${gitBlobId(body)}"`;
    let start = 0;
    let end = body.length; // exclusive
    let ranged = false;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range && hub.ranges && (req.headers['if-range'] === undefined || (hub.storageEtags && req.headers['if-range'] === etag))) {
      start = Number(range[1]);
      if (range[2] !== '') end = Math.min(body.length, Number(range[2]) + 1);
      ranged = start > 0 || end < body.length;
    }
    if (start > body.length || (ranged && start >= end)) { send(416, { 'content-range': `bytes */${body.length}` }); return; }
    const headers: Record<string, string> = { ...(hub.storageEtags || !storage ? { etag } : {}), ...(hub.ranges ? { 'accept-ranges': 'bytes' } : {}), 'content-type': 'application/octet-stream', 'content-length': String(end - start) };
    if (ranged) headers['content-range'] = `bytes ${start}-${end - 1}/${body.length}`;
    const status = ranged ? 206 : 200;
    if (req.method === 'HEAD') { send(status, headers); return; }
    let rest = body.subarray(start, end);
    if (fault === 'tamper') { rest = Buffer.from(rest); rest[rest.length >> 1] ^= 0xff; }
    record.status = status;
    res.writeHead(status, headers);
    const write = (piece: Buffer, then?: () => void) => { record.bodyBytes += piece.length; res.write(piece, then); };
    switch (fault) {
      case 'stall': write(rest.subarray(0, rest.length >> 1)); return; // then nothing, with the connection held open
      case 'short': write(rest.subarray(0, rest.length >> 1), () => res.socket?.destroy()); return;
      case 'cut': write(rest.subarray(0, hub.cutAfter), () => res.socket?.destroy()); return;
      case 'throttle': {
        let offset = 0;
        const step = () => {
          if (res.destroyed) return;
          const piece = rest.subarray(offset, offset + hub.throttle.bytes);
          offset += piece.length;
          if (offset >= rest.length) { record.bodyBytes += piece.length; res.end(piece); return; }
          write(piece);
          setTimeout(step, hub.throttle.everyMs);
        };
        step();
        return;
      }
      default: record.bodyBytes += rest.length; res.end(rest);
    }
  };

  const server: Server = createServer((req, res) => {
    if (hub.latencyMs > 0) setTimeout(() => answer(req, res), hub.latencyMs);
    else answer(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(hub, {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  });
}
