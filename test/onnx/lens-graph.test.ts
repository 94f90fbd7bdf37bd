import { ATTRIBUTION_IO } from '../../src/onnx/attribution-graph.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addLensOutputs, findDecoderStructure, GraphStructureError, inlineNoPastBranch, LENS_IO } from '../../src/onnx/lens-graph.js';
import { DataType, decodeModel, encodeModel, type Model } from '../../src/onnx/proto.js';
import { buildModel, FORMS, makeWeights } from '../fixtures/gpt2.js';
import { scrambleNames } from '../fixtures/scramble.js';
import { TINY } from '../helpers.js';
import { parallelBlocks } from '../fixtures/parallel.js';

const config = { ...TINY, layers: 2 };
const weights = makeWeights(config);

for (const [name, form] of Object.entries(FORMS)) {
  test(`structure found by shape, not names: ${name}`, () => {
    const model = buildModel(makeWeights(config, form), form);
    // Round-trip through protobuf first, as the tool reads models from disk.
    const renamed = decodeModel(encodeModel(model));
    const graph = inlineNoPastBranch(renamed.graph);
    const structure = findDecoderStructure(graph, 2);
    assert.equal(structure.residuals.length, 3);
    assert.equal(new Set(structure.residuals).size, 3);
    const { model: rewritten } = addLensOutputs(renamed, 2);
    const outputs = rewritten.graph.output.map((o) => o.name);
    assert.deepEqual(outputs.slice(0, 2), [LENS_IO.logits, LENS_IO.hidden]);
    for (const name of [ATTRIBUTION_IO.unembedRows, ATTRIBUTION_IO.normGain, ATTRIBUTION_IO.normBias, ATTRIBUTION_IO.headInputs]) assert.ok(outputs.includes(name), `${name} among the outputs`);
    assert.ok(rewritten.graph.input.some((i) => i.name === LENS_IO.positions));
    assert.ok(!rewritten.graph.node.some((n) => n.op_type === 'If'), 'merged decoders are flattened');
  });
}

test('names do not matter: a graph with scrambled names is read the same way (parity on it: test/model/parity.test.ts)', () => {
  const model = buildModel(weights, FORMS['opset17-flat']);
  const plain = findDecoderStructure(model.graph, 2);
  const scrambled = findDecoderStructure(scrambleNames(model).graph, 2);
  assert.equal(scrambled.residuals.length, 3);
  assert.equal(scrambled.unembed.op_type, plain.unembed.op_type);
  assert.notEqual(scrambled.residuals.join(), plain.residuals.join(), 'the names did change');
});

test('a graph that is not a decoder is refused with what is missing', () => {
  const model = buildModel(weights, FORMS['opset14-flat']);
  assert.throws(() => findDecoderStructure(model.graph, 5), (e: unknown) => e instanceof GraphStructureError && /4 residual additions.*5 layers/.test((e as Error).message));
  const noHead: Model = { ...model, graph: { ...model.graph, node: model.graph.node.filter((n) => n.op_type !== 'MatMul' || !n.input.includes('onnx::MatMul_lm_head')) } };
  assert.throws(() => findDecoderStructure(noHead.graph, 2), GraphStructureError);
  const tiny: Model = { ir_version: 8, opset_import: [{ domain: '', version: 14 }], graph: {
    node: [{ op_type: 'Relu', input: ['x'], output: ['y'], attribute: [] }], initializer: [], value_info: [],
    input: [{ name: 'x', type: { tensor_type: { elem_type: DataType.FLOAT } } }], output: [{ name: 'y' }],
  } };
  assert.throws(() => findDecoderStructure(tiny.graph, 1), /no unembedding/);
});

test('mid-block residuals: found between attention and MLP, gathered only when asked', () => {
  for (const form of Object.values(FORMS)) {
    const model = decodeModel(encodeModel(buildModel(weights, form)));
    const graph = inlineNoPastBranch(model.graph);
    const { mids, residuals } = findDecoderStructure(graph, 2);
    assert.equal(mids?.length, 2);
    assert.equal(new Set([...mids!, ...residuals]).size, 5, 'mids are neither block outputs nor each other');
    const { model: rewritten } = addLensOutputs(model, 2);
    assert.ok(rewritten.graph.input.some((i) => i.name === LENS_IO.midPositions));
    // Gathers feeding the stack, in computation order: r0, m1, r1, m2, r2.
    // (the hidden output is the stack cast to float)
    const hidden = rewritten.graph.node.find((n) => n.output[0] === LENS_IO.hidden)!;
    const concat = hidden.op_type === 'Cast' ? rewritten.graph.node.find((n) => n.output[0] === hidden.input[0])! : hidden;
    assert.equal(concat.op_type, 'Concat');
    const gatheredFrom = concat.input.map((i) => rewritten.graph.node.find((n) => n.output[0] === i)!.input);
    assert.deepEqual(gatheredFrom.map(([from]) => from), [residuals[0], mids![0], residuals[1], mids![1], residuals[2]]);
    assert.deepEqual(gatheredFrom.map(([, at]) => at), [LENS_IO.positions, LENS_IO.midPositions, LENS_IO.positions, LENS_IO.midPositions, LENS_IO.positions]);
  }
});

test('parallel attention and MLP: no mid-block residual, and the rewrite has no input for it', () => {
  const model = parallelBlocks(buildModel(weights, FORMS['opset17-flat']));
  const structure = findDecoderStructure(model.graph, 2);
  assert.equal(structure.mids, undefined);
  assert.match(structure.noMidReason ?? '', /parallel/);
  assert.equal(structure.residuals.length, 3);
  const { model: rewritten } = addLensOutputs(model, 2);
  assert.ok(!rewritten.graph.input.some((i) => i.name === LENS_IO.midPositions));
});
