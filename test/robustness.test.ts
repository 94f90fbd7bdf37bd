// The cache and the process under stress: concurrent cold runs, kills mid-preparation,
// damaged cache entries, closed pipes, Ctrl-C, and where files may be written.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { decodeModel, encodeModel } from '../src/onnx/proto.js';
import { cleanEnv, fixture, LENS_BIN, runCli, scratchDir, assertOneLineError, TINY } from './helpers.js';
import { writeFixture } from './fixtures/gpt2.js';
import { startHub } from './hub-server.js';
import type { Phase } from '../src/model/phases.js';

const { dir: MODEL } = fixture('opset14-flat');
const hub = await startHub();
hub.repos.set('tiny/gpt2', fixture('opset17-merged-external').dir);
after(() => hub.close());

const entries = (cache: string) => (existsSync(join(cache, 'lens')) ? readdirSync(join(cache, 'lens')) : []);
const temporaries = (dir: string) => (existsSync(dir) ? readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => /\.tmp-/.test(f)) : []);

test('8 concurrent cold runs on one hub model: all succeed, identical output, one good cache entry', async () => {
  const cache = scratchDir('concurrent');
  const env = { HF_ENDPOINT: hub.url, LENS_CACHE: cache };
  const runs = await Promise.all(Array.from({ length: 8 }, () => runCli(['topk', '--model', 'tiny/gpt2', '--json', 'Paris is capital of'], { env })));
  for (const r of runs) assert.equal(r.code, 0, r.stderr);
  assert.equal(new Set(runs.map((r) => r.stdout)).size, 1, 'byte-identical JSON');
  assert.equal(entries(cache).length, 1, `cache entries: ${entries(cache).join(', ')}`);
  assert.deepEqual(temporaries(cache), []);
  hub.requests.length = 0;
  const again = await runCli(['topk', '--model', 'tiny/gpt2', '--json', 'Paris is capital of'], { env });
  assert.equal(again.stdout, runs[0].stdout);
  assert.deepEqual(hub.requests, []);
});

interface Killed { stderr: string; code: number | null; signal: NodeJS.Signals | null }

/**
 * Runs lens held at `phase` (LENS_TEST_PAUSE: it announces the phase on stderr and waits there),
 * and sends `signal` once it has announced it; fails if the run never gets there.
 */
async function killAt(phase: Phase, args: string[], env: NodeJS.ProcessEnv, signal: NodeJS.Signals = 'SIGKILL', inspect?: () => void): Promise<Killed> {
  const child = spawn(process.execPath, [LENS_BIN, ...args], { env: cleanEnv({ ...env, LENS_TEST_PAUSE: phase }), stdio: ['ignore', 'ignore', 'pipe'] });
  const closed = new Promise<Killed>((resolve) => child.on('close', (code, sig) => resolve({ stderr, code, signal: sig })));
  let stderr = '';
  const reached = new Promise<boolean>((resolve) => {
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; if (stderr.includes(`lens-test-phase ${phase}\n`)) resolve(true); });
    void closed.then(() => resolve(false));
  });
  assert.ok(await reached, `the run ended without reaching ${phase}: ${stderr}`);
  inspect?.();
  child.kill(signal);
  return closed;
}

/** What a kill left in the cache: temporaries (with what they hold) and entries. */
function leftBehind(cache: string): string {
  const all = existsSync(cache) ? readdirSync(cache, { recursive: true, encoding: 'utf8' }) : [];
  return all.filter((f) => /\.tmp-|lens-entry|\.data$|_data$|model\.onnx$/.test(f)).sort().join(', ') || 'nothing';
}

