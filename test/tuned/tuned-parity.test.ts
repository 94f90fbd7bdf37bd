// The tuned lens against the independent float64 reference: translators made and saved by the real
// torch (float32 and float16 params.pt), applied in float64 to the reference's residuals
// (h + W h + b for layers 0..L−1, then the final norm and head; layer L the model's own logits), on
// GPT-2 (3 and 41 layers) and Llama fixtures; the command line's tuned-lens flags and errors; a
// lens downloaded from a loopback tuned-lens Space.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tinyConfigFor, writeDecoderFixture } from '../fixtures/llama.js';
import { referenceForward } from '../reference/gpt2.js';
import { assertTunedMatches, makeLens, referenceTuned } from './tuned-reference.js';
import { referenceDecoderForward } from '../reference/llama.js';
import { logProbs } from '../reference/stats.js';
import { assertClose, cleanEnv, fixture, runCli, scratchDir, TINY } from '../helpers.js';
import { startHub } from '../hub-server.js';

const TOL = 1e-4;
const env = cleanEnv({ LENS_CACHE: scratchDir('tuned-cache') });

const GPT2_IDS = [464, 749, 5863, 5701, 287, 4916, 318]; // "The most famous sports in USA is"

for (const dtype of ['float32', 'float16'] as const) {
  test(`tuned lens (${dtype} params.pt from torch) matches the float64 reference: GPT-2`, async (t) => {
    const lens = makeLens(t, TINY.d, TINY.layers, dtype);
    if (!lens) return;
    const { dir, weights } = fixture('opset17-flat');
    await assertTunedMatches(dir, [lens], GPT2_IDS, (ids) => referenceForward(weights, ids));
  });

  test(`tuned lens (${dtype} params.pt from torch) matches the float64 reference: Llama`, async (t) => {
    const config = tinyConfigFor('llama', 'flat');
    const lens = makeLens(t, config.d, config.layers, dtype, 5);
    if (!lens) return;
    const dir = join(scratchDir('tuned-llama'), 'llama');
    const weights = writeDecoderFixture(dir, config, 'flat');
    await assertTunedMatches(dir, [lens], (encode) => encode('The most famous sports in USA is'), (ids) => referenceDecoderForward(weights, ids));
  });
}

test('a 41-layer tuned lens on a 41-layer GPT-2 matches the float64 reference', async (t) => {
  const config = { ...TINY, layers: 41 };
  const lens = makeLens(t, config.d, config.layers, 'float32');
  if (!lens) return;
  const { dir, weights } = fixture('opset17-flat', config);
  await assertTunedMatches(dir, [lens], GPT2_IDS, (ids) => referenceForward(weights, ids));
});

