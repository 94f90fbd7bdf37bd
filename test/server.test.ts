// lens serve's HTTP side: answers equal to --json, and the guards (403 other origins, 413 big
// bodies, 400 bad input with the CLI's message, 503 past the queue), under concurrent and killed clients.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { connect } from 'node:net';
import { serve, MAX_BODY_BYTES, type Served } from '../src/server/server.js';
import { assertOneLineError, cleanEnv, fixture, LENS_BIN, runCli, scratchDir, TINY } from './helpers.js';
import { writeTunedLens } from './fixtures/tuned-lens.js';

const { dir: MODEL } = fixture('opset14-merged');
const cache = scratchDir('server-cache');
const env = cleanEnv({ LENS_CACHE: cache });
const P = 'Paris is capital of';

interface Answer { status: number; headers: Record<string, string | string[] | undefined>; body: string }

/** One HTTP request to the server with the given headers (Host defaults to the served one). */
function call(served: Served, path: string, options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Answer> {
  const url = new URL(served.origin);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, method: options.method ?? (options.body === undefined ? 'GET' : 'POST'), headers: { host: url.host, ...options.headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}
const runApi = (served: Served, body: unknown) => call(served, '/api/run', { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

async function cliRecords(args: string[]): Promise<unknown[]> {
  const r = await runCli([...args, '-m', MODEL, '--json', '--offline'], { env: { LENS_CACHE: cache } });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n').map((line) => JSON.parse(line));
}

let servedPromise: Promise<Served> | undefined;
const shared = () => (servedPromise ??= serve({ models: [MODEL], env, offline: true, port: 0, queue: 1 }));
test.after(async () => { await (await servedPromise)?.close(); });

test('POST /api/run answers the records --json prints; GET /api/models lists the model', async () => {
  const served = await shared();
  assert.match(served.origin, /^http:\/\/127\.0\.0\.1:\d+$/);
  const models = await call(served, '/api/models');
  assert.equal(models.status, 200);
  assert.deepEqual(JSON.parse(models.body), { models: [{ model: MODEL, layers: 3, contextLength: 64, vocabSize: 50257, tuned: false }] });
  for (const [body, args] of [
    [{ prompt: P, positions: ':', k: 3 }, ['heatmap', '-k', '3', P]],
    [{ prompt: P, command: 'prob', targets: [' football', 262] }, ['prob', '--target', ' football', '--target-id', '262', P]],
    [{ prompt: [P, 'Alan Turing was a'], command: 'diff' }, ['diff', P, 'Alan Turing was a']],
  ] as [unknown, string[]][]) {
    const answer = await runApi(served, body);
    assert.equal(answer.status, 200, answer.body);
    assert.match(String(answer.headers['content-type']), /^application\/json/);
    assert.deepEqual(JSON.parse(answer.body), { records: await cliRecords(args) });
  }
});

test('bad requests are 400 with the CLI\'s message; the server keeps serving', async () => {
  const served = await shared();
  const long = 'word '.repeat(100);
  const cli = await runCli(['topk', '-m', MODEL, long], { env: { LENS_CACHE: cache } });
  const tooLong = await runApi(served, { prompt: long });
  assert.equal(tooLong.status, 400);
  assert.equal(`lens: ${JSON.parse(tooLong.body).error}\n`, cli.stderr);
  assert.equal(JSON.parse(tooLong.body).code, 'E_USAGE');
  for (const body of ['{bad json', '[]', '"x"', '{}', '{"prompt": 3}', '{"prompt": "a", "model": "/etc"}', '{"prompt": "a", "path": "/etc"}', '{"prompt": "a", "k": 0}', '{"prompt": "a", "positions": "9"}', '{"prompt": "a", "targets": "x"}', '{"prompt": "a", "command": "__proto__"}']) {
    const answer = await call(served, '/api/run', { body });
    assert.equal(answer.status, 400, `${body}: ${answer.body}`);
    assert.equal(typeof JSON.parse(answer.body).error, 'string');
  }
  assert.equal((await call(served, '/api/run')).status, 405);
  assert.equal((await call(served, '/nothing')).status, 404);
  assert.equal((await runApi(served, { prompt: P })).status, 200);
});

test('requests from another Host or Origin are refused (403); the served origin is accepted', async () => {
  const served = await shared();
  const port = new URL(served.origin).port;
  for (const headers of [{ host: `evil.example:${port}` }, { host: '127.0.0.1' }, { host: `127.0.0.1:${Number(port) + 1}` },
    { origin: 'http://evil.example' }, { origin: `https://127.0.0.1:${port}` }, { origin: 'null' }] as Record<string, string>[]) {
    for (const path of ['/', '/api/models']) assert.equal((await call(served, path, { headers })).status, 403, `${JSON.stringify(headers)} ${path}`);
    assert.equal((await call(served, '/api/run', { headers, body: JSON.stringify({ prompt: P }) })).status, 403);
  }
  assert.equal((await call(served, '/api/models', { headers: { origin: served.origin } })).status, 200);
  assert.equal((await call(served, '/api/models', { headers: { host: `localhost:${port}` } })).status, 200);
});

test('bodies past 1 MB are refused (413), declared or streamed', async () => {
  const served = await shared();
  const big = JSON.stringify({ prompt: 'a'.repeat(MAX_BODY_BYTES) });
  assert.equal((await call(served, '/api/run', { body: big })).status, 413);
  // no content-length: chunked, counted as it comes
  const url = new URL(served.origin);
  const status = await new Promise<number>((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: '/api/run', method: 'POST', headers: { host: url.host, 'transfer-encoding': 'chunked' } }, (res) => { res.resume(); resolve(res.statusCode!); });
    req.on('error', reject);
    const chunk = Buffer.alloc(64 * 1024, 'a');
    for (let i = 0; i < 20; i++) req.write(chunk);
    req.end();
  });
  assert.equal(status, 413);
  assert.equal((await runApi(served, { prompt: P })).status, 200);
});

test('8 concurrent clients get identical answers, equal to --json', async () => {
  const served = await serve({ models: [MODEL], env, offline: true, port: 0, queue: 8 });
  try {
    const answers = await Promise.all(Array.from({ length: 8 }, () => runApi(served, { prompt: P, positions: ':', targets: [' the'] })));
    const expected = { records: await cliRecords(['heatmap', '--target', ' the', P]) };
    for (const answer of answers) {
      assert.equal(answer.status, 200, answer.body);
      assert.deepEqual(JSON.parse(answer.body), expected);
    }
  } finally {
    await served.close();
  }
});

test('past the queue: 503; the server serves again once it drains', async () => {
  const served = await shared(); // queue 1: one running, one waiting
  const heavy = runApi(served, { prompt: Array(40).fill('The most famous sports in USA is'), positions: ':' });
  await new Promise((r) => setTimeout(r, 30));
  const more = await Promise.all(Array.from({ length: 4 }, () => runApi(served, { prompt: P })));
  const statuses = more.map((a) => a.status).sort();
  assert.ok(statuses.includes(503), `statuses ${statuses}`);
  for (const a of more) if (a.status === 503) assert.equal(JSON.parse(a.body).code, 'E_BUSY');
  assert.equal((await heavy).status, 200);
  assert.equal((await runApi(served, { prompt: P })).status, 200);
});

test('killed and stalled clients leave the server serving', async () => {
  const served = await shared();
  const url = new URL(served.origin);
  const raw = (text: string) => new Promise<void>((resolve) => {
    const socket = connect(Number(url.port), url.hostname, () => { socket.write(text); setTimeout(() => { socket.destroy(); resolve(); }, 20); });
    socket.on('error', () => resolve());
  });
  const body = JSON.stringify({ prompt: Array(20).fill(P), positions: ':' });
  await raw(`POST /api/run HTTP/1.1\r\nhost: ${url.host}\r\ncontent-length: 500\r\n\r\n{"prompt":`); // half a body, then gone
  await raw(`POST /api/run HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`); // gone while it runs
  await raw('GARBAGE\r\n\r\n');
  // a client process killed mid-request
  const child = spawn(process.execPath, ['-e', `const s=require('net').connect(${url.port},'${url.hostname}',()=>{s.write(${JSON.stringify(`POST /api/run HTTP/1.1\r\nhost: ${url.host}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)});setInterval(()=>{},1000)})`], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 100));
  child.kill('SIGKILL');
  await new Promise((r) => child.on('close', r));
  const answer = await runApi(served, { prompt: P, k: 2 });
  assert.equal(answer.status, 200);
  assert.deepEqual(JSON.parse(answer.body), { records: await cliRecords(['topk', '-k', '2', P]) });
});

test('lens serve prints the served address, refuses a model it did not load, and stops on SIGTERM', async () => {
  const child = spawn(process.execPath, [LENS_BIN, 'serve', '-m', MODEL, '--port', '0', '--offline'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  const origin = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (d) => { stderr += d; const m = /^lens: serving (http:\/\/127\.0\.0\.1:\d+)\/\n/m.exec(stderr); if (m) resolve(m[1]); });
    child.on('close', () => reject(new Error(`exited: ${stderr}`)));
  });
  const served = { origin, close: async () => {} };
  const answer = await runApi(served, { prompt: P, model: 'Xenova/gpt2' });
  assert.equal(answer.status, 400);
  assert.match(JSON.parse(answer.body).error, /is not served/);
  child.kill('SIGTERM');
  const code = await new Promise((r) => child.on('close', (c) => r(c)));
  assert.equal(code, 0);
  assert.equal(stderr, `lens: serving ${origin}/\n`);
});

test('lens serve --host other than loopback warns first', async () => {
  const r = await runCli(['serve', '-m', `${scratchDir('none')}/missing`, '--host', '0.0.0.0', '--port', '0'], { env: { LENS_CACHE: cache } });
  const lines = r.stderr.trim().split('\n');
  assert.match(lines[0], /^lens: warning: listening on 0\.0\.0\.0: anyone who can reach this address can run the models$/);
  assert.match(lines[1], /^lens: model directory not found/);
  assert.equal(r.code, 1);
});

const attributeApi = (served: Served, body: unknown) => call(served, '/api/attribute', { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

test('POST /api/attribute answers the records `lens attribute --json` prints; bad bodies are 400', async () => {
  const served = await shared();
  for (const [body, args] of [
    [{ prompt: P }, ['attribute', P]],
    [{ prompt: P, positions: ':', targets: [' football', 262], heads: true }, ['attribute', '--position', ':', '--target', ' football', '--target-id', '262', '--heads', P]],
    [{ prompt: [P, 'Alan Turing was a'], targets: [{ id: 262 }] }, ['attribute', '--target-id', '262', P, 'Alan Turing was a']],
  ] as [unknown, string[]][]) {
    const answer = await attributeApi(served, body);
    assert.equal(answer.status, 200, answer.body);
    assert.deepEqual(JSON.parse(answer.body), { records: await cliRecords(args) });
  }
  const cli = await runCli(['attribute', '-m', MODEL, '--offline', '--target', 'a', '--target', 'b', '--target', 'c', P], { env: { LENS_CACHE: cache } });
  const three = await attributeApi(served, { prompt: P, targets: ['a', 'b', 'c'] });
  assert.equal(three.status, 400);
  assert.equal(`lens: ${JSON.parse(three.body).error}\n`, cli.stderr);
  for (const body of ['{bad json', '[]', '{}', '{"prompt": 3}', '{"prompt": "a", "k": 3}', '{"prompt": "a", "model": "/etc"}', '{"prompt": "a", "targets": "x"}', '{"prompt": "a", "targets": [{}]}', '{"prompt": "a", "positions": "9"}', '{"prompt": "a", "positions": [1.5]}']) {
    const answer = await call(served, '/api/attribute', { body });
    assert.equal(answer.status, 400, `${body}: ${answer.body}`);
    assert.equal(JSON.parse(answer.body).code, 'E_USAGE', body);
  }
  assert.equal((await call(served, '/api/attribute')).status, 405);
  // the logit-only server has no tuned lens to switch to
  const tuned = await runApi(served, { prompt: P, lens: 'tuned' });
  assert.equal(tuned.status, 400);
  assert.match(JSON.parse(tuned.body).error, /tuned lens is not loaded/);
  assert.equal((await runApi(served, { prompt: P, lens: 'other' })).status, 400);
});

test('a server opened with a tuned lens answers tuned records by default and logit records when asked, as the CLI', async () => {
  const lensDir = writeTunedLens(TINY.d, TINY.layers);
  const served = await serve({ models: [MODEL], env, offline: true, port: 0, lens: 'tuned', tunedLens: lensDir });
  try {
    assert.equal(JSON.parse((await call(served, '/api/models')).body).models[0].tuned, true);
    const tuned = await runApi(served, { prompt: P, positions: ':', k: 3 });
    assert.equal(tuned.status, 200, tuned.body);
    const tunedRecords = JSON.parse(tuned.body).records;
    assert.equal(tunedRecords[0].mode, 'tuned');
    assert.deepEqual(tunedRecords, await cliRecords(['heatmap', '-k', '3', '--tuned-lens', lensDir, P]));
    assert.deepEqual(JSON.parse((await runApi(served, { prompt: P, positions: ':', k: 3, lens: 'tuned' })).body).records, tunedRecords);
    const logit = await runApi(served, { prompt: P, positions: ':', k: 3, lens: 'logit' });
    assert.deepEqual(JSON.parse(logit.body).records, await cliRecords(['heatmap', '-k', '3', P]));
    // the tuned lens has no translators for mid-block sites: the CLI's message
    const sub = await runApi(served, { prompt: P, sublayers: true });
    assert.equal(sub.status, 400);
    assert.match(JSON.parse(sub.body).error, /--sublayers and --lens tuned/);
  } finally {
    await served.close();
  }
});

test('lens serve: --tuned-lens with --lens logit is a one-line usage error; --lens tuned alone looks the Space up, as the commands do', async () => {
  const both = await runCli(['serve', '-m', MODEL, '--offline', '--port', '0', '--lens', 'logit', '--tuned-lens', 'somewhere'], { env: { LENS_CACHE: cache } });
  assertOneLineError(both, 2, /--tuned-lens goes with --lens tuned/);
  const none = await runCli(['serve', '-m', MODEL, '--offline', '--port', '0', '--lens', 'tuned'], { env: { LENS_CACHE: cache } });
  // Offline, the Space's lens for the fixture (named after its directory) is not cached: one line naming the names tried.
  assertOneLineError(none, 1, /^lens: no tuned lens for .*opset14-merged.* in the cache and the network is off \(offline mode\); tried /);
});
