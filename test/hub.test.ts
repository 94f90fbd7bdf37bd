// The download path against a loopback hub: first download, cache hits with no requests,
// offline use, and every failure ending in one line with nothing half-written left behind.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { LensRecord } from '../src/lens/record.js';
import { resolveModel } from '../src/model/hub.js';
import { assertOneLineError, cleanEnv, fixture, LENS_BIN, runCli, scratchDir } from './helpers.js';
import { startHub } from './hub-server.js';

const { dir: MODEL } = fixture('opset17-merged-external');
const hub = await startHub();
hub.repos.set('tiny/gpt2', MODEL);
after(() => hub.close());

const env = (cache: string, extra: NodeJS.ProcessEnv = {}) => ({ HF_ENDPOINT: hub.url, LENS_CACHE: cache, LENS_STALL_TIMEOUT_MS: '30000', ...extra });
const withoutModel = (stdout: string) => stdout.trim().split('\n').map((l) => { const r = JSON.parse(l) as LensRecord; return JSON.stringify({ ...r, model: '' }); });

/** Every file under dir, recursively. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => statSync(join(dir, f)).isFile());
}

test('first run downloads into $LENS_CACHE and matches the local directory; the second makes no request', async () => {
  const cache = scratchDir('hub-cache');
  hub.requests.length = 0;
  const first = await runCli(['topk', '--model', 'tiny/gpt2', '--json', 'Paris is capital of'], { env: env(cache) });
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stderr, '', 'no progress bar when stderr is not a terminal');
  assert.ok(hub.requests.length >= 4, `requests: ${hub.requests.join(', ')}`);
  assert.ok(hub.requests.every((p) => p.startsWith('/tiny/gpt2/resolve/main/')));
  const local = await runCli(['topk', '--model', MODEL, '--json', 'Paris is capital of'], { env: { LENS_CACHE: cache } });
  assert.equal(local.code, 0, local.stderr);
  assert.equal(withoutModel(first.stdout).length, 1);
  assert.deepEqual(withoutModel(first.stdout), withoutModel(local.stdout));
  assert.equal(JSON.parse(first.stdout).model, 'tiny/gpt2');
  assert.ok(filesUnder(join(cache, 'hub', 'tiny', 'gpt2')).includes('onnx/model.onnx_data'));

  hub.requests.length = 0;
  const second = await runCli(['topk', '--model', 'tiny/gpt2', '--json', 'Paris is capital of'], { env: env(cache) });
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(hub.requests, [], 'a cached model makes no request');
  assert.equal(second.stdout, first.stdout);

  // Offline, by flag or by environment: works from the cache with zero network attempts.
  for (const extra of [['--offline'], []]) {
    const offline = await runCli(['topk', '--model', 'tiny/gpt2', '--json', 'Paris is capital of', ...extra], { env: env(cache, extra.length ? {} : { HF_HUB_OFFLINE: '1' }) });
    assert.equal(offline.code, 0, offline.stderr);
    assert.equal(offline.stdout, first.stdout);
  }
  assert.deepEqual(hub.requests, []);
});

test('download progress is reported while a file arrives (shown only on a terminal)', async () => {
  const cache = scratchDir('hub-progress');
  const seen = new Set<string>();
  await resolveModel('tiny/gpt2', { dtype: 'fp32', offline: false, env: env(cache), progress: (done, total, file) => { if (done === total) seen.add(file); } });
  assert.ok(seen.has('onnx/model.onnx') && seen.has('onnx/model.onnx_data') && seen.has('tokenizer.json'), [...seen].join());
});

test('an uncached model offline fails at once, naming the model and how to get it', async () => {
  const cache = scratchDir('hub-offline');
  hub.requests.length = 0;
  const r = await runCli(['topk', '--model', 'tiny/other', '--offline'], { env: env(cache) });
  assertOneLineError(r, 1, /model tiny\/other is not in the cache and the network is off.*run once with network access/);
  assert.deepEqual(hub.requests, [], 'it fails without trying the network');
});

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test('failures: refused, 404, stalled and short bodies each give one line and leave nothing half-written', async () => {
  const cases: [string, () => void, NodeJS.ProcessEnv, RegExp][] = [
    ['refused', () => {}, { HF_ENDPOINT: `http://127.0.0.1:${await closedPort()}` }, /cannot reach the hub at http:\/\/127\.0\.0\.1:\d+ .*ECONNREFUSED/],
    ['404', () => hub.faults.set('tokenizer.json', 'missing'), {}, /download of tokenizer.json failed: HTTP 404/],
    ['stall', () => hub.faults.set('onnx/model.onnx_data', 'stall'), { LENS_STALL_TIMEOUT_MS: '1500' }, /download of onnx\/model.onnx_data was interrupted: no data for 1.5 s/],
    ['short', () => hub.faults.set('onnx/model.onnx', 'short'), {}, /download of onnx\/model.onnx (was cut short|was interrupted)/],
  ];
  for (const [name, inject, extra, pattern] of cases) {
    hub.faults.clear();
    inject();
    const cache = scratchDir(`hub-${name}`);
    // The stall is given up by the timer (the message says after how long), not by the test's timeout.
    const r = await runCli(['topk', '--model', 'tiny/gpt2', 'hi'], { env: env(cache, extra) });
    assertOneLineError(r, 1, pattern);
    const left = filesUnder(cache);
    assert.ok(left.every((f) => !/\.tmp-/.test(f)), `${name}: temporaries left: ${left.join(', ')}`);
    assert.ok(!left.some((f) => f.endsWith('.lens-complete.json')), `${name}: marked complete`);
    // The failed file is not in place, and the next run, with the hub healthy, completes.
    hub.faults.clear();
    const retry = await runCli(['topk', '--model', 'tiny/gpt2', '--json', 'hi'], { env: env(cache) });
    assert.equal(retry.code, 0, `${name} retry: ${retry.stderr}`);
  }
});

test('on a terminal, the download shows a progress bar on stderr', async () => {
  // script(1) (util-linux, essential on Debian) runs lens on a pseudo-terminal.
  const cache = scratchDir('hub-tty');
  const command = [process.execPath, LENS_BIN, 'topk', '--model', 'tiny/gpt2', 'hi'].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const { spawn } = await import('node:child_process');
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn('script', ['-qfec', command, '/dev/null'], { env: cleanEnv(env(cache)), stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (text += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`script exited ${code}: ${text}`))));
  });
  assert.match(output, /downloading onnx\/model\.onnx: [\d.]+\/[\d.]+ MB 100%/);
  assert.match(output, /preparing the model for the lens/);
  assert.match(output, /L03/);
});
