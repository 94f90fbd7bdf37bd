// The tuned lens on every family lens reads, against the independent float64 reference: torch.onnx
// exports of the Llama-shaped families and of the LayerNorm and hybrid ones (test/fixtures/torch/),
// onnxruntime-genai builder graphs (q4 with a pruned, shared head; Gemma 2's softcap; Granite's
// multipliers), each with float32 and float16 params.pt made by torch: h + W h + b on the reference's
// hidden states for layers 0..L−1, then the family's final norm, head and what it does to its logits.
// And a lens written by `lens tune` on Gemma 2 read back by lens equals what PyTorch computes with
// those translators on the PyTorch module the fixture was exported from.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tune } from '../../src/commands/tune.js';
import { loadLensModel } from '../../src/model/runtime.js';
import { readTunedLensDir } from '../../src/tuned/lens-dir.js';
import { decoderConfigJson, makeDecoderWeights, tinyConfig, type DecoderWeights, type Family } from '../fixtures/llama.js';
import { lnFamilyModel, stateDictOf, type LnFamily } from '../fixtures/ln-families.js';
import { decoderStateDict, torchAvailable, torchSkip, writeTorchModels, type TorchForm, type TorchModelSpec } from '../fixtures/torch-export.js';
import { GENAI_FORMS, genaiConfig, writeGenaiFixture } from '../fixtures/genai.js';
import { SP_VOCAB_SIZE } from '../fixtures/sentencepiece.js';
import { referenceDecoderForward } from '../reference/llama.js';
import { referenceLnForward } from '../reference/layernorm-families.js';
import type { ReferenceResult } from '../reference/gpt2.js';
import { genaiAsStored } from '../model/stored-weights.js';
import { assertClose, cleanEnv, ROOT, scratchDir } from '../helpers.js';
import { runTorchScript } from './torch-python.js';
import { assertTunedMatches, makeLenses, TUNED_TOL, type LensValues } from './tuned-reference.js';

const PROMPT = 'The most famous sports in USA is';
const env = cleanEnv({ LENS_CACHE: scratchDir('tuned-families-cache') });
const root = scratchDir('tuned-families');
const missing = torchAvailable();
// Under CI a missing exporter is a failure, not a skip.
const skip = torchSkip();

const DECODER_FAMILIES: Family[] = ['llama', 'qwen2', 'gemma', 'gemma2', 'gemma3_text', 'mistral', 'qwen3', 'smollm3', 'granite', 'phi3', 'stablelm', 'olmo2', 'cohere', 'qwen3_moe'];
const LN_FAMILIES: LnFamily[] = ['phi', 'opt', 'opt-proj', 'bloom', 'gpt_neox', 'lfm2'];
/** Exported in both forms: Optimum's merged decoder once, the rest with past inputs only (the form is the graph's, not the lens's). */
const MERGED: string[] = ['llama'];
/** Builder graphs: q4 with the head shared with the embedding and pruned to the last position; Gemma 2's softcap; Granite's multipliers in q4. */
const GENAI: { family: Family; form: string }[] = [
  { family: 'qwen3', form: 'genai-q4-shared-pruned' },
  { family: 'gemma2', form: 'genai-fp32' },
  { family: 'granite', form: 'genai-q4' },
];

/** An exported fixture: its directory, its width, the reference on its weights, what export.py's load_model reads. */
interface Exported { dir: string; d: number; reference: (ids: number[]) => ReferenceResult; weightsPrefix: string }

let exported: Map<string, Exported> | undefined;

