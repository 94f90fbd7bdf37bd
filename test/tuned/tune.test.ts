// lens tune end to end on the tiny GPT-2 fixture: the loss falls; the lens it writes loads in torch
// (weights_only) with tuned-lens's keys and shapes, and lens reading it back equals the float64
// reference with the values torch read; one step equals torch's autograd and SGD on the reference's
// residuals; on held-out text it beats the logit lens at every layer
// below L; a run stopped and resumed equals one run straight through; its flag errors are one line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { tune, type TuneState } from '../../src/commands/tune.js';
import { evaluate } from '../../src/commands/eval.js';
import { referenceForward } from '../reference/gpt2.js';
import { assertClose, cleanEnv, fixture, runCli, scratchDir, TINY } from '../helpers.js';
import { readTunedLensDir } from '../../src/tuned/lens-dir.js';
import { runTorchScript } from './torch-python.js';
import { assertTunedMatches } from './tuned-reference.js';

const env = cleanEnv({ LENS_CACHE: scratchDir('tune-cache') });

const TRAIN = `The history of the city begins with a small settlement on the river. Farmers brought grain to the market
every week, and traders from the coast sold salt, cloth and iron tools. Over the centuries the town grew into a
busy port. Ships carried wool to the north and returned with timber and wine. The old bridge was built of stone
in the twelfth century, and it still stands today. Many visitors come to see the cathedral, the market square
and the narrow streets of the old quarter. In the summer the river is full of boats, and people sit in the
cafes along the water. The university was founded in the fifteenth century and is one of the oldest in the
country. Its library holds thousands of books and maps. Students from many nations study law, medicine and
the natural sciences there. The city is also known for its music: every autumn a festival fills the churches
and halls with concerts. In winter the streets are quiet, the markets sell hot bread and roasted chestnuts,
and snow sometimes covers the roofs of the houses near the hills.`;
const HELD_OUT = `The town on the river grew slowly. Traders sold cloth and salt in the market, and ships carried timber to
the coast. Today visitors walk through the old streets, see the bridge and the cathedral, and listen to music
in the halls of the university during the autumn festival.`;

function textFile(name: string, text: string): string {
  const path = join(scratchDir('tune-data'), name);
  writeFileSync(path, text);
  return path;
}

const TRAIN_ARGS = ['--steps', '40', '--tokens-per-step', '64', '--seq-len', '16'];