test('command line: --tuned-lens gives "mode": "tuned" records with the reference probabilities; usage and file errors are one line', async (t) => {
  const lens = makeLens(t, TINY.d, TINY.layers, 'float32');
  if (!lens) return;
  const { dir, weights } = fixture('opset17-flat');
  const prompt = 'The most famous sports in USA is';
  const result = await runCli(['topk', '-m', dir, '--tuned-lens', lens.dir, '--json', '--offline', prompt], { env });
  assert.equal(result.code, 0, result.stderr);
  const record = JSON.parse(result.stdout);
  assert.equal(record.mode, 'tuned');
  const expected = referenceTuned(referenceForward(weights, GPT2_IDS), lens, GPT2_IDS.length - 1).map(logProbs);
  record.layers.forEach((layer: { layer: number; top: { id: number; prob: number }[] }, l: number) => {
    assert.equal(layer.layer, l);
    for (const top of layer.top) assertClose(top.prob, Math.exp(expected[l][top.id]), TOL, `L${l} P(${top.id})`);
  });

  const oneLine = async (args: string[], code: number, pattern: RegExp) => {
    const run = await runCli(['topk', '-m', dir, '--offline', ...args, prompt], { env });
    assert.equal(run.code, code, `${args.join(' ')}: ${run.stderr}`);
    assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
    assert.match(run.stderr, pattern);
    assert.equal(run.stdout, '');
  };
  // Without --tuned-lens the Space is asked under the names the model suggests; offline none is cached.
  await oneLine(['--lens', 'tuned'], 1, /no tuned lens for .*opset17-flat-\d+ in the cache and the network is off \(offline mode\); tried opset17-flat-\d+ \(/);
  await oneLine(['--tuned-lens', lens.dir, '--raw'], 2, /--raw and --lens tuned/);
  await oneLine(['--tuned-lens', lens.dir, '--sublayers'], 2, /--sublayers and --lens tuned/);
  await oneLine(['--tuned-lens', lens.dir, '--lens', 'logit'], 2, /--tuned-lens goes with --lens tuned/);

  // A lens for another shape, a missing key, a missing file, a truncated params.pt.
  const other = makeLens(t, TINY.d, TINY.layers + 1, 'float32');
  if (!other) return;
  await oneLine(['--tuned-lens', other.dir], 1, /is for 4 layers \(num_hidden_layers\); .* has 3/);
  const wide = makeLens(t, TINY.d + 2, TINY.layers, 'float32');
  if (!wide) return;
  await oneLine(['--tuned-lens', wide.dir], 1, /is for d_model 34; .* has 32/);
  const broken = scratchDir('tuned-broken');
  mkdirSync(join(broken, 'missing-key'));
  copyFileSync(join(lens.dir, 'params.pt'), join(broken, 'missing-key', 'params.pt'));
  writeFileSync(join(broken, 'missing-key', 'config.json'), JSON.stringify({ base_model_name_or_path: 'x', d_model: TINY.d, num_hidden_layers: TINY.layers, bias: true, lens_type: 'linear_tuned_lens' }).replace('"bias":true', '"bias":false'));
  await oneLine(['--tuned-lens', join(broken, 'missing-key')], 1, /unexpected keys \(0\.bias/);
  await oneLine(['--tuned-lens', join(broken, 'nowhere')], 1, /^lens: tuned lens directory not found: .*nowhere \(/);
  await oneLine(['--tuned-lens', join(lens.dir, 'config.json')], 1, /^lens: tuned lens directory not found: .*config\.json \(/);
  await oneLine(['--tuned-lens', join(broken, 'missing-key', '..')], 1, /has no config\.json/);
  writeFileSync(join(broken, 'missing-key', 'config.json'), JSON.stringify({ d_model: '32', num_hidden_layers: TINY.layers }));
  await oneLine(['--tuned-lens', join(broken, 'missing-key')], 1, /missing-key\/config\.json: no valid d_model \(a positive integer\)$/m);
  mkdirSync(join(broken, 'truncated'));
  copyFileSync(join(lens.dir, 'config.json'), join(broken, 'truncated', 'config.json'));
  const whole = readFileSync(join(lens.dir, 'params.pt'));
  writeFileSync(join(broken, 'truncated', 'params.pt'), whole.subarray(0, whole.length - 100));
  await oneLine(['--tuned-lens', join(broken, 'truncated')], 1, /params\.pt: not a complete zip archive/);
});

test('a lens named in a loopback tuned-lens Space: downloaded once, the same records as from its directory, offline afterwards; a damaged one is not kept', async (t) => {
  const lens = makeLens(t, TINY.d, TINY.layers, 'float16');
  if (!lens) return;
  const { dir } = fixture('opset17-flat');
  const space = scratchDir('tuned-space');
  for (const name of ['tiny-gpt2', 'broken']) mkdirSync(join(space, 'lens', name), { recursive: true });
  for (const file of ['config.json', 'params.pt']) copyFileSync(join(lens.dir, file), join(space, 'lens', 'tiny-gpt2', file));
  copyFileSync(join(lens.dir, 'config.json'), join(space, 'lens', 'broken', 'config.json'));
  const whole = readFileSync(join(lens.dir, 'params.pt'));
  writeFileSync(join(space, 'lens', 'broken', 'params.pt'), whole.subarray(0, whole.length - 64));
  const hub = await startHub();
  try {
    hub.repos.set('spaces/AlignmentResearch/tuned-lens', space);
    const cache = scratchDir('tuned-space-cache');
    const spaceEnv = { ...env, HF_ENDPOINT: hub.url, LENS_CACHE: cache };
    const args = ['topk', '-m', dir, '--json', 'The most famous sports in USA is'];
    const fromDir = await runCli([...args, '--tuned-lens', lens.dir], { env: spaceEnv });
    assert.equal(fromDir.code, 0, fromDir.stderr);
    const fromSpace = await runCli([...args, '--tuned-lens', 'tiny-gpt2'], { env: spaceEnv });
    assert.equal(fromSpace.code, 0, fromSpace.stderr);
    assert.equal(fromSpace.stdout, fromDir.stdout);
    // Each file is fetched once (a GET; the HEAD before it reads what the Space publishes).
    const fetched = () => hub.served.filter((r) => r.method === 'GET' && r.path.includes('/lens/')).map((r) => r.path);
    assert.deepEqual(fetched(), ['config.json', 'params.pt'].map((f) => `/spaces/AlignmentResearch/tuned-lens/resolve/main/lens/tiny-gpt2/${f}`));
    const offline = await runCli([...args, '--tuned-lens', 'tiny-gpt2'], { env: { ...spaceEnv, HF_HUB_OFFLINE: '1' } });
    assert.equal(offline.stdout, fromDir.stdout, offline.stderr);
    assert.equal(fetched().length, 2, 'nothing fetched offline');
    assert.equal(hub.requests.filter((r) => r.includes('/lens/')).length, 4, 'no request at all offline');

    const broken = await runCli([...args, '--tuned-lens', 'broken'], { env: spaceEnv });
    assert.equal(broken.code, 1);
    assert.match(broken.stderr, /^lens: .*broken\/params\.pt: not a complete zip archive/);
    assert.equal(broken.stderr.trim().split('\n').length, 1);
    assert.equal(existsSync(join(cache, 'tuned-lens', 'broken', 'params.pt')), false, 'a damaged download is not kept');
    const missing = await runCli([...args, '--tuned-lens', 'nothing-here'], { env: spaceEnv });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^lens: the tuned-lens Space has no lens\/nothing-here\/config\.json \(HTTP 404\)/);
    const notCached = await runCli([...args, '--tuned-lens', 'elsewhere', '--offline'], { env: spaceEnv });
    assert.match(notCached.stderr, /^lens: tuned lens elsewhere is not in the cache and the network is off/);

    // --lens tuned alone: the name comes from the model's directory (a mirror's -ONNX suffix dropped)
    // or from config.json's _name_or_path (Xenova/gpt2 → the Space's gpt2); a miss lists the names tried.
    const mirror = join(scratchDir('tuned-derive'), 'tiny-gpt2-ONNX');
    cpSync(dir, mirror, { recursive: true });
    const derived = await runCli([...args.slice(0, 2), mirror, ...args.slice(3), '--lens', 'tuned'], { env: spaceEnv });
    assert.equal(derived.code, 0, derived.stderr);
    // The records differ only in the model they name.
    const records = (stdout: string) => stdout.replace(/^\{"model":"[^"]*",/, '{');
    assert.equal(records(derived.stdout), records(fromDir.stdout));
    mkdirSync(join(space, 'lens', 'gpt2'));
    for (const file of ['config.json', 'params.pt']) copyFileSync(join(lens.dir, file), join(space, 'lens', 'gpt2', file));
    const renamed = join(scratchDir('tuned-derive'), 'my-model');
    cpSync(dir, renamed, { recursive: true });
    const config = JSON.parse(readFileSync(join(renamed, 'config.json'), 'utf8'));
    writeFileSync(join(renamed, 'config.json'), JSON.stringify({ ...config, _name_or_path: 'Xenova/gpt2' }));
    hub.served.length = 0;
    const byConfig = await runCli([...args.slice(0, 2), renamed, ...args.slice(3), '--lens', 'tuned'], { env: spaceEnv });
    assert.equal(byConfig.code, 0, byConfig.stderr);
    assert.equal(records(byConfig.stdout), records(fromDir.stdout));
    assert.deepEqual(fetched(), ['config.json', 'params.pt'].map((f) => `/spaces/AlignmentResearch/tuned-lens/resolve/main/lens/gpt2/${f}`));
    const unknown = join(scratchDir('tuned-derive'), 'unknown-model');
    cpSync(dir, unknown, { recursive: true });
    const none = await runCli([...args.slice(0, 2), unknown, ...args.slice(3), '--lens', 'tuned'], { env: spaceEnv });
    assert.equal(none.code, 1);
    assert.match(none.stderr, /^lens: the tuned-lens Space has no lens for .*unknown-model; tried unknown-model \(/);
    assert.equal(existsSync(join(cache, 'tuned-lens', 'unknown-model')), false, 'nothing cached for a name the Space lacks');
  } finally {
    await hub.close();
  }
});
