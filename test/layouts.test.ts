// Every file a repository publishes: weights declared in config.json (one file, chunks, a
// per-file map), revisions, and models that Python's huggingface_hub has already downloaded.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { LensRecord } from '../src/lens/record.js';
import { decodeModel } from '../src/onnx/proto.js';
import { declareExternalData, writeHuggingFaceCache, type Declaration } from './fixtures/layouts.js';
import { writeFixture } from './fixtures/gpt2.js';
import { assertOneLineError, fixture, runCli, scratchDir, TINY } from './helpers.js';
import { startHub } from './hub-server.js';

const hub = await startHub();
after(() => hub.close());
const PROMPT = 'Paris is capital of';
const INLINE = fixture('opset14-merged').dir;
const withoutModel = (stdout: string) => stdout.trim().split('\n').map((l) => JSON.stringify({ ...(JSON.parse(l) as LensRecord), model: '' }));

async function lensJson(model: string, env: NodeJS.ProcessEnv, extra: string[] = []): Promise<string[]> {
  const r = await runCli(['topk', '--model', model, '--json', ...extra, PROMPT], { env });
  assert.equal(r.code, 0, `${model}: ${r.stderr}`);
  assert.equal(r.stdout.trim().split('\n').length, 1);
  return withoutModel(r.stdout);
}

/** Every file under an entry, with its inode, size and whether it is a link to another name. */
function entryFiles(cache: string): { file: string; ino: number; size: number; nlink: number }[] {
  const root = join(cache, 'lens');
  const [entry] = readdirSync(root);
  return readdirSync(join(root, entry), { recursive: true, encoding: 'utf8' })
    .filter((f) => statSync(join(root, entry, f)).isFile())
    .map((file) => { const s = statSync(join(root, entry, file)); return { file, ino: s.ino, size: s.size, nlink: s.nlink }; });
}

const expected = await lensJson(INLINE, { LENS_CACHE: scratchDir('layout-inline') });

const DECLARATIONS: [string, Declaration, number][] = [
  ['true', true, 1],
  ['two chunks', 2, 2],
  ['a per-file map', { 'model.onnx': 2, 'model_fp16.onnx': 1 }, 2],
  ['a map by base name', { model: 1 }, 1],
];

for (const [name, declaration, chunks] of DECLARATIONS) {
  test(`weights declared in config.json as ${name}: same JSON locally and from the hub, which sees only the files used`, async () => {
    const dir = join(scratchDir('declared'), 'model');
    cpSync(INLINE, dir, { recursive: true });
    const dataFiles = declareExternalData(dir, declaration, chunks);
    assert.equal(dataFiles.length, chunks);

    const cache = scratchDir('declared-cache');
    assert.deepEqual(await lensJson(dir, { LENS_CACHE: cache }), expected);
    // The entry reads the source's data files where they are (hard links), adds only its graph and small weights.
    const files = entryFiles(cache);
    for (const data of dataFiles) {
      const linked = files.find((f) => f.ino === statSync(join(dir, data)).ino);
      assert.ok(linked, `${data} is linked into the entry: ${files.map((f) => f.file).join(', ')}`);
    }
    const own = files.filter((f) => !dataFiles.some((d) => statSync(join(dir, d)).ino === f.ino));
    assert.ok(own.reduce((s, f) => s + f.size, 0) < 1 << 20, `entry's own files: ${JSON.stringify(own)}`);
    const config = JSON.parse(readFileSync(join(cache, 'lens', readdirSync(join(cache, 'lens'))[0], 'config.json'), 'utf8'));
    assert.deepEqual(config['transformers.js_config'], { kv_cache_dtype: { q4f16: 'float16', fp16: 'float16' } });

    const repo = `tiny/declared-${chunks}-${name.length}`;
    hub.repos.set(repo, dir);
    hub.requests.length = 0;
    assert.deepEqual(await lensJson(repo, { HF_ENDPOINT: hub.url, LENS_CACHE: scratchDir('declared-hub') }), expected);
    const wanted = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'onnx/model.onnx', ...dataFiles];
    // Each file is asked about (HEAD) and fetched: the set of paths is exactly the files used.
    assert.deepEqual([...new Set(hub.requests)].sort(), wanted.map((f) => `/${repo}/resolve/main/${f}`).sort());
  });
}

