// Downloads against a faulty loopback hub: a cut transfer resumes where it stopped, a file the hub
// changed starts over, bytes that are not what the hub published are refused and removed, a slow
// but steady transfer completes, Ctrl-C leaves a partial to resume; and the Hugging Face cache's
// refs pick the snapshot.
import { test, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveModel } from '../src/model/hub.js';
import { normalizeEtag } from '../src/model/download.js';
import { assertOneLineError, cleanEnv, fixture, LENS_BIN, runCli, scratchDir, TINY } from './helpers.js';
import { startHub } from './hub-server.js';

const { dir: MODEL } = fixture('opset17-merged-external');
const DATA = 'onnx/model.onnx_data';
const DATA_BYTES = readFileSync(join(MODEL, DATA));
const hub = await startHub();
hub.repos.set('tiny/gpt2', MODEL);
after(() => hub.close());
beforeEach(() => {
  hub.faults.clear(); hub.contents.clear(); hub.served.length = 0; hub.requests.length = 0; hub.ranges = true; hub.storageEtags = true;
});

/** The largest piece one read of the response body gives here: what a resumed download may fetch twice. */
const ONE_CHUNK = 64 << 10;
const env = (cache: string, extra: NodeJS.ProcessEnv = {}) => ({ HF_ENDPOINT: hub.url, LENS_CACHE: cache, LENS_STALL_TIMEOUT_MS: '30000', ...extra });
const downloaded = (cache: string, file: string) => join(cache, 'hub', 'tiny', 'gpt2', file);
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
/** The body bytes storage sent for `file` over every GET. */
const bodyBytesOf = (file: string) => hub.served.filter((s) => s.method === 'GET' && s.path.endsWith(`/${file}`)).reduce((n, s) => n + s.bodyBytes, 0);
const getsOf = (file: string) => hub.served.filter((s) => s.method === 'GET' && s.path.endsWith(`/${file}`));
const reference = await runCli(['topk', '--model', MODEL, '--json', 'hello'], { env: { LENS_CACHE: scratchDir('download-ref') } });
const sameLens = (stdout: string) => assert.deepEqual({ ...JSON.parse(stdout), model: '' }, { ...JSON.parse(reference.stdout), model: '' });

/** A first run whose transfer of the weights is cut after `fraction` of them: it fails, leaving a partial file. Returns its size; the hub is healthy again after. */
async function cutRun(cache: string, fraction: number): Promise<number> {
  hub.faults.set(DATA, 'cut');
  hub.cutAfter = Math.floor(DATA_BYTES.length * fraction);
  const cut = await runCli(['topk', '--model', 'tiny/gpt2', 'hello'], { env: env(cache) });
  assertOneLineError(cut, 1, /download of onnx\/model\.onnx_data (was interrupted|was cut short).*run the command again to resume it/);
  hub.faults.clear();
  return statSync(downloaded(cache, `${DATA}.incomplete`)).size;
}

test('ETags are compared without W/ and quotes, as huggingface_hub does', () => {
  assert.equal(normalizeEtag('"abc"'), 'abc');
  assert.equal(normalizeEtag('W/"abc"'), 'abc');
  assert.equal(normalizeEtag(' abc '), 'abc');
  assert.equal(normalizeEtag(null), undefined);
});

test('a download cut mid-file resumes from where it stopped: no byte sent twice beyond one chunk', async () => {
  const cache = scratchDir('resume');
  const kept = await cutRun(cache, 0.4);
  const partial = downloaded(cache, `${DATA}.incomplete`);
  assert.ok(existsSync(`${partial}.json`), 'the partial file and its record are kept');
  assert.ok(kept > 0 && kept <= hub.cutAfter, `kept ${kept} of ${hub.cutAfter} sent`);
  assert.ok(!existsSync(downloaded(cache, DATA)), 'nothing unverified in place');

  const resumed = await runCli(['topk', '--model', 'tiny/gpt2', '--json', 'hello'], { env: env(cache) });
  assert.equal(resumed.code, 0, resumed.stderr);
  sameLens(resumed.stdout);
  const [again] = getsOf(DATA).slice(-1);
  assert.equal(again.range, `bytes=${kept}-`);
  assert.equal(again.status, 206);
  assert.ok(again.ifRange, 'If-Range sent with the storage validator');
  const sent = bodyBytesOf(DATA);
  assert.ok(sent >= DATA_BYTES.length && sent - DATA_BYTES.length <= ONE_CHUNK, `storage sent ${sent} bytes for a ${DATA_BYTES.length}-byte file`);
  assert.equal(sha256(readFileSync(downloaded(cache, DATA))), sha256(DATA_BYTES));
  assert.ok(!existsSync(partial) && !existsSync(`${partial}.json`), 'the partial is gone once the file is in place');
});