test('lens tune: the loss falls; the lens loads in torch and reads back as the reference computes it; held-out KL below the logit lens\'s', async (t) => {
  const { dir, weights } = fixture('opset17-flat');
  const out = join(scratchDir('tune-out'), 'lens');
  const run = await runCli(['tune', '-m', dir, '--data', textFile('train.txt', TRAIN), '--out', out, ...TRAIN_ARGS, '--offline'], { env, timeoutMs: 600_000 });
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^lens tune · 40 steps of 64 tokens · loss .* → .* tokens\/s · lens in /);
  assert.equal(run.stderr, '', 'no progress off a terminal');
  const state = JSON.parse(readFileSync(join(out, 'tune-state.json'), 'utf8')) as TuneState;
  assert.equal(state.losses.length, 40);
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  // The same 4 sequences come back every 5 steps: compare a whole cycle at the start and the end.
  assert.ok(mean(state.losses.slice(-5)) < 0.7 * mean(state.losses.slice(0, 5)), `loss ${state.losses.slice(0, 5)} → ${state.losses.slice(-5)}`);

  const loaded = runTorchScript(t, `
import json, sys, torch
state = torch.load(sys.argv[1] + '/params.pt', weights_only=True)
config = json.load(open(sys.argv[1] + '/config.json'))
print(json.dumps({'keys': list(state.keys()), 'shapes': [list(v.shape) for v in state.values()], 'dtypes': sorted({str(v.dtype) for v in state.values()}),
  'config': config, 'layers': [[state[f'{l}.weight'].flatten().tolist(), state[f'{l}.bias'].tolist()] for l in range(config['num_hidden_layers'])]}))`, out, [out]);
  if (loaded === false) return;
  const torchSide = JSON.parse(loaded) as { keys: string[]; shapes: number[][]; dtypes: string[]; config: Record<string, unknown>; layers: [number[], number[]][] };
  const L = TINY.layers, d = TINY.d;
  assert.deepEqual(torchSide.keys, Array.from({ length: L }, (_, l) => [`${l}.weight`, `${l}.bias`]).flat());
  assert.deepEqual(torchSide.shapes, Array.from({ length: L }, () => [[d, d], [d]]).flat());
  assert.deepEqual(torchSide.dtypes, ['torch.float32']);
  assert.equal(torchSide.config.d_model, d);
  assert.equal(torchSide.config.num_hidden_layers, L);
  assert.equal(torchSide.config.lens_type, 'linear_tuned_lens');
  assert.ok(torchSide.layers.some(([w]) => w.some((x) => Math.abs(x) > 1e-4)), 'trained translators are not zero');
  await assertTunedMatches(dir, [{ dir: out, layers: torchSide.layers }], [464, 749, 5863, 5701, 287, 4916, 318], (ids) => referenceForward(weights, ids));

  const heldOut = await evaluate({ model: dir, dtype: 'fp32', offline: true, env, data: textFile('held-out.txt', HELD_OUT), tunedLens: out });
  for (let l = 0; l < L; l++) assert.ok(heldOut.tuned![l].kl < heldOut.logit[l].kl, `L${l}: tuned ${heldOut.tuned![l].kl} vs logit ${heldOut.logit[l].kl}`);
  t.diagnostic(`held-out KL logit ${heldOut.logit.map((x) => x.kl.toFixed(3))} tuned ${heldOut.tuned!.map((x) => x.kl.toFixed(3))}; loss ${state.losses[0].toFixed(3)} → ${state.losses[39].toFixed(3)}`);
});

test('lens tune, one step: the translators equal torch autograd + SGD on the float64 reference\'s residuals and head', async (t) => {
  const { dir, weights } = fixture('opset17-flat');
  const ids = [464, 749, 5863, 5701, 287, 4916, 318]; // "The most famous sports in USA is", no special tokens in GPT-2
  const ref = referenceForward(weights, ids);
  const work = scratchDir('tune-one-step');
  const L = TINY.layers, d = TINY.d, T = ids.length;
  writeFileSync(join(work, 'residual.bin'), new Float64Array(ref.residual.flatMap((layer) => layer.flatMap((h) => Array.from(h)))));
  writeFileSync(join(work, 'wte.bin'), weights.wte);
  writeFileSync(join(work, 'lnf.bin'), new Float32Array([...weights.lnfG, ...weights.lnfB]));
  const script = `
import json, sys, torch
L, T, d = ${L}, ${T}, ${d}
read = lambda name, dtype: torch.frombuffer(bytearray(open(name, 'rb').read()), dtype=dtype).double()
res = read('residual.bin', torch.float64).reshape(L + 1, T, d)
wte = read('wte.bin', torch.float32).reshape(-1, d)
lnf = read('lnf.bin', torch.float32).reshape(2, d)
head = lambda x: torch.nn.functional.layer_norm(x, (d,), lnf[0], lnf[1], 1e-5) @ wte.T
final = head(res[L]).log_softmax(-1)
lens = torch.nn.ModuleList([torch.nn.Linear(d, d).double() for _ in range(L)])
for m in lens:
    torch.nn.init.zeros_(m.weight); torch.nn.init.zeros_(m.bias)
loss = 0
for l in range(L):
    lp = head(res[l] + lens[l](res[l])).log_softmax(-1)
    loss = loss + (final.exp() * (final - lp)).sum(-1).mean()
loss.backward()
torch.nn.utils.clip_grad_norm_(lens.parameters(), 1.0)
opt = torch.optim.SGD(lens.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
opt.step()
print(json.dumps({'loss': loss.item(), 'layers': [[m.weight.detach().flatten().tolist(), m.bias.detach().tolist()] for m in lens]}))`;
  const out = runTorchScript(t, script, work);
  if (out === false) return;
  const expected = JSON.parse(out) as { loss: number; layers: [number[], number[]][] };
  const lensDir = join(work, 'lens');
  const result = await tune({ model: dir, dtype: 'fp32', offline: true, env, data: textFile('one.txt', 'The most famous sports in USA is'), out: lensDir, steps: 1, tokensPerStep: T, seqLen: T });
  assertClose(result.losses[0], expected.loss, 1e-4, 'loss of the step');
  const { translators } = readTunedLensDir(lensDir);
  expected.layers.forEach(([w, b], l) => {
    assertClose(translators.weight.subarray(l * d * d, (l + 1) * d * d), w, 2e-6, `W${l}`);
    assertClose(translators.bias.subarray(l * d, (l + 1) * d), b, 2e-6, `b${l}`);
  });
  assert.ok(Math.max(...expected.layers.flatMap(([w]) => w.map(Math.abs))) > 1e-4, 'the step moves the translators');
});

