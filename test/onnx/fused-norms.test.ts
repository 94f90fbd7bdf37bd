// Splitting onnxruntime's fused residual norms computes what the fused nodes compute (run both in onnxruntime).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { splitSkipNorms } from '../../src/onnx/fused-norms.js';
import { AttrType, DataType, encodeModel, type Graph, type Model, type Node } from '../../src/onnx/proto.js';
import { floatTensor } from '../fixtures/onnx-builder.js';
import { normalSampler } from '../fixtures/gpt2.js';
import { assertClose } from '../helpers.js';

const D = 8, SHAPE = [2, 3, D];
const normal = normalSampler(5);
const io = (name: string) => ({ name, type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: SHAPE.map((n) => ({ dim_value: n })) } } } });

function skipModel(op: 'SkipLayerNormalization' | 'SkipSimplifiedLayerNormalization', withBias: boolean, withSum: boolean): Model {
  const simplified = op === 'SkipSimplifiedLayerNormalization';
  const inputs = ['x', 'skip', 'gamma', ...(simplified ? [] : ['beta']), ...(withBias ? ['bias'] : [])];
  const node: Node = { name: 'fused', op_type: op, domain: 'com.microsoft', input: inputs, output: withSum ? ['y', '', '', 'sum'] : ['y'], attribute: [{ name: 'epsilon', type: AttrType.FLOAT, f: 1e-5 }] };
  const graph: Graph = {
    name: 'g', node: [node], value_info: [],
    initializer: [floatTensor('gamma', [D], normal(D, 0.2, 1)), floatTensor('beta', [D], normal(D, 0.1)), floatTensor('bias', [D], normal(D, 0.3))].filter((t) => inputs.includes(t.name)),
    input: [io('x'), io('skip')], output: [io('y'), ...(withSum ? [io('sum')] : [])],
  };
  // One case at opset 14: the split's LayerNormalization then relies on onnxruntime's own registration below opset 17.
  return { ir_version: 8, producer_name: 'test', graph, opset_import: [{ domain: '', version: op === 'SkipLayerNormalization' && withBias ? 14 : 17 }, { domain: 'com.microsoft', version: 1 }] };
}

async function run(model: Model, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(encodeModel(model));
  const out = await session.run(feeds);
  await session.release();
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
}

for (const op of ['SkipLayerNormalization', 'SkipSimplifiedLayerNormalization'] as const) for (const withBias of [false, true]) for (const withSum of [false, true]) {
  test(`split ${op}${withBias ? ' with bias' : ''}${withSum ? ' and its sum output' : ''} equals the fused node`, async () => {
    const fused = skipModel(op, withBias, withSum);
    const split: Model = { ...fused, graph: splitSkipNorms(fused.graph) };
    assert.ok(!split.graph.node.some((n) => n.op_type === op));
    const size = SHAPE.reduce((a, b) => a * b);
    const feeds = { x: new ort.Tensor('float32', normal(size, 1), SHAPE), skip: new ort.Tensor('float32', normal(size, 1), SHAPE) };
    const [a, b] = [await run(fused, feeds), await run(split, feeds)];
    assertClose(b.y, a.y, 1e-5, 'normalized output');
    if (withSum) assertClose(b.sum, a.sum, 1e-6, 'residual sum (output 3)');
    // Without output 3 the split still names the sum, for the lens to read.
    if (!withSum) assert.ok(split.graph.node.some((n) => n.op_type === 'Add' && n.output[0].endsWith('/lens_residual')));
  });
}
