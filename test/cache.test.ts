// `lens cache` on a cache built by real runs: it lists downloads and rewritten entries with their
// size on disk (checked against du, which counts hard links once) and last use; rm and prune
// remove them, but never what a running lens process uses, nothing outside $LENS_CACHE and
// nothing of the Hugging Face cache.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertOneLineError, cleanEnv, fixture, LENS_BIN, runCli, scratchDir, TINY } from './helpers.js';
import { startHub } from './hub-server.js';

const HUB_MODEL = fixture('opset17-merged-external').dir;
const LOCAL = fixture('opset14-flat', { ...TINY, seed: 5 }).dir;
const hub = await startHub();
hub.repos.set('tiny/gpt2', HUB_MODEL);
after(() => hub.close());

interface Entry { kind: string; model: string; revision?: string; dtypes: string[]; path: string; bytes: number; sharedBytes: number; lastUse: string; users: number[]; complete: boolean }
interface Listing { root: string; entries: Entry[]; totalBytes: number }

/** du's count of bytes on disk, each inode once across all the paths given. */
const du = (...paths: string[]) => Number(execFileSync('du', ['-scB1', ...paths], { encoding: 'utf8' }).trim().split('\n').at(-1)!.split('\t')[0]);

async function list(env: NodeJS.ProcessEnv): Promise<Listing> {
  const r = await runCli(['cache', '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Listing;
}

/** A cache with a download of tiny/gpt2, its rewritten entry, and the entry of a local directory; and a Hugging Face cache beside it. */
async function builtCache(name: string) {
  const cache = scratchDir(name);
  const huggingFace = scratchDir(`${name}-hf`);
  const snapshot = join(huggingFace, 'models--other--model', 'snapshots', 'c'.repeat(40));
  cpSync(LOCAL, snapshot, { recursive: true });
  mkdirSync(join(huggingFace, 'models--other--model', 'refs'));
  writeFileSync(join(huggingFace, 'models--other--model', 'refs', 'main'), 'c'.repeat(40));
  // The fixture's weights lie back to back, as onnx.save_model writes them: lens would copy them page
  // aligned; refusing copies keeps the entry's hard links to the download, which the listing must count once.
  const env = { HF_ENDPOINT: hub.url, LENS_CACHE: cache, HF_HUB_CACHE: huggingFace, LENS_ALIGNED_COPY: 'never' };
  const before = Date.now();
  for (const model of ['tiny/gpt2', LOCAL]) {
    const r = await runCli(['topk', '--model', model, 'hello'], { env });
    assert.equal(r.code, 0, r.stderr);
  }
  return { cache, huggingFace, env, before, after: Date.now() };
}

const byKind = (listing: Listing, kind: string, model: string) => listing.entries.filter((e) => e.kind === kind && e.model === model);

test('lens cache lists downloads and rewritten entries: model, revision, dtype, size on disk (hard links once), last use', async () => {
  const { cache, env, before, after: end } = await builtCache('cache-list');
  const listing = await list(env);
  assert.equal(listing.root, cache);
  assert.equal(listing.entries.length, 3, JSON.stringify(listing.entries.map((e) => [e.kind, e.model])));
  const [download] = byKind(listing, 'download', 'tiny/gpt2');
  const [rewritten] = byKind(listing, 'lens', 'tiny/gpt2');
  const [local] = byKind(listing, 'lens', LOCAL);
  assert.ok(download && rewritten && local);
  assert.deepEqual([download.revision, download.dtypes, download.complete], ['main', ['fp32'], true]);
  assert.deepEqual([rewritten.revision, rewritten.dtypes, local.revision, local.dtypes], ['main', ['fp32'], undefined, ['fp32']]);
  assert.equal(download.path, join(cache, 'hub', 'tiny', 'gpt2'));
  for (const e of listing.entries) {
    assert.equal(e.bytes, du(e.path), `${e.kind} ${e.model}`);
    const used = Date.parse(e.lastUse);
    assert.ok(used >= before - 1000 && used <= end + 1000, `${e.kind} ${e.model} last used ${e.lastUse}`);
    assert.deepEqual(e.users, []);
  }
  // The entry of a download links its weights: shared with the download, counted once in the total.
  const linkedWeights = statSync(join(download.path, 'onnx', 'model.onnx_data'));
  assert.ok(linkedWeights.nlink >= 2);
  assert.equal(rewritten.sharedBytes, linkedWeights.blocks * 512, 'the linked weights are all it shares');
  assert.equal(download.sharedBytes, linkedWeights.blocks * 512);
  assert.equal(local.sharedBytes, 0, 'an entry of a model with inline weights links nothing');
  assert.equal(listing.totalBytes, du(...listing.entries.map((e) => e.path)));
  assert.ok(listing.totalBytes < listing.entries.reduce((n, e) => n + e.bytes, 0), 'hard links counted once in the total');

  const text = await runCli(['cache'], { env });
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, new RegExp(`^${cache}: [\\d.]+ [kMG]B on disk`));
  assert.match(text.stdout, /\ndownload\s+tiny\/gpt2\s+main\s+fp32\s+[\d.]+ [kMG]B \([\d.]+ [kMG]B shared\)\s+just now/);
  assert.match(text.stdout, /\nrewritten\s+tiny\/gpt2\s+main\s+fp32\s+[\d.]+ [kMG]B \([\d.]+ [kMG]B shared\)\s+just now/);

  // A later use is recorded.
  const older = new Date(Date.now() - 3 * 86400_000);
  utimesSync(join(local.path, '.lens-users', 'last-use'), older, older);
  assert.match((await runCli(['cache'], { env })).stdout, /3 d ago/);
  assert.equal((await runCli(['topk', '--model', LOCAL, 'hi'], { env })).code, 0);
  assert.ok(Date.parse(byKind(await list(env), 'lens', LOCAL)[0].lastUse) > older.getTime() + 86400_000);
});

test('lens cache rm removes a model\'s download and entries, nothing else; unknown models and bad values are one-line errors', async () => {
  const { cache, huggingFace, env } = await builtCache('cache-rm');
  const hfFiles = readdirSync(huggingFace, { recursive: true }).length;
  const r = await runCli(['cache', 'rm', 'tiny/gpt2'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^removed (download|rewritten) tiny\/gpt2 fp32 \([\d.]+ [kMG]?B\)\nremoved (download|rewritten) tiny\/gpt2 fp32/);
  const listing = await list(env);
  assert.deepEqual(listing.entries.map((e) => [e.kind, e.model]), [['lens', LOCAL]]);
  assert.ok(!existsSync(join(cache, 'hub', 'tiny', 'gpt2')));
  assert.deepEqual(readdirSync(join(cache, 'lens')).filter((n) => n.includes('.tmp-')), [], 'nothing left half deleted');
  // The Hugging Face cache is read, never written: its model is not ours to remove.
  assertOneLineError(await runCli(['cache', 'rm', 'other/model'], { env }), 1, /the lens cache .* holds nothing of other\/model/);
  assert.equal(readdirSync(huggingFace, { recursive: true }).length, hfFiles);
  assertOneLineError(await runCli(['cache', 'rm', LOCAL, '--dtype', 'q4'], { env }), 1, /holds nothing of .* in q4/);
  assertOneLineError(await runCli(['cache', 'prune', '--older-than', 'soon'], { env }), 2, /not an age: "soon"/);
  assertOneLineError(await runCli(['cache', 'prune', '--max-size', '12 parsecs'], { env }), 2, /not a size/);
  assert.equal((await list(env)).entries.length, 1, 'a refused command removes nothing');
  // The next run downloads and prepares again.
  const again = await runCli(['topk', '--model', 'tiny/gpt2', 'hello'], { env });
  assert.equal(again.code, 0, again.stderr);
  assert.equal((await list(env)).entries.length, 3);
});

test('lens cache prune removes what is unused for longer than --older-than, then the least recently used past --max-size', async () => {
  const { cache, env } = await builtCache('cache-prune');
  // A directory outside the cache, reachable through a symlink inside it: never followed, never touched.
  const outside = scratchDir('cache-outside');
  mkdirSync(join(outside, 'victim'), { recursive: true });
  writeFileSync(join(outside, 'victim', 'keep.txt'), 'mine');
  symlinkSync(outside, join(cache, 'hub', 'evil'));
  symlinkSync(join(outside, 'victim'), join(cache, 'lens', 'evil'));
  const listing = await list(env);
  assert.equal(listing.entries.length, 3, 'symlinks are not entries');
  const ageOf = (e: Entry, days: number) => { const t = new Date(Date.now() - days * 86400_000); utimesSync(join(e.path, '.lens-users', 'last-use'), t, t); };
  const [download] = byKind(listing, 'download', 'tiny/gpt2');
  const [rewritten] = byKind(listing, 'lens', 'tiny/gpt2');
  const [local] = byKind(listing, 'lens', LOCAL);
  ageOf(local, 40); ageOf(download, 10); ageOf(rewritten, 5);
  const old = await runCli(['cache', 'prune', '--older-than', '30d'], { env });
  assert.equal(old.code, 0, old.stderr);
  assert.match(old.stdout, /^removed rewritten .*opset14-flat.* fp32/);
  assert.deepEqual((await list(env)).entries.map((e) => e.path).sort(), [download.path, rewritten.path].sort());
  // Past a size: the least recently used goes first (the download, 10 days), until the rest fits.
  const fits = rewritten.bytes + 1;
  const sized = await runCli(['cache', 'prune', '--max-size', `${fits}B`], { env });
  assert.equal(sized.code, 0, sized.stderr);
  assert.deepEqual((await list(env)).entries.map((e) => e.path), [rewritten.path]);
  const none = await runCli(['cache', 'prune', '--max-size', '0'], { env });
  assert.equal(none.code, 0, none.stderr);
  assert.deepEqual((await list(env)).entries, []);
  assert.equal(readdirSync(join(outside, 'victim')).join(), 'keep.txt');
});

test('an entry a running lens process uses is left alone by rm and prune, and removed once it ends', async () => {
  const { env } = await builtCache('cache-busy');
  // A lens reading prompts from stdin holds its model (download and entry) until its input ends.
  const child = spawn(process.execPath, [LENS_BIN, 'topk', '--model', 'tiny/gpt2', '--json', '--file', '-'], { env: cleanEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const firstRecord = new Promise<void>((resolve) => child.stdout.setEncoding('utf8').on('data', () => resolve()));
  child.stdin.write('hello\n');
  await firstRecord;
  try {
    const listing = await list(env);
    for (const e of byKind(listing, 'download', 'tiny/gpt2').concat(byKind(listing, 'lens', 'tiny/gpt2'))) assert.deepEqual(e.users, [child.pid], `${e.kind}`);
    const rm = await runCli(['cache', 'rm', 'tiny/gpt2'], { env });
    assertOneLineError(rm, 1, new RegExp(`kept (download|rewritten) tiny/gpt2 fp32: in use by lens process ${child.pid}`));
    const prune = await runCli(['cache', 'prune', '--max-size', '0'], { env });
    assert.equal(prune.code, 0, prune.stderr);
    assert.match(prune.stdout, new RegExp(`kept download tiny/gpt2 fp32: in use by lens process ${child.pid}`));
    assert.match(prune.stdout, /removed rewritten .*opset14-flat/);
    assert.deepEqual((await list(env)).entries.map((e) => e.model), ['tiny/gpt2', 'tiny/gpt2']);
    // Still usable by the process holding it.
    child.stdin.write('world\n');
  } finally {
    child.stdin.end();
  }
  assert.equal(await closed, 0, stderr);
  const rm = await runCli(['cache', 'rm', 'tiny/gpt2'], { env });
  assert.equal(rm.code, 0, rm.stderr);
  assert.deepEqual((await list(env)).entries, []);
});

test('lens cache rm --dtype removes one dtype of a download of several, and its entry; the other keeps working offline', async () => {
  const variants = fixture('opset14-flat', TINY, { variants: true }).dir;
  hub.repos.set('tiny/variants', variants);
  const cache = scratchDir('cache-dtype');
  const env = { HF_ENDPOINT: hub.url, LENS_CACHE: cache };
  for (const dtype of ['fp32', 'q8']) {
    const r = await runCli(['topk', '--model', 'tiny/variants', '--dtype', dtype, '--json', 'hello'], { env });
    assert.equal(r.code, 0, r.stderr);
  }
  const [download] = byKind(await list(env), 'download', 'tiny/variants');
  assert.deepEqual(download.dtypes, ['fp32', 'q8']);
  const r = await runCli(['cache', 'rm', 'tiny/variants', '--dtype', 'q8'], { env });
  assert.equal(r.code, 0, r.stderr);
  const listing = await list(env);
  assert.deepEqual(listing.entries.map((e) => [e.kind, e.dtypes.join()]).sort(), [['download', 'fp32'], ['lens', 'fp32']]);
  assert.ok(!existsSync(join(download.path, 'onnx', 'model_quantized.onnx')));
  assert.ok(existsSync(join(download.path, 'onnx', 'model.onnx')) && existsSync(join(download.path, 'tokenizer.json')));
  const offline = await runCli(['topk', '--model', 'tiny/variants', '--offline', 'hello'], { env });
  assert.equal(offline.code, 0, offline.stderr);
  assertOneLineError(await runCli(['topk', '--model', 'tiny/variants', '--dtype', 'q8', '--offline', 'hello'], { env }), 1, /not in the cache/);
});