test('lens tune --resume: stopped after step 3 and resumed, the same lens as 6 steps straight through (momentum kept)', async () => {
  const { dir } = fixture('opset17-flat');
  const data = textFile('train.txt', TRAIN);
  const options = { model: dir, dtype: 'fp32' as const, offline: true, env, data, steps: 6, tokensPerStep: 32, seqLen: 16, checkpointEvery: 2 };
  const straight = join(scratchDir('tune-straight'), 'lens');
  await tune({ ...options, out: straight });
  const resumed = join(scratchDir('tune-resumed'), 'lens');
  const first = await tune({ ...options, out: resumed, stopAfter: 3 });
  assert.equal(first.steps, 3);
  assert.deepEqual(JSON.parse(readFileSync(join(resumed, 'tune-state.json'), 'utf8')).checkpoint, 'checkpoint-3.pt');
  assert.equal(existsSync(join(resumed, 'checkpoint-2.pt')), false, 'the previous checkpoint is removed');
  const second = await tune({ ...options, steps: undefined, tokensPerStep: undefined, seqLen: undefined, out: resumed, resume: true });
  assert.equal(second.steps, 6);
  assert.deepEqual(readFileSync(join(resumed, 'params.pt')), readFileSync(join(straight, 'params.pt')));
  assert.deepEqual(second.losses, JSON.parse(readFileSync(join(straight, 'tune-state.json'), 'utf8')).losses);
});

test('lens tune: an --out with files, --resume without a run, a flag that contradicts the run are one-line usage errors', async () => {
  const { dir } = fixture('opset17-flat');
  const data = textFile('train.txt', TRAIN);
  const used = scratchDir('tune-used');
  writeFileSync(join(used, 'notes.txt'), 'mine');
  const empty = join(scratchDir('tune-empty'), 'none');
  mkdirSync(empty);
  const oneLine = async (args: string[], pattern: RegExp) => {
    const run = await runCli(['tune', '-m', dir, '--data', data, '--offline', ...args], { env });
    assert.equal(run.code, 2, run.stderr);
    assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
    assert.match(run.stderr, pattern);
  };
  await oneLine(['--out', used], /--out .* is not empty/);
  assert.equal(readFileSync(join(used, 'notes.txt'), 'utf8'), 'mine');
  await oneLine(['--out', empty, '--resume'], /--resume: .* holds no training run/);
  const out = join(scratchDir('tune-flags'), 'lens');
  await tune({ model: dir, dtype: 'fp32', offline: true, env, data, out, steps: 2, tokensPerStep: 16, seqLen: 16 });
  await oneLine(['--out', out, '--resume', '--steps', '5'], /--resume: the run in .* has --steps 2, not 5/);
  await oneLine(['--out', out], /is not empty \(add --resume to continue its training run\)/);
});