test('a run killed with SIGKILL in each phase of preparing and downloading leaves nothing that breaks the next run', async (t) => {
  const args = ['topk', '--model', MODEL, '--json', 'hello'];
  const reference = await runCli(args, { env: { LENS_CACHE: scratchDir('sigkill-ref') } });
  assert.equal(reference.code, 0, reference.stderr);
  // What each phase must have left on disk when the kill lands: proof that it landed there.
  const expectOnDisk: Record<Exclude<Phase, 'mid-download'>, (tmpFiles: string[]) => boolean> = {
    'before-first-write': (files) => files.length === 0,
    'mid-weights': (files) => files.some((f) => f.endsWith('.data')) && !files.some((f) => f.endsWith('model.onnx')),
    'before-marker': (files) => files.some((f) => f.endsWith('model.onnx')) && !files.some((f) => f.endsWith('lens-entry.json')),
    'before-commit': (files) => files.some((f) => f.endsWith('lens-entry.json')),
  };
  for (const [phase, check] of Object.entries(expectOnDisk) as [Phase, (f: string[]) => boolean][]) {
    const cache = scratchDir(`sigkill-${phase}`);
    let seen = '';
    const killed = await killAt(phase, args, { LENS_CACHE: cache }, 'SIGKILL', () => {
      seen = leftBehind(cache);
      const tmpFiles = readdirSync(join(cache, 'lens'), { recursive: true, encoding: 'utf8' }).filter((f) => /\.tmp-\d+-[0-9a-f]+\//.test(f));
      assert.ok(check(tmpFiles), `${phase}: on disk at the kill: ${seen}`);
      assert.deepEqual(entries(cache).filter((e) => !/\.tmp-/.test(e)), [], `${phase}: no entry in place yet`);
    });
    assert.equal(killed.signal, 'SIGKILL');
    t.diagnostic(`SIGKILL landed in phase ${phase}; on disk: ${seen}`);
    const next = await runCli(args, { env: { LENS_CACHE: cache } });
    assert.equal(next.code, 0, `after a kill in ${phase}: ${next.stderr}`);
    assert.equal(next.stdout, reference.stdout, phase);
    assert.equal(entries(cache).length, 1, `after a kill in ${phase}: ${entries(cache).join(', ')}`);
    assert.deepEqual(temporaries(cache), [], phase);
  }
  // Mid-download: part of the ONNX file received into its .incomplete file (kept to resume).
  const cache = scratchDir('sigkill-download');
  const hubArgs = ['topk', '--model', 'tiny/gpt2', '--json', 'hello'];
  const env = { HF_ENDPOINT: hub.url, LENS_CACHE: cache };
  let seen = '';
  await killAt('mid-download', hubArgs, env, 'SIGKILL', () => {
    seen = leftBehind(cache);
    assert.ok(existsSync(join(cache, 'hub', 'tiny', 'gpt2', 'onnx', 'model.onnx.incomplete')), `mid-download: ${seen}`);
    assert.ok(!existsSync(join(cache, 'hub', 'tiny', 'gpt2', '.lens-complete.json')));
  });
  t.diagnostic(`SIGKILL landed in phase mid-download; on disk: ${seen}`);
  const after = await runCli(hubArgs, { env });
  assert.equal(after.code, 0, after.stderr);
  const local = await runCli(['topk', '--model', hub.repos.get('tiny/gpt2')!, '--json', 'hello'], { env: { LENS_CACHE: cache } });
  assert.deepEqual({ ...JSON.parse(after.stdout), model: '' }, { ...JSON.parse(local.stdout), model: '' });
  assert.deepEqual(temporaries(cache), []);
});

test('a truncated or garbled cache entry is detected and rebuilt', async () => {
  const cache = scratchDir('damage');
  // Content samples cut down to the first and last 64 KiB of each file, as if the entry were
  // GPT-2's size: a 1 MiB overwrite between them is caught by the recorded size and time alone.
  const env = { LENS_CACHE: cache, LENS_TEST_DIGEST: `${64 << 10},2` };
  const good = await runCli(['topk', '--model', MODEL, '--json', 'hello'], { env });
  assert.equal(good.code, 0, good.stderr);
  const [key] = entries(cache);
  const entry = join(cache, 'lens', key);
  const dataFile = readdirSync(join(entry, 'onnx')).find((f) => f.endsWith('.data'))!;
  const damages: [string, () => void][] = [
    ['truncated weights', () => truncateSync(join(entry, 'onnx', dataFile), statSync(join(entry, 'onnx', dataFile)).size >> 1)],
    ['garbled graph', () => { const fd = openSync(join(entry, 'onnx', 'model.onnx'), 'r+'); writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, 64); closeSync(fd); }],
    ['garbled weights', () => { const fd = openSync(join(entry, 'onnx', dataFile), 'r+'); writeSync(fd, Buffer.alloc(1 << 20, 0x7f), 0, 1 << 20, 1 << 20); closeSync(fd); }],
    ['1 MiB overwritten in place, between the samples', () => {
      const path = join(entry, 'onnx', dataFile);
      assert.ok(statSync(path).size > 3 << 20, 'the weights span more than the samples');
      const fd = openSync(path, 'r+'); writeSync(fd, Buffer.alloc(1 << 20, 0x3c), 0, 1 << 20, 2 << 20); closeSync(fd);
    }],
    ['garbled marker', () => writeFileSync(join(entry, 'lens-entry.json'), '{"version": 3, "files": ')],
    ['emptied graph', () => writeFileSync(join(entry, 'onnx', 'model.onnx'), '')],
  ];
  for (const [name, damage] of damages) {
    damage();
    const r = await runCli(['topk', '--model', MODEL, '--json', 'hello'], { env });
    assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    assert.equal(r.stdout, good.stdout, name);
    assert.deepEqual(entries(cache), [key], name);
  }
  // A damaged download is fetched again.
  const hubCache = scratchDir('damage-hub');
  const hubEnv = { HF_ENDPOINT: hub.url, LENS_CACHE: hubCache };
  const first = await runCli(['topk', '--model', 'tiny/gpt2', '--json', 'hello'], { env: hubEnv });
  truncateSync(join(hubCache, 'hub', 'tiny', 'gpt2', 'onnx', 'model.onnx'), 100);
  hub.requests.length = 0;
  const again = await runCli(['topk', '--model', 'tiny/gpt2', '--json', 'hello'], { env: hubEnv });
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, first.stdout);
  assert.ok(hub.requests.some((p) => p.endsWith('onnx/model.onnx')), 'the damaged file was fetched again');
});

