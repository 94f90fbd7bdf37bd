// The library: openLens's records equal the CLI's --json for the same arguments (every command),
// errors are LensErrors carrying the CLI's message, calls queue, a signal cancels, nothing prints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LensError, openLens, type Lens, type RunOptions } from '../src/index.js';
import { cleanEnv, fixture, runCli, scratchDir } from './helpers.js';

const { dir: MODEL } = fixture('opset14-merged');
const cache = scratchDir('api-cache');
const env = cleanEnv({ LENS_CACHE: cache });
const cli = (args: string[]) => runCli(args, { env: { LENS_CACHE: cache } });

let lensPromise: Promise<Lens> | undefined;
const shared = () => (lensPromise ??= openLens({ model: MODEL, env, offline: true }));

/** The records the CLI printed, parsed; the run must have succeeded. */
async function cliRecords(args: string[]): Promise<unknown[]> {
  const r = await cli([...args, '-m', MODEL, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n').map((line) => JSON.parse(line));
}

const P1 = 'Paris is capital of';
const P2 = 'The most famous sports in USA is';
const cases: { args: string[]; prompts: string | string[]; options: RunOptions }[] = [
  { args: ['topk', '-k', '3', P1], prompts: P1, options: { command: 'topk', k: 3 } },
  { args: ['topk', '--position', '0,-1', '--raw', P1, P2], prompts: [P1, P2], options: { command: 'topk', positions: [0, -1], raw: true } },
  { args: ['prob', P2], prompts: P2, options: { command: 'prob' } },
  { args: ['prob', '--target', ' football', '--target-id', '262', P1, P2], prompts: [P1, P2], options: { command: 'prob', targets: [' football', 262] } },
  { args: ['prob', '--target', ' the football club', P2], prompts: P2, options: { command: 'prob', targets: [{ text: ' the football club' }] } },
  { args: ['rank', '--gold', ' Paris', '--sublayers', P1], prompts: P1, options: { command: 'rank', targets: [' Paris'], sublayers: true } },
  { args: ['rank', P1], prompts: P1, options: { command: 'rank' } },
  { args: ['diff', P2], prompts: P2, options: { command: 'diff' } },
  { args: ['diff', '--target', ' France', '--target', ' the', '--raw', P1], prompts: P1, options: { command: 'diff', targets: [' France', ' the'], raw: true } },
  { args: ['heatmap', P2], prompts: P2, options: { command: 'heatmap' } },
  { args: ['heatmap', '--position', '1:3', '-k', '2', P1], prompts: P1, options: { command: 'heatmap', positions: '1:3', k: 2 } },
];

for (const { args, prompts, options } of cases) {
  test(`lens.run equals lens ${args.slice(0, -1).join(' ')} --json`, async () => {
    const lens = await shared();
    const expected = await cliRecords(args);
    const records = await lens.run(prompts, options);
    assert.ok(records.length > 0);
    assert.deepEqual(JSON.parse(JSON.stringify(records)), expected);
  });
}

test('without a command, run reads -1 with the given options only (topk)', async () => {
  const lens = await shared();
  assert.deepEqual(JSON.parse(JSON.stringify(await lens.run(P1, { k: 2 }))), await cliRecords(['topk', '-k', '2', P1]));
});

test('layers keeps the chosen layers and always the last', async () => {
  const lens = await shared();
  const [record] = await lens.run(P1, { layers: '0:1' });
  assert.deepEqual(record.layers.map((l) => l.layer), [0, 3]);
  const [listed] = await lens.run(P1, { layers: [1] });
  assert.deepEqual(listed.layers.map((l) => l.layer), [1, 3]);
});

/** The CLI's one stderr line without its "lens: " prefix. */
async function cliMessage(args: string[]): Promise<{ code: number | null; message: string }> {
  const r = await cli([...args, '-m', MODEL]);
  const line = r.stderr.trim();
  assert.match(line, /^lens: /);
  return { code: r.code, message: line.slice('lens: '.length) };
}

test('errors are LensErrors with a code and the message the CLI prints', async () => {
  const lens = await shared();
  const long = 'word '.repeat(80);
  const expectations: [string[], () => Promise<unknown>, string][] = [
    [['topk', long], () => lens.run(long), 'E_USAGE'],
    [['topk', '--position', '40', P1], () => lens.run(P1, { positions: 40 }), 'E_USAGE'],
    [['topk', ''], () => lens.run(''), 'E_USAGE'],
    [['prob', '--target-id', '999999', P1], () => lens.run(P1, { command: 'prob', targets: [999999] }), 'E_USAGE'],
    [['diff', '--target', ' a', P1], () => lens.run(P1, { command: 'diff', targets: [' a'] }), 'E_USAGE'],
    [['prob', '--target', ' the football club', '--position', '0', P1], () => lens.run(P1, { targets: [' the football club'], positions: 0 }), 'E_USAGE'],
  ];
  for (const [args, call, code] of expectations) {
    const { code: exit, message } = await cliMessage(args);
    assert.equal(exit, 2);
    await assert.rejects(call(), (error: unknown) => {
      assert.ok(error instanceof LensError, String(error));
      assert.equal(error.code, code);
      assert.equal(error.message, message);
      return true;
    });
  }
  // the lens still serves after errors
  assert.equal((await lens.run(P1)).length, 1);
});

test('a missing model is E_MODEL with the CLI message; the library never prints', async () => {
  const missing = `${scratchDir('nothing')}/no-model`;
  const r = await runCli(['topk', '-m', missing, P1], { env: { LENS_CACHE: cache } });
  const writes: string[] = [];
  const saved = [process.stdout.write, process.stderr.write];
  process.stdout.write = process.stderr.write = ((chunk: string) => { writes.push(String(chunk)); return true; }) as typeof process.stdout.write;
  let caught: unknown;
  try {
    await openLens({ model: missing, env, offline: true });
  } catch (error) {
    caught = error;
  } finally {
    [process.stdout.write, process.stderr.write] = saved;
  }
  assert.ok(caught instanceof LensError);
  assert.equal(caught.code, 'E_MODEL');
  assert.equal(`lens: ${caught.message}\n`, r.stderr);
  assert.deepEqual(writes, []);
});

test('info() is what inspect --json shows', async () => {
  const lens = await shared();
  const r = await cli(['inspect', '-m', MODEL, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(JSON.stringify(await lens.info())), JSON.parse(r.stdout));
});

test('calls on one lens queue: concurrent runs give what the same runs give one by one', async () => {
  const lens = await shared();
  const prompts = [P1, P2, 'Alan Turing was a', P1];
  const together = await Promise.all(prompts.map((p) => lens.run(p, { command: 'heatmap' })));
  for (let i = 0; i < prompts.length; i++) assert.deepEqual(together[i], await lens.run(prompts[i], { command: 'heatmap' }));
});

test('a signal cancels a queued call and a running one; the lens keeps serving', async () => {
  const lens = await shared();
  const before = await lens.run(P2, { command: 'heatmap' });
  const early = new AbortController();
  early.abort();
  await assert.rejects(lens.run(P1, { signal: early.signal }), (e: unknown) => e instanceof LensError && e.code === 'E_ABORTED');
  // queued behind a long call, cancelled before it starts
  const blocker = lens.run(Array(6).fill(P2), { command: 'heatmap' });
  const queued = new AbortController();
  const waiting = lens.run(P1, { signal: queued.signal });
  queued.abort();
  await assert.rejects(waiting, (e: unknown) => e instanceof LensError && e.code === 'E_ABORTED');
  // cancelled while it runs: several forwards (one per prompt), the signal checked between them
  const running = new AbortController();
  const long = lens.run(Array(20).fill(P2), { command: 'heatmap', signal: running.signal });
  await blocker;
  setTimeout(() => running.abort(), 5);
  await assert.rejects(long, (e: unknown) => e instanceof LensError && e.code === 'E_ABORTED');
  assert.deepEqual(await lens.run(P2, { command: 'heatmap' }), before);
});

test('close() waits for the calls under way, then refuses new ones', async () => {
  const lens = await openLens({ model: MODEL, env, offline: true });
  const pending = lens.run(P1);
  await lens.close();
  assert.equal((await pending).length, 1);
  await assert.rejects(lens.run(P1), (e: unknown) => e instanceof LensError && e.code === 'E_CLOSED');
});

test('bad run options are E_USAGE, not exceptions thrown synchronously', async () => {
  const lens = await shared();
  for (const options of [{ k: 0 }, { positions: 'x' }, { positions: [] }, { targets: [{}] }, { targets: ' a' }, { command: 'nope' }, { command: 'constructor' }, { lensTargets: 'top3' }, { layers: '9' }] as RunOptions[]) {
    await assert.rejects(lens.run(P1, options), (e: unknown) => e instanceof LensError && e.code === 'E_USAGE', JSON.stringify(options));
  }
});

test.after(async () => { await (await lensPromise)?.close(); });
