// A stand-in for the Hugging Face hub on 127.0.0.1: serves model directories under
// /{org}/{name}/resolve/{revision}/{file} (Spaces under /spaces/{org}/{name}/…), counts requests,
// and misbehaves on request.
import { createServer, type Server } from 'node:http';
import { readFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';

export type Fault = 'none' | 'stall' | 'short' | 'missing';

export interface HubServer {
  url: string;
  /** Requests received, by path. */
  requests: string[];
  /** repo id (revision main) or `id@revision` → local directory; a Space's id starts with `spaces/`. */
  repos: Map<string, string>;
  /** file name (e.g. "onnx/model.onnx") → fault to inject for it. */
  faults: Map<string, Fault>;
  close(): Promise<void>;
}

/** Starts the server on an ephemeral loopback port. */
export async function startHub(): Promise<HubServer> {
  const requests: string[] = [];
  const repos = new Map<string, string>();
  const faults = new Map<string, Fault>();
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.push(path);
    const match = /^\/((?:spaces\/)?[^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(new URL(req.url ?? '/', 'http://x').pathname);
    const revision = match ? decodeURIComponent(match[2]) : '';
    const dir = match && repos.get(revision === 'main' ? match[1] : `${match[1]}@${revision}`);
    const file = match ? decodeURIComponent(match[3]) : '';
    const local = dir ? join(dir, file) : '';
    const fault = faults.get(file) ?? 'none';
    if (!dir || fault === 'missing' || file.includes('..') || !existsSync(local) || !statSync(local).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Entry not found');
      return;
    }
    const body = readFileSync(local);
    res.writeHead(200, { 'content-length': String(body.length), 'content-type': 'application/octet-stream' });
    if (fault === 'stall') {
      res.write(body.subarray(0, body.length >> 1)); // then nothing, with the connection held open
      return;
    }
    if (fault === 'short') {
      res.write(body.subarray(0, body.length >> 1), () => res.socket?.destroy());
      return;
    }
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`, requests, repos, faults,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

