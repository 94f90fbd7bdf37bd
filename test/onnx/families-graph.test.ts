import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { addLensOutputs, findDecoderStructure, inlineNoPastBranch, LENS_IO } from '../../src/onnx/lens-graph.js';
import { splitSkipNorms } from '../../src/onnx/fused-norms.js';
import { decodeModel, encodeModel } from '../../src/onnx/proto.js';
import { buildDecoderModel, DECODER_FORMS, formsOf, makeDecoderWeights, tinyConfig, tinyConfigFor, type Family } from '../fixtures/llama.js';
import { ownLogits } from '../model/lens-check.js';
import { assertClose, scratchDir } from '../helpers.js';
import { ATTRIBUTION_IO } from '../../src/onnx/attribution-graph.js';

const FAMILIES: Family[] = ['llama', 'qwen2', 'gemma', 'gpt_neox', 'gpt_neo'];
const FAMILIES_WITH_NORM_BIAS: Family[] = ['gpt_neox', 'gpt_neo'];

for (const family of FAMILIES) for (const name of formsOf(family)) {
  const form = DECODER_FORMS[name];
  test(`structure of ${family} found by shape: ${name}`, () => {
    const config = tinyConfigFor(family, name);
    const model = decodeModel(encodeModel(buildDecoderModel(makeDecoderWeights(config), form)));
    const graph = splitSkipNorms(inlineNoPastBranch(model.graph));
    const structure = findDecoderStructure(graph, 3);
    assert.equal(new Set(structure.residuals).size, 4);
    const { model: rewritten } = addLensOutputs(model, 3);
    const outputs = rewritten.graph.output.map((o) => o.name);
    assert.deepEqual(outputs.slice(0, 2), [LENS_IO.logits, LENS_IO.hidden]);
    // Every float form also exposes what attribute reads: the head and norm, each attention's
    // output projection, and for parallel blocks the branches.
    const attribution = [ATTRIBUTION_IO.unembedRows, ATTRIBUTION_IO.headBias, ATTRIBUTION_IO.normGain, ATTRIBUTION_IO.normShape, ATTRIBUTION_IO.headInputs, ATTRIBUTION_IO.headWeights];
    for (const name of [...attribution, ...(family === 'gpt_neox' ? [ATTRIBUTION_IO.branches] : [])]) assert.ok(outputs.includes(name), `${name} among the outputs`);
    assert.equal(outputs.includes(ATTRIBUTION_IO.normBias), FAMILIES_WITH_NORM_BIAS.includes(family), 'a norm bias exactly for LayerNorm families');
    // A flat export keeps its past inputs (its attention concatenates them); transformers.js feeds
    // them empty, sized from the fixed KV-head and head-size dims.
    for (const input of rewritten.graph.input.filter((i) => i.name.startsWith('past_key_values'))) {
      const dims = input.type!.tensor_type!.shape!.dim;
      assert.deepEqual([dims[0].dim_param, Number(dims[1].dim_value), Number(dims[3].dim_value)], ['batch_size', config.kvHeads, config.d / config.heads]);
    }
  });
}

test('the fused fixtures are what the optimizer writes: the final Skip norm has no residual output', () => {
  for (const family of FAMILIES) {
    const graph = buildDecoderModel(makeDecoderWeights(tinyConfig(family)), DECODER_FORMS['ort-fused']).graph;
    const skips = graph.node.filter((n) => n.op_type.startsWith('Skip'));
    // GPT-Neo's embedding sum (wte + wpe) is fused into its first norm too.
    assert.equal(skips.length, { gpt_neox: 3, gpt_neo: 7 }[family as string] ?? 6, family);
    assert.ok(skips.every((n) => n.domain === 'com.microsoft'));
    assert.equal(skips.filter((n) => !n.output[3]).length, 1, `${family}: only the final norm lacks output 3`);
    // Without splitting, the residual adds are gone: the walk cannot find a residual chain.
    assert.throws(() => findDecoderStructure(graph, 3));
  }
});

test('the fused graphs compute what the unfused exports compute', async () => {
  const dir = scratchDir('fused-vs-plain');
  mkdirSync(dir, { recursive: true });
  const ids = [1, 300, 301, 302, 40, 41];
  for (const family of FAMILIES) for (const form of formsOf(family).filter((f) => DECODER_FORMS[f].ortFused)) {
    // The fused form's own shape (head size 16 for GroupQueryAttention, one KV head per query head for MultiHeadAttention), for both.
    const w = makeDecoderWeights(tinyConfigFor(family, form));
    const [plainPath, fusedPath] = ['flat-nocast', form].map((f) => {
      const path = join(dir, `${family}-${form}-${f}.onnx`);
      writeFileSync(path, encodeModel(buildDecoderModel(w, { ...DECODER_FORMS[f], opset: 17 })));
      return path;
    });
    const past: [number, number] = [w.config.kvHeads, w.config.d / w.config.heads];
    const [plain, fused] = await Promise.all([plainPath, fusedPath].map((p) => ownLogits(p, ids, past)));
    // A head pruned to the last position scores that position only.
    const V = plain.length / ids.length;
    assertClose(fused, DECODER_FORMS[form].pruneHead ? plain.subarray(plain.length - V) : plain, 1e-4, `${family} ${form} vs plain logits`);
  }
});