test('storage with no validator: an LFS file resumes with Range alone, its published sha256 the guard', async () => {
  const cache = scratchDir('resume-no-etag');
  hub.storageEtags = false;
  const kept = await cutRun(cache, 0.5);
  const r = await runCli(['topk', '--model', 'tiny/gpt2', '--json', 'hello'], { env: env(cache) });
  assert.equal(r.code, 0, r.stderr);
  sameLens(r.stdout);
  const [again] = getsOf(DATA).slice(-1);
  assert.deepEqual([again.range, again.ifRange, again.status], [`bytes=${kept}-`, undefined, 206]);
  assert.equal(sha256(readFileSync(downloaded(cache, DATA))), sha256(DATA_BYTES));
});

test('a file changed on the hub between tries is downloaded anew, not spliced', async () => {
  const cache = scratchDir('changed');
  await cutRun(cache, 0.5);
  // The same weights with their second half changed: the hub now publishes another sha256.
  const changed = Buffer.from(DATA_BYTES);
  for (let i = changed.length >> 1; i < changed.length; i += 4096) changed[i] ^= 0x01;
  hub.contents.set(DATA, changed);
  const r = await runCli(['topk', '--model', 'tiny/gpt2', 'hello'], { env: env(cache) });
  assert.equal(r.code, 0, r.stderr);
  const [restart] = getsOf(DATA).slice(-1);
  assert.equal(restart.range, undefined, 'no range asked: the partial was of another file');
  assert.equal(sha256(readFileSync(downloaded(cache, DATA))), sha256(changed));
});

test('a server that answers a resume with the whole file (200) starts the file over', async () => {
  const cache = scratchDir('no-ranges');
  await cutRun(cache, 0.25);
  hub.ranges = false;
  const r = await runCli(['topk', '--model', 'tiny/gpt2', '--json', 'hello'], { env: env(cache) });
  assert.equal(r.code, 0, r.stderr);
  sameLens(r.stdout);
  const [again] = getsOf(DATA).slice(-1);
  assert.ok(again.range && again.status === 200, `asked ${again.range}, answered ${again.status}`);
  assert.equal(sha256(readFileSync(downloaded(cache, DATA))), sha256(DATA_BYTES));
});

test('bytes that do not match the published sha256 are refused and removed, naming the file', async () => {
  const cache = scratchDir('tamper');
  hub.faults.set(DATA, 'tamper');
  const r = await runCli(['topk', '--model', 'tiny/gpt2', 'hello'], { env: env(cache) });
  assertOneLineError(r, 1, new RegExp(`download of onnx/model\\.onnx_data does not match the hub \\(sha256 [0-9a-f]{64} where the hub published ${sha256(DATA_BYTES)}\\); discarded`));
  const left = readdirSync(join(cache, 'hub', 'tiny', 'gpt2', 'onnx'));
  assert.deepEqual(left.filter((f) => f.startsWith('model.onnx_data')), [], `left: ${left.join(', ')}`);
  assert.ok(!existsSync(downloaded(cache, '.lens-complete.json')));
  assert.ok(!existsSync(join(cache, 'lens')), 'nothing was prepared from it');
  hub.faults.clear();
  const retry = await runCli(['topk', '--model', 'tiny/gpt2', '--json', 'hello'], { env: env(cache) });
  assert.equal(retry.code, 0, retry.stderr);
  sameLens(retry.stdout);
});

test('a slow but steady download completes; only silence is a stall', async () => {
  // 8 KiB every 300 ms (about 27 KiB/s) for the 262 kB graph: about 10 s, five times a 2 s stall time.
  hub.throttle = { bytes: 8 << 10, everyMs: 300 };
  hub.faults.set('onnx/model.onnx', 'throttle');
  const started = Date.now();
  const slow = await runCli(['topk', '--model', 'tiny/gpt2', '--json', 'hello'], { env: env(scratchDir('slow'), { LENS_STALL_TIMEOUT_MS: '2000' }) });
  const seconds = (Date.now() - started) / 1000;
  assert.equal(slow.code, 0, slow.stderr);
  sameLens(slow.stdout);
  assert.ok(seconds > 4, `the throttle held the transfer for ${seconds} s, several stall times`);
  // The same hub pausing longer than the stall time between pieces: the timer does fire on silence.
  hub.throttle = { bytes: 8 << 10, everyMs: 5000 };
  const stalled = await runCli(['topk', '--model', 'tiny/gpt2', 'hello'], { env: env(scratchDir('slow-stall'), { LENS_STALL_TIMEOUT_MS: '2000' }) });
  assertOneLineError(stalled, 1, /download of onnx\/model\.onnx was interrupted: no data for 2 s/);
});

