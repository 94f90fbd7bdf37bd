// The library against the CLI for the commands api.test.ts leaves out: attribute, eval (logit and
// tuned), the tuned lens's runs, and a hub that cannot be reached (E_NETWORK with the CLI's line).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { LensError, openLens, type Lens } from '../src/index.js';
import { writeTunedLens } from './fixtures/tuned-lens.js';
import { startHub } from './hub-server.js';
import { cleanEnv, fixture, runCli, scratchDir, TINY } from './helpers.js';

const { dir: MODEL } = fixture('opset14-merged');
const cache = scratchDir('api-commands-cache');
const env = cleanEnv({ LENS_CACHE: cache });
const TUNED = writeTunedLens(TINY.d, TINY.layers);
const P1 = 'Paris is capital of';
const P2 = 'Alan Turing was a';

/** The CLI's stdout lines as JSON; the run must have succeeded. */
async function cliJson(args: string[]): Promise<unknown[]> {
  const r = await runCli([...args, '-m', MODEL, '--offline', '--json'], { env: { LENS_CACHE: cache } });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n').map((line) => JSON.parse(line));
}

const plain = (value: unknown) => JSON.parse(JSON.stringify(value));

let tunedLens: Promise<Lens> | undefined;
// Opened as eval loads (packed weights), so that its sums equal the CLI's to the last bit.
const opened = () => (tunedLens ??= openLens({ model: MODEL, env, offline: true, lens: 'tuned', tunedLens: TUNED, batch: true }));

test('lens.attribute equals lens attribute --json: default target, two targets with heads, several prompts', async () => {
  const lens = await opened();
  const cases: [string[], Parameters<Lens['attribute']>][] = [
    [['attribute', P1], [P1]],
    [['attribute', '--position', ':', '--target', ' football', '--target-id', '262', '--heads', P1], [P1, { positions: ':', targets: [' football', 262], heads: true }]],
    [['attribute', '--target-id', '262', '--position', '0,-1', P1, P2], [[P1, P2], { targets: [{ id: 262 }], positions: [0, -1] }]],
  ];
  for (const [args, call] of cases) {
    const records = await lens.attribute(...call);
    assert.ok(records.length > 0);
    assert.deepEqual(plain(records), await cliJson(args), args.join(' '));
  }
});

test('lens.run on a lens opened with a tuned lens equals --lens tuned --json; lens: "logit" equals the plain CLI', async () => {
  const lens = await opened();
  assert.deepEqual(plain(await lens.run([P1, P2], { command: 'topk', positions: ':', k: 3 })), await cliJson(['topk', '--lens', 'tuned', '--tuned-lens', TUNED, '--position', ':', '-k', '3', P1, P2]));
  assert.deepEqual(plain(await lens.run(P1, { command: 'prob', lens: 'logit' })), await cliJson(['prob', P1]));
});

test('lens.evaluate equals lens eval --json, with the tuned lens opened and without, over several context windows', async () => {
  // About 120 tokens: two windows of the fixture's 64-token context.
  const text = 'The quick brown fox jumps over the lazy dog. Paris is the capital of France. '.repeat(6);
  const data = join(scratchDir('api-eval'), 'text.txt');
  writeFileSync(data, text);
  const lens = await opened();
  const progress: number[] = [];
  const both = await lens.evaluate(text, { onProgress: (done) => progress.push(done) });
  assert.ok(both.tokens > 64 && both.tuned !== undefined, `${both.tokens} tokens`);
  assert.equal(progress.at(-1), both.tokens);
  assert.deepEqual(plain(both), (await cliJson(['eval', '--data', data, '--tuned-lens', TUNED]))[0]);
  assert.deepEqual(plain(await lens.evaluate(text, { maxTokens: 10 })), (await cliJson(['eval', '--data', data, '--tuned-lens', TUNED, '--max-tokens', '10']))[0]);

  const logitOnly = await openLens({ model: MODEL, env, offline: true, batch: true });
  try {
    assert.deepEqual(plain(await logitOnly.evaluate(text)), (await cliJson(['eval', '--data', data]))[0]);
    await assert.rejects(logitOnly.evaluate('a'), (e: unknown) => e instanceof LensError && e.code === 'E_USAGE' && e.message === 'the text has 1 token; eval needs at least 2');
    await assert.rejects(logitOnly.evaluate(text, { maxTokens: 1 }), (e: unknown) => e instanceof LensError && e.code === 'E_USAGE');
    const cancelled = new AbortController();
    cancelled.abort();
    await assert.rejects(logitOnly.evaluate(text, { signal: cancelled.signal }), (e: unknown) => e instanceof LensError && e.code === 'E_ABORTED');
    await assert.rejects(logitOnly.info({ signal: cancelled.signal }), (e: unknown) => e instanceof LensError && e.code === 'E_ABORTED');
  } finally {
    await logitOnly.close();
  }
});

test('a hub that refuses connections is E_NETWORK with the line the CLI prints', async () => {
  // A port that was just free and is closed again: connections to it are refused.
  const port = await new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = server.address() as { port: number };
      server.close(() => resolve(free));
    });
  });
  const hub = { LENS_CACHE: scratchDir('api-network-cache'), HF_ENDPOINT: `http://127.0.0.1:${port}` };
  const cli = await runCli(['topk', '-m', 'tiny/unreachable', P1], { env: hub });
  assert.equal(cli.code, 1, cli.stderr);
  await assert.rejects(openLens({ model: 'tiny/unreachable', env: cleanEnv(hub), offline: false }), (error: unknown) => {
    assert.ok(error instanceof LensError, String(error));
    assert.equal(error.code, 'E_NETWORK');
    assert.equal(`lens: ${error.message}\n`, cli.stderr);
    return true;
  });
});

test("openLens's signal cancels a download under way: E_ABORTED, not the stall the hub would cause", async () => {
  const hub = await startHub();
  try {
    hub.repos.set('tiny/stalling', MODEL);
    // Half the graph, then silence, with a stall time of an hour: only the signal can end the wait.
    hub.faults.set('onnx/model.onnx', 'stall');
    const controller = new AbortController();
    const files: string[] = [];
    const opening = openLens({
      model: 'tiny/stalling', offline: false, signal: controller.signal,
      env: cleanEnv({ LENS_CACHE: scratchDir('api-abort-cache'), HF_ENDPOINT: hub.url, LENS_STALL_TIMEOUT_MS: String(3600_000) }),
      onProgress: (p) => { if (p.phase === 'download' && p.done > 0 && !files.includes(p.file)) { files.push(p.file); if (p.file === 'onnx/model.onnx') controller.abort(); } },
    });
    // A hang guard, not a speed check: uncancelled, the download would wait out the hour; the guard
    // closes the hub's connections after two minutes so that the test fails instead of hanging.
    let guardFired = false;
    const guard = setTimeout(() => { guardFired = true; void hub.close(); }, 120_000);
    await assert.rejects(opening, (error: unknown) => error instanceof LensError && error.code === 'E_ABORTED');
    clearTimeout(guard);
    assert.equal(guardFired, false, 'the download went on after the signal');
    assert.ok(files.includes('onnx/model.onnx'), `the graph's download had begun: ${files.join(', ')}`);
  } finally {
    await hub.close();
  }
});

test.after(async () => {
  if (tunedLens) await (await tunedLens).close();
});