test('a model changed in place is never served from a stale cache entry', async () => {
  const dir = join(scratchDir('changed'), 'model');
  const cache = scratchDir('changed-cache');
  writeFixture(dir, 'opset14-flat', { ...TINY, seed: 1 });
  const before = await runCli(['topk', '--model', dir, '--json', 'hello'], { env: { LENS_CACHE: cache } });
  writeFixture(dir, 'opset14-flat', { ...TINY, seed: 2 }); // same shapes and sizes, other weights
  const after = await runCli(['topk', '--model', dir, '--json', 'hello'], { env: { LENS_CACHE: cache } });
  const fresh = await runCli(['topk', '--model', dir, '--json', 'hello'], { env: { LENS_CACHE: scratchDir('changed-fresh') } });
  assert.equal(after.code, 0, after.stderr);
  assert.notEqual(after.stdout, before.stdout);
  assert.equal(after.stdout, fresh.stdout);
});

function manyPrompts(n: number): string {
  const file = join(scratchDir('prompts'), 'prompts.txt');
  writeFileSync(file, Array.from({ length: n }, (_, i) => `Prompt number ${i} is about`).join('\n'));
  return file;
}

test('lens … --json | head -1 exits quietly', async () => {
  const cache = scratchDir('epipe');
  await runCli(['topk', '--model', MODEL, 'warm'], { env: { LENS_CACHE: cache } });
  const child = spawn(process.execPath, [LENS_BIN, 'topk', '--model', MODEL, '--json', '--file', manyPrompts(400)], { env: cleanEnv({ LENS_CACHE: cache }), stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  let firstLine = '';
  await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => { firstLine += d.toString(); if (firstLine.includes('\n')) { child.stdout.destroy(); resolve(); } }));
  const code = await new Promise((resolve) => child.on('close', resolve));
  assert.equal(code, 0);
  assert.equal(stderr, '');
  assert.ok(JSON.parse(firstLine.split('\n')[0]).prompt.startsWith('Prompt number 0'));
});