/** Every torch fixture of this file, exported on first use by one Python process, by `<family> <form>`. */
function torchFixtures(): Map<string, Exported> {
  if (exported) return exported;
  const specs: TorchModelSpec[] = [];
  const made: [string, Omit<Exported, 'weightsPrefix'>][] = [];
  const add = (name: string, form: TorchForm, configJson: Record<string, unknown>, tensors: TorchModelSpec['tensors'], d: number, reference: Exported['reference']) => {
    const dir = join(root, `${name}-${form}`);
    specs.push({ dir, configJson, tensors, vocab: SP_VOCAB_SIZE, form });
    made.push([`${name} ${form}`, { dir, d, reference }]);
  };
  for (const family of DECODER_FAMILIES) {
    const weights: DecoderWeights = makeDecoderWeights(tinyConfig(family));
    for (const form of MERGED.includes(family) ? ['torch-past', 'torch-merged'] as const : ['torch-past'] as const) {
      add(family, form, decoderConfigJson(weights), decoderStateDict(weights), weights.config.d, (ids) => referenceDecoderForward(weights, ids));
    }
  }
  for (const family of LN_FAMILIES) {
    const hub = lnFamilyModel(family);
    add(family, 'torch-past', hub.config, stateDictOf(hub), Number(hub.config.hidden_size), (ids) => referenceLnForward(hub, ids));
  }
  const prefixes = writeTorchModels(specs);
  exported = new Map(made.map(([key, m], i) => [key, { ...m, weightsPrefix: prefixes[i] }]));
  return exported;
}

let lensesByWidth: Map<number, LensValues[]> | undefined;

/** A float32 and a float16 lens of 3 layers for width `d`, made by torch (every fixture's width in one process); false without torch. */
function lensesFor(t: TestContext, d: number): LensValues[] | false {
  if (!lensesByWidth) {
    // The torch fixtures' widths (Phi 40, BLOOM 48, the others 32) and the builder graphs' (64, Gemma 96).
    const widths = [...new Set([32, 40, 48, 64, 96, d])];
    const lenses = makeLenses(t, widths.flatMap((width, i) => (['float32', 'float16'] as const).map((dtype) => ({ d: width, layers: 3, dtype, seed: 11 + i }))));
    if (!lenses) return false;
    lensesByWidth = new Map(widths.map((width, i) => [width, lenses.slice(2 * i, 2 * i + 2)]));
  }
  const lenses = lensesByWidth.get(d);
  assert.ok(lenses, `no lens made for width ${d}`);
  return lenses;
}

for (const family of [...DECODER_FAMILIES, ...LN_FAMILIES]) {
  for (const form of MERGED.includes(family) ? ['torch-past', 'torch-merged'] : ['torch-past']) {
    test(`tuned lens (float32 and float16 params.pt) matches the float64 reference: ${family} ${form}`, { skip }, async (t) => {
      assert.equal(missing, undefined, missing);
      const fixture = torchFixtures().get(`${family} ${form}`)!;
      const lenses = lensesFor(t, fixture.d);
      if (!lenses) return;
      const worst = await assertTunedMatches(fixture.dir, lenses, (encode) => encode(PROMPT), fixture.reference);
      t.diagnostic(`largest difference ${worst.toExponential(2)} (bound ${TUNED_TOL})`);
    });
  }
}

for (const { family, form } of GENAI) {
  test(`tuned lens (float32 and float16 params.pt) matches the float64 reference: ${family} ${form}`, async (t) => {
    const config = genaiConfig(family);
    const lenses = lensesFor(t, config.d);
    if (!lenses) return;
    const dir = join(root, `${family}-${form}`);
    const weights = genaiAsStored(writeGenaiFixture(dir, config, form), form);
    const worst = await assertTunedMatches(dir, lenses, (encode) => encode(PROMPT), (ids) => referenceDecoderForward(weights, ids), { dtype: GENAI_FORMS[form].q4 ? 'q4' : 'fp32' });
    t.diagnostic(`largest difference ${worst.toExponential(2)} (bound ${TUNED_TOL})`);
  });
}

/**
 * Python: the tuned lens as PyTorch computes it on the fixture's PyTorch module (test/fixtures/torch/,
 * in float64) with the translators of a params.pt loaded weights_only, as tuned-lens does: hidden
 * state i (the input of block 0, the output of block i−1) plus translator i of it, then the module's
 * own final norm, head and what it does to its logits; the last layer is the module's own logits.
 * Prints [L+1][T][V].
 */
