// npm run bench:download: one large file from the loopback hub in one stream against 2, 4 and 8
// parallel ranges, with a round trip added before every answer and each connection capped (as a far
// hub or a CDN that shapes each connection). Also the cost of the sha256 pass over the assembled
// file, which the ranged path adds (one stream hashes as it writes). Medians of BENCH_REPS (3).
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { downloadFile } from '../src/model/hub.js';
import { startHub } from '../test/hub-server.js';

const MB = Number(process.env.BENCH_DOWNLOAD_MB ?? 16);
const LATENCY_MS = Number(process.env.BENCH_LATENCY_MS ?? 50);
// 64 KiB every 20 ms: about 3.3 MB/s per connection.
const CAP = { bytes: 64 << 10, everyMs: 20 };
const REPS = Number(process.env.BENCH_REPS ?? 3);
const FILE = 'onnx/model.onnx_data';

const scratch = mkdtempSync(join(tmpdir(), 'lens-bench-download-'));
const repo = join(scratch, 'repo');
mkdirSync(join(repo, 'onnx'), { recursive: true });
writeFileSync(join(repo, FILE), randomBytes(MB << 20));
const hub = await startHub();
hub.repos.set('bench/big', repo);
hub.latencyMs = LATENCY_MS;
hub.throttle = CAP;
hub.faults.set(FILE, 'throttle');

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const url = `${hub.url}/bench/big/resolve/main/${FILE}`;
const rows: { connections: number; ms: number; mbPerS: number }[] = [];
let run = 0;
for (const connections of [1, 2, 4, 8]) {
  const times: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const dest = join(scratch, `out-${run++}`, 'model.onnx_data');
    const env = { LENS_DOWNLOAD_CONNECTIONS: String(connections), LENS_PARALLEL_MIN_BYTES: '0' };
    const start = performance.now();
    await downloadFile(url, dest, env, undefined, FILE);
    times.push(performance.now() - start);
    rmSync(join(dest, '..'), { recursive: true, force: true });
  }
  const ms = median(times);
  rows.push({ connections, ms: Math.round(ms), mbPerS: Math.round(((MB * 1.048576) / (ms / 1000)) * 10) / 10 });
}
// The pass the ranged path adds: sha256 over the file once on disk (warm page cache, as just after a download).
const hashTimes: number[] = [];
for (let i = 0; i < REPS; i++) {
  const start = performance.now();
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(join(repo, FILE))) hash.update(chunk as Buffer);
  hash.digest();
  hashTimes.push(performance.now() - start);
}
await hub.close();
rmSync(scratch, { recursive: true, force: true });

const single = rows[0].ms;
process.stdout.write([
  `${MB} MiB file, ${LATENCY_MS} ms added per request, each connection capped at ${Math.round((CAP.bytes / CAP.everyMs) * 1000 / 1e5) / 10} MB/s; ${REPS} reps, medians`,
  '',
  '| connections | time | throughput | ratio to one stream |',
  '|---|---|---|---|',
  ...rows.map((r) => `| ${r.connections} | ${r.ms} ms | ${r.mbPerS} MB/s | ${(r.ms / single).toFixed(2)}× |`),
  '',
  `sha256 over the assembled ${MB} MiB file: ${Math.round(median(hashTimes))} ms`,
  '',
].join('\n'));