test('SIGINT exits 130 with one line and leaves the cache good, warm and mid-preparation', async (t) => {
  for (const warm of [true, false]) {
    const cache = scratchDir('sigint');
    let killed: Killed;
    if (warm) {
      assert.equal((await runCli(['topk', '--model', MODEL, 'warm'], { env: { LENS_CACHE: cache } })).code, 0);
      const child = spawn(process.execPath, [LENS_BIN, 'topk', '--model', MODEL, '--json', '--file', manyPrompts(2000)], { env: cleanEnv({ LENS_CACHE: cache }), stdio: ['ignore', 'pipe', 'pipe'] });
      const closed = new Promise<Killed>((resolve) => { let stderr = ''; child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d)); child.on('close', (code, signal) => resolve({ stderr, code, signal })); });
      await new Promise((resolve) => child.stdout.once('data', resolve));
      child.stdout.resume();
      child.kill('SIGINT');
      killed = await closed;
    } else {
      killed = await killAt('mid-weights', ['topk', '--model', MODEL, '--json', 'hello'], { LENS_CACHE: cache }, 'SIGINT');
      t.diagnostic('SIGINT landed in phase mid-weights');
    }
    assert.equal(killed.code, 130, `warm=${warm}: ${killed.stderr}`);
    assert.deepEqual(killed.stderr.replace(/^lens-test-phase .*\n/, '').trim().split('\n'), ['lens: interrupted']);
    assert.deepEqual(temporaries(cache), [], 'no temporaries left');
    const next = await runCli(['topk', '--model', MODEL, '--json', 'hello'], { env: { LENS_CACHE: cache } });
    assert.equal(next.code, 0, next.stderr);
  }
});

test('nothing escapes its place: outside external data is refused; files go only under the cache', async () => {
  const root = scratchDir('escape');
  const evil = join(root, 'evil');
  cpSync(MODEL, evil, { recursive: true });
  const model = decodeModel(readFileSync(join(evil, 'onnx', 'model.onnx')));
  const wte = model.graph.initializer.find((t) => t.dims.length === 2 && t.dims[0] === 50257)!;
  wte.raw_data = undefined;
  wte.data_location = 1;
  wte.external_data = [{ key: 'location', value: '../../secret.bin' }, { key: 'offset', value: '0' }, { key: 'length', value: '16' }];
  writeFileSync(join(evil, 'onnx', 'model.onnx'), encodeModel(model));
  writeFileSync(join(root, 'secret.bin'), 'x'.repeat(64));
  assertOneLineError(await runCli(['topk', '--model', evil], { env: { LENS_CACHE: join(root, 'cache') } }), 1, /outside the model directory/);

  // With a fresh HOME and working directory, a run writes only under the cache it is given.
  const home = join(root, 'home'), cwd = join(root, 'cwd'), xdg = join(root, 'xdg');
  for (const d of [home, cwd, xdg]) mkdirSync(d);
  const r = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, [LENS_BIN, 'topk', '--model', MODEL, 'hello'], { cwd, env: cleanEnv({ HOME: home, XDG_CACHE_HOME: xdg, LENS_CACHE: '' }), stdio: 'ignore' });
    child.on('close', resolve);
  });
  assert.equal(r, 0);
  assert.deepEqual(readdirSync(home), []);
  assert.deepEqual(readdirSync(cwd), []);
  assert.deepEqual(readdirSync(xdg), ['lens'], 'the default cache is ${XDG_CACHE_HOME}/lens');
  assert.deepEqual(readdirSync(join(xdg, 'lens')), ['lens']);
});