const TORCH_TUNED_LENS = `
import json, sys, torch
fixtures, model_dir, weights_prefix, lens_dir, ids = sys.argv[1:6]
sys.path.insert(0, fixtures)
from export import load_model
# Float64 throughout: the module's parameters, its mask and rotary tables, the translators.
torch.set_default_dtype(torch.float64)
config, model = load_model(model_dir, weights_prefix)
state = torch.load(lens_dir + '/params.pt', weights_only=True)
lens_config = json.load(open(lens_dir + '/config.json'))
d, layers = lens_config['d_model'], lens_config['num_hidden_layers']
translators = torch.nn.ModuleList([torch.nn.Linear(d, d) for _ in range(layers)])
translators.load_state_dict(state)
backbone, hidden = model.model, []
backbone.layers[0].register_forward_pre_hook(lambda module, args: hidden.append(args[0]))
for block in backbone.layers:
    block.register_forward_hook(lambda module, args, out: hidden.append(out[0]))
ids = torch.tensor([json.loads(ids)])
T = ids.shape[1]
feeds = (ids, torch.ones(1, T, dtype=torch.int64), torch.arange(T).unsqueeze(0))
with torch.no_grad():
    own = model(*feeds)[0]
    rows = []
    for i in range(layers):
        h = hidden[i] + translators[i](hidden[i])
        # The module's tail (final norm, head, what the family does to its logits) on h instead of its last block's output.
        backbone.forward = lambda *args: (backbone.norm(h), [])
        rows.append(model(*feeds)[0])
        del backbone.forward
    rows.append(own)
print(json.dumps([r[0].tolist() for r in rows]))
`;

test('a lens written by lens tune on Gemma 2: PyTorch loads it and computes with its translators what lens reads back', { skip }, async (t) => {
  assert.equal(missing, undefined, missing);
  const fixture = torchFixtures().get('gemma2 torch-past')!;
  const data = join(scratchDir('tuned-families-data'), 'train.txt');
  writeFileSync(data, 'The cat sat on the mat. Paris is the capital of France. The most famous sports in USA is the sport of the cat. '.repeat(4));
  const out = join(scratchDir('tuned-families-tune'), 'lens');
  await tune({ model: fixture.dir, dtype: 'fp32', offline: true, env, data, out, steps: 6, tokensPerStep: 32, seqLen: 16 });
  const model = await loadLensModel(fixture.dir, { dtype: 'fp32', offline: true, env });
  try {
    const ids = model.encodePrompt(PROMPT);
    const printed = runTorchScript(t, TORCH_TUNED_LENS, root, [join(ROOT, 'test', 'fixtures', 'torch'), fixture.dir, fixture.weightsPrefix, out, JSON.stringify(ids)]);
    if (printed === false) return;
    const torchRows = JSON.parse(printed) as number[][][];
    const { translators } = readTunedLensDir(out);
    assert.ok(translators.weight.some((w) => Math.abs(w) > 1e-4), 'tuning moved the translators');
    const positions = [ids.length - 1, 0, 2];
    const run = await model.run(ids, positions, 'tuned', { translators });
    const V = model.vocabSize, P = positions.length;
    assert.equal(torchRows.length, model.layers + 1);
    let worst = 0;
    positions.forEach((position, p) => torchRows.forEach((rows, l) => {
      const row = l * P + p;
      worst = Math.max(worst, assertClose(run.logits.subarray(row * V, (row + 1) * V), rows[position], TUNED_TOL, `tuned L${l} pos ${position} vs PyTorch`));
    }));
    t.diagnostic(`largest difference from PyTorch ${worst.toExponential(2)} (bound ${TUNED_TOL})`);
  } finally {
    await model.dispose();
  }
});
