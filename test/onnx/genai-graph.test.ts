// Telling Optimum's merged-decoder If from other Ifs by structure: onnxruntime-genai's Phi-3 LongRoPE
// graph picks its rotary caches with an If whose branches are Constants; only the If that computes the
// graph's outputs is a merged decoder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addLensOutputs, inlineNoPastBranch, mergedDecoderIf } from '../../src/onnx/lens-graph.js';
import { DataType, type Graph, type Node } from '../../src/onnx/proto.js';
import { buildModel, FORMS, makeWeights } from '../fixtures/gpt2.js';
import { floatTensor } from '../fixtures/onnx-builder.js';
import { buildGenaiModel, genaiConfig } from '../fixtures/genai.js';
import { makeDecoderWeights } from '../fixtures/llama.js';
import { TINY } from '../helpers.js';

/** An If choosing between two Constant tensors, as the builder's rope_caches_subgraph does. */
function constantSwitch(condition: string, output: string): Node {
  const branch = (value: number): Graph => ({
    name: `branch_${value}`, initializer: [], input: [], value_info: [],
    node: [{ name: `c${value}`, op_type: 'Constant', input: [], output: [`${output}_${value}`], attribute: [{ name: 'value', type: 4, t: floatTensor('', [1], Float32Array.of(value)) }] }],
    output: [{ name: `${output}_${value}`, type: { tensor_type: { elem_type: DataType.FLOAT } } }],
  });
  return { name: 'switch', op_type: 'If', input: [condition], output: [output], attribute: [{ name: 'then_branch', type: 5, g: branch(1) }, { name: 'else_branch', type: 5, g: branch(2) }] };
}

test('the merged decoder If is the one computing the outputs, wherever another If stands', () => {
  const merged = buildModel(makeWeights({ ...TINY, layers: 2 }), FORMS['opset14-merged']).graph;
  const decoderIf = merged.node.find((n) => n.op_type === 'If')!;
  // The other If first, as the builder writes the rope caches before the layers.
  const graph: Graph = { ...merged, node: [constantSwitch('use_cache_branch', 'picked'), ...merged.node] };
  assert.equal(mergedDecoderIf(graph), decoderIf);
  const inlined = inlineNoPastBranch(graph);
  assert.deepEqual(inlined.node.filter((n) => n.op_type === 'If').map((n) => n.name), ['switch'], 'the other If stays, the decoder If is inlined');
});

test('a genai LongRoPE graph has no merged decoder: its cache If stays in the lens graph', () => {
  const config = { ...genaiConfig('phi3'), vocab: 40 };
  const weights = makeDecoderWeights(config);
  const longRope = { original: 6, shortFactor: Array(8).fill(1), longFactor: Array(8).fill(2), shortMscale: 1, longMscale: 1 };
  const model = buildGenaiModel({ ...weights, traits: { ...weights.traits, longRope } }, { q4: false });
  assert.equal(mergedDecoderIf(model.graph), undefined);
  const { model: rewritten } = addLensOutputs(model, config.layers);
  const cacheIf = rewritten.graph.node.filter((n) => n.op_type === 'If');
  assert.equal(cacheIf.length, 1);
  assert.deepEqual(cacheIf[0].output, ['cos_cache', 'sin_cache']);
});
