// Parallel ranges of a large file against the loopback hub: the assembled file is the published
// one, a cut resumes every range where it stopped, a server without ranges gets one stream, and a
// file changed between tries is fetched anew.
import { test, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { downloadFile } from '../src/model/hub.js';
import { fixture, scratchDir } from './helpers.js';
import { startHub } from './hub-server.js';

const { dir: MODEL } = fixture('opset17-merged-external');
const DATA = 'onnx/model.onnx_data';
const DATA_BYTES = readFileSync(join(MODEL, DATA));
const SIZE = DATA_BYTES.length;
const hub = await startHub();
hub.repos.set('tiny/gpt2', MODEL);
after(() => hub.close());
beforeEach(() => {
  hub.faults.clear(); hub.contents.clear(); hub.served.length = 0; hub.ranges = true; hub.storageEtags = true;
});

const ONE_CHUNK = 64 << 10;
const CONNECTIONS = 4;
// No test here stalls on purpose: a generous stall limit keeps a loaded machine from failing a transfer that is only slow.
const env = { HF_ENDPOINT: hub.url, LENS_STALL_TIMEOUT_MS: '60000', LENS_DOWNLOAD_CONNECTIONS: String(CONNECTIONS), LENS_PARALLEL_MIN_BYTES: '0' };
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const fetchData = (dest: string) => downloadFile(`${hub.url}/tiny/gpt2/resolve/main/${DATA}`, dest, env, undefined, DATA);
const gets = () => hub.served.filter((s) => s.method === 'GET' && s.storage);
/** The four ranges written out by hand: quarters of the file, the last one taking the remainder. */
const QUARTERS = [0, 1, 2, 3].map((i) => [Math.floor((SIZE * i) / 4), Math.floor((SIZE * (i + 1)) / 4) - 1]);

test('a large file fetched in four concurrent ranges is the published file, each byte sent once', async () => {
  const dest = join(scratchDir('parallel'), 'model.onnx_data');
  assert.equal(await fetchData(dest), SIZE);
  assert.equal(sha256(readFileSync(dest)), sha256(DATA_BYTES));
  const asked = gets().map((g) => g.range).sort((a, b) => Number(/=(\d+)/.exec(a!)![1]) - Number(/=(\d+)/.exec(b!)![1]));
  assert.deepEqual(asked, QUARTERS.map(([a, b]) => `bytes=${a}-${b}`));
  assert.ok(gets().every((g) => g.status === 206 && g.ifRange !== undefined));
  assert.equal(gets().reduce((n, g) => n + g.bodyBytes, 0), SIZE);
  assert.deepEqual(readdirSync(join(dest, '..')), ['model.onnx_data'], 'no partial or record left');
});

test('a cut in every range resumes each one where it stopped: no byte sent twice beyond one chunk per range', async () => {
  const dest = join(scratchDir('parallel-cut'), 'model.onnx_data');
  hub.faults.set(DATA, 'cut');
  hub.cutAfter = Math.floor(SIZE / 12); // a third of each quarter
  await assert.rejects(fetchData(dest), /download of onnx\/model\.onnx_data (was interrupted|was cut short).*/);
  assert.ok(existsSync(`${dest}.incomplete`) && existsSync(`${dest}.incomplete.json`), 'partial and its range record kept');
  assert.ok(!existsSync(dest));
  const firstTry = gets().length;
  hub.faults.clear();
  assert.equal(await fetchData(dest), SIZE);
  assert.equal(sha256(readFileSync(dest)), sha256(DATA_BYTES));
  const resumed = gets().slice(firstTry);
  assert.equal(resumed.length, CONNECTIONS);
  for (const [start, end] of QUARTERS) {
    const again = resumed.find((g) => { const [, a, b] = /^bytes=(\d+)-(\d+)$/.exec(g.range!)!.map(Number); return a > start && a <= start + hub.cutAfter && b === end; });
    assert.ok(again, `range ${start}-${end} resumed past its start: asked ${resumed.map((g) => g.range).join(', ')}`);
  }
  const sent = gets().reduce((n, g) => n + g.bodyBytes, 0);
  assert.ok(sent >= SIZE && sent - SIZE <= CONNECTIONS * ONE_CHUNK, `storage sent ${sent} bytes for a ${SIZE}-byte file`);
});

test('a server without range support gets one stream', async () => {
  hub.ranges = false;
  const dest = join(scratchDir('parallel-no-ranges'), 'model.onnx_data');
  assert.equal(await fetchData(dest), SIZE);
  assert.deepEqual(gets().map((g) => [g.range, g.status, g.bodyBytes]), [[undefined, 200, SIZE]]);
  assert.equal(sha256(readFileSync(dest)), sha256(DATA_BYTES));
});

test('a file changed on the hub between tries is fetched anew in ranges from their starts', async () => {
  const dest = join(scratchDir('parallel-changed'), 'model.onnx_data');
  hub.faults.set(DATA, 'cut');
  hub.cutAfter = Math.floor(SIZE / 8);
  await assert.rejects(fetchData(dest), /download of onnx\/model\.onnx_data/);
  hub.faults.clear();
  const changed = Buffer.from(DATA_BYTES);
  for (let i = 0; i < changed.length; i += 4096) changed[i] ^= 0x01;
  hub.contents.set(DATA, changed);
  const firstTry = gets().length;
  assert.equal(await fetchData(dest), SIZE);
  assert.deepEqual(gets().slice(firstTry).map((g) => g.range).sort(), QUARTERS.map(([a, b]) => `bytes=${a}-${b}`).sort());
  assert.equal(sha256(readFileSync(dest)), sha256(changed));
});

test('ranges whose assembled bytes miss the published sha256 are refused and removed', async () => {
  const dest = join(scratchDir('parallel-tamper'), 'model.onnx_data');
  hub.faults.set(DATA, 'tamper');
  await assert.rejects(fetchData(dest), new RegExp(`does not match the hub \\(sha256 [0-9a-f]{64} where the hub published ${sha256(DATA_BYTES)}\\); discarded`));
  assert.deepEqual(readdirSync(join(dest, '..')).filter((f) => f.startsWith('model.onnx_data')), []);
});