test('Ctrl-C during a download leaves a partial file that the next run resumes', async () => {
  const cache = scratchDir('sigint');
  hub.throttle = { bytes: 64 << 10, everyMs: 50 };
  hub.faults.set(DATA, 'throttle');
  const child = spawn(process.execPath, [LENS_BIN, 'topk', '--model', 'tiny/gpt2', 'hello'], { env: cleanEnv(env(cache)), stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const partial = downloaded(cache, `${DATA}.incomplete`);
  // Waits for the child to start and write the first MiB, however loaded the machine (the throttled
  // hub keeps the transfer going for seconds once it has started); the limit only ends a broken run.
  for (let i = 0; i < 4800 && !(existsSync(partial) && statSync(partial).size > 1 << 20); i++) await new Promise((r) => setTimeout(r, 25));
  assert.ok(existsSync(partial), `no partial download after 2 minutes: ${stderr}`);
  child.kill('SIGINT');
  assert.equal(await closed, 130, stderr);
  const kept = statSync(partial).size;
  assert.ok(kept > 1 << 20 && kept < DATA_BYTES.length, `kept ${kept} bytes`);
  hub.faults.clear();
  const resumed = await runCli(['topk', '--model', 'tiny/gpt2', '--json', 'hello'], { env: env(cache) });
  assert.equal(resumed.code, 0, resumed.stderr);
  sameLens(resumed.stdout);
  // What was in flight at the signal is lost; what was on disk is not asked for again.
  const resume = getsOf(DATA).at(-1)!;
  assert.equal(resume.range, `bytes=${kept}-`);
  assert.equal(resume.bodyBytes, DATA_BYTES.length - kept);
});

test('the Hugging Face cache: refs/main picks the newer of several snapshots; a commit or another ref picks its own', async () => {
  const hf = scratchDir('hf-snapshots');
  const repo = join(hf, 'models--tiny--gpt2');
  const older = 'a'.repeat(40), newer = 'b'.repeat(40);
  // As huggingface_hub lays it out: files in blobs/ by hash, snapshots/<commit>/ of symlinks into them.
  const sources: Record<string, string> = { [older]: fixture('opset14-flat', { ...TINY, seed: 11 }).dir, [newer]: MODEL };
  for (const [commit, source] of Object.entries(sources)) {
    for (const file of readdirSync(source, { recursive: true, encoding: 'utf8' })) {
      if (!statSync(join(source, file)).isFile()) continue;
      const bytes = readFileSync(join(source, file));
      const blob = join(repo, 'blobs', sha256(bytes));
      if (!existsSync(blob)) { mkdirSync(join(repo, 'blobs'), { recursive: true }); cpSync(join(source, file), blob); }
      const link = join(repo, 'snapshots', commit, file);
      mkdirSync(join(link, '..'), { recursive: true });
      symlinkSync(blob, link);
    }
  }
  mkdirSync(join(repo, 'refs'), { recursive: true });
  writeFileSync(join(repo, 'refs', 'main'), `${newer}\n`);
  writeFileSync(join(repo, 'refs', 'dev'), older);
  const resolveEnv = { HF_HUB_CACHE: hf, LENS_CACHE: scratchDir('hf-lens') };
  const at = async (revision?: string) => (await resolveModel('tiny/gpt2', { dtype: 'fp32', offline: true, revision, env: resolveEnv })).dir;
  assert.equal(await at(), join(repo, 'snapshots', newer));
  assert.equal(await at('dev'), join(repo, 'snapshots', older));
  assert.equal(await at(older), join(repo, 'snapshots', older));
  // The lens runs on the snapshot main names: its output is the newer model's, not the older one's.
  const r = await runCli(['topk', '--model', 'tiny/gpt2', '--offline', '--json', 'hello'], { env: resolveEnv });
  assert.equal(r.code, 0, r.stderr);
  sameLens(r.stdout);
  const old = await runCli(['topk', '--model', 'tiny/gpt2', '--revision', 'dev', '--offline', '--json', 'hello'], { env: resolveEnv });
  assert.equal(old.code, 0, old.stderr);
  assert.notDeepEqual(JSON.parse(old.stdout).layers, JSON.parse(r.stdout).layers);
  // A ref naming a commit whose snapshot is not there: not found, never another snapshot.
  writeFileSync(join(repo, 'refs', 'gone'), 'c'.repeat(40));
  await assert.rejects(at('gone'), /not in the cache/);
});