test('a declared chunk that is missing is named in one line', async () => {
  const dir = join(scratchDir('declared-missing'), 'model');
  cpSync(INLINE, dir, { recursive: true });
  const [, second] = declareExternalData(dir, 2, 2);
  const { rmSync } = await import('node:fs');
  rmSync(join(dir, second));
  assertOneLineError(await runCli(['topk', '--model', dir, PROMPT], { env: { LENS_CACHE: scratchDir('declared-missing-cache') } }), 1, /has no onnx\/model\.onnx_data_1 \(config\.json declares it/);
});

test('--revision: fetched from that revision, cached apart from main, then offline', async () => {
  const other = join(scratchDir('revision'), 'model');
  writeFixture(other, 'opset14-merged', { ...TINY, seed: 99 });
  hub.repos.set('tiny/rev', INLINE);
  hub.repos.set('tiny/rev@v2.0', other);
  const cache = scratchDir('revision-cache');
  const env = { HF_ENDPOINT: hub.url, LENS_CACHE: cache };
  hub.requests.length = 0;
  const v2 = await lensJson('tiny/rev', env, ['--revision', 'v2.0']);
  assert.ok(hub.requests.length > 0 && hub.requests.every((p) => p.startsWith('/tiny/rev/resolve/v2.0/')), hub.requests.join());
  assert.deepEqual(v2, await lensJson(other, { LENS_CACHE: cache }));
  assert.notDeepEqual(v2, expected);
  assert.deepEqual(await lensJson('tiny/rev', env), expected, 'main is another download');
  assert.ok(existsSync(join(cache, 'hub', 'tiny', 'rev@v2.0', 'onnx', 'model.onnx')) && existsSync(join(cache, 'hub', 'tiny', 'rev', 'onnx', 'model.onnx')));
  hub.requests.length = 0;
  assert.deepEqual(await lensJson('tiny/rev', { ...env, HF_HUB_OFFLINE: '1' }, ['--revision', 'v2.0']), v2);
  assert.deepEqual(hub.requests, []);
  for (const bad of ['../main', '', '-x', 'a//b']) {
    assertOneLineError(await runCli(['topk', '--model', 'tiny/rev', '--revision', bad, PROMPT], { env }), 2);
  }
  assertOneLineError(await runCli(['topk', '--model', INLINE, '--revision', 'v2.0', PROMPT], { env }), 2, /--revision applies to hub repo ids/);
});

/** Every path under dir with its lstat times and sizes, to show nothing was written there. */
function snapshotOf(dir: string): string {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort().map((f) => { const s = lstatSync(join(dir, f)); return `${f} ${s.size} ${s.mtimeMs} ${s.ino}`; }).join('\n');
}

test("a model in the Hugging Face cache is read from its snapshot, offline, without a download or a write there", async () => {
  const source = join(scratchDir('hf-source'), 'model');
  cpSync(INLINE, source, { recursive: true });
  const dataFiles = declareExternalData(source, true, 1);
  const hf = join(scratchDir('hf-home'), 'hub');
  const commit = 'a'.repeat(39) + 'b';
  writeHuggingFaceCache(hf, 'tiny/cached', commit, ['main', 'v1'], source);
  const before = snapshotOf(hf);
  hub.requests.length = 0;
  const cache = scratchDir('hf-lens-cache');
  const offline = { HF_ENDPOINT: hub.url, LENS_CACHE: cache, HF_HUB_OFFLINE: '1' };
  assert.deepEqual(await lensJson('tiny/cached', { ...offline, HF_HUB_CACHE: hf }), expected);
  assert.deepEqual(await lensJson('tiny/cached', { ...offline, HF_HOME: join(hf, '..') }, ['--revision', 'v1']), expected);
  assert.deepEqual(await lensJson('tiny/cached', { ...offline, HF_HUB_CACHE: hf }, ['--revision', commit]), expected);
  assert.deepEqual(hub.requests, [], 'no request');
  assert.equal(snapshotOf(hf), before, 'nothing written in the Hugging Face cache');
  assert.ok(!existsSync(join(cache, 'hub')), 'no download into our cache');
  // The entry links the blob itself: no second copy of the weights.
  const blob = statSync(join(hf, 'models--tiny--cached', 'snapshots', commit, dataFiles[0])).ino;
  assert.ok(entryFiles(cache).some((f) => f.ino === blob));
  // A revision the cache doesn't have, offline: one line, no request.
  assertOneLineError(await runCli(['topk', '--model', 'tiny/cached', '--revision', 'v9', PROMPT], { env: { ...offline, HF_HUB_CACHE: hf } }), 1, /not in the cache/);
  assert.deepEqual(hub.requests, []);
});

/** The entry's marker (lens-entry.json) of the one entry in `cache`. */
function entryMarker(cache: string): { alignedCopy?: { files: string[]; bytes: number; copied: boolean; reason?: string } } {
  const root = join(cache, 'lens');
  return JSON.parse(readFileSync(join(root, readdirSync(root)[0], 'lens-entry.json'), 'utf8'));
}

test('weights at offsets onnxruntime cannot map (as onnx.save_model writes them) are copied page aligned, unless LENS_ALIGNED_COPY=never', async () => {
  const dir = join(scratchDir('unaligned'), 'model');
  cpSync(INLINE, dir, { recursive: true });
  const [data] = declareExternalData(dir, true, 1, 'onnx/model.onnx', false);
  const source = statSync(join(dir, data));

  const cache = scratchDir('unaligned-cache');
  assert.deepEqual(await lensJson(dir, { LENS_CACHE: cache }), expected);
  const files = entryFiles(cache);
  assert.ok(!files.some((f) => f.ino === source.ino), `no link to the unaligned source: ${files.map((f) => f.file).join(', ')}`);
  // Every large tensor the entry's graph reads is in its own data file, at an offset onnxruntime maps.
  const root = join(cache, 'lens');
  const graph = decodeModel(readFileSync(join(root, readdirSync(root)[0], 'onnx', 'model.onnx'))).graph;
  const large = graph.initializer.filter((t) => Number(t.external_data?.find((e) => e.key === 'length')?.value ?? 0) >= 1 << 20);
  assert.ok(large.length > 0);
  for (const t of large) {
    const at = Object.fromEntries(t.external_data!.map((e) => [e.key, e.value]));
    assert.equal(at.location, 'model.onnx.data', t.name);
    assert.equal(Number(at.offset) % 4096, 0, `${t.name} at ${at.offset}`);
  }
  assert.deepEqual(entryMarker(cache).alignedCopy, { files: ['model.onnx_data'], bytes: source.size, copied: true });
  // lens cache shows the copy and what it costs.
  const listed = await runCli(['cache', '--json'], { env: { LENS_CACHE: cache } });
  assert.equal(listed.code, 0, listed.stderr);
  assert.deepEqual(JSON.parse(listed.stdout).entries.map((e: { alignedCopy?: unknown }) => e.alignedCopy), [{ bytes: source.size, copied: true }]);

  const linkedCache = scratchDir('unaligned-never');
  assert.deepEqual(await lensJson(dir, { LENS_CACHE: linkedCache, LENS_ALIGNED_COPY: 'never' }), expected);
  assert.ok(entryFiles(linkedCache).some((f) => f.ino === source.ino), 'linked as it is when copies are refused');
  assert.deepEqual(entryMarker(linkedCache).alignedCopy, { files: ['model.onnx_data'], bytes: source.size, copied: false, reason: 'LENS_ALIGNED_COPY=never' });
});

test('weights already page aligned are linked, and the entry records no aligned copy', async () => {
  const dir = join(scratchDir('aligned'), 'model');
  cpSync(INLINE, dir, { recursive: true });
  const [data] = declareExternalData(dir, true, 1);
  const cache = scratchDir('aligned-cache');
  assert.deepEqual(await lensJson(dir, { LENS_CACHE: cache }), expected);
  assert.ok(entryFiles(cache).some((f) => f.ino === statSync(join(dir, data)).ino));
  assert.equal(entryMarker(cache).alignedCopy, undefined);
});
