// q8 of GPT-2 as torch.onnx exports it (Conv1D as Reshape → Gemm → Reshape, tied wte head; see
// parity-torch-gpt2.test) and onnxruntime's dynamic quantizer writes it
// (test/fixtures/torch/quantize_dynamic.py: every Gemm first rewritten to MatMul + Add, then the
// MatMuls by a weight quantized; wte and wpe stored as uint8 tables), flat with past and
// Optimum-merged (the branches quantized, the quantized weights shared in the outer graph), int8 and
// uint8 weights: every site against the float64 q8 reference (test/reference/q8.ts) within bounds
// derived from the quantization, the last layer the model's own logits (test/model/q8-check.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadLensModel } from '../../src/model/runtime.js';
import { DataType, decodeModel, type Graph } from '../../src/onnx/proto.js';
import type { Dtype } from '../../src/model/paths.js';
import type { Gpt2Weights } from '../fixtures/gpt2.js';
import { quantizeTorchExport, TORCH_FORMS, TORCH_Q8_FILES, torchAvailable, torchSkip, writeTorchGpt2Fixture, writeTorchGpt2Q8Fixture, type TorchForm } from '../fixtures/torch-export.js';
import { referenceForward } from '../reference/gpt2.js';
import { referenceQ8Gpt2Forward } from '../reference/q8.js';
import { cleanEnv, scratchDir, TINY } from '../helpers.js';
import { assertLensMatches, ownLogits } from './lens-check.js';
import { assertQ8LensAgainst } from './q8-check.js';

const env = cleanEnv({ LENS_CACHE: scratchDir('q8-torch-gpt2-cache') });
const root = scratchDir('q8-torch-gpt2');
const missing = torchAvailable();
const skip = torchSkip();
const L = TINY.layers;

/** The op types of a graph (one If branch, for a merged model), counted. */
function opCounts(graph: Graph): Map<string, number> {
  const counts = new Map<string, number>();
  for (const n of graph.node) counts.set(n.op_type, (counts.get(n.op_type) ?? 0) + 1);
  return counts;
}

/** Checks the file is what the quantizer writes from this export (the merged form: in each branch). */
function assertQuantizedGpt2(path: string, form: TorchForm, weightType: 'int8' | 'uint8'): void {
  const { graph } = decodeModel(readFileSync(path));
  const bodies = form === 'torch-merged' ? graph.node[0].attribute.map((a) => a.g!) : [graph];
  assert.equal(bodies.length, form === 'torch-merged' ? 2 : 1);
  for (const body of bodies) {
    const ops = opCounts(body);
    // Every Conv1D Gemm became MatMul + Add, and every MatMul by a weight (4 a block, the head) is quantized;
    // one DynamicQuantizeLinear per distinct input; wte's and wpe's Gathers each dequantized once.
    assert.equal(ops.get('Gemm'), undefined);
    assert.equal(ops.get('MatMulInteger'), 4 * L + 1);
    assert.equal(ops.get('DynamicQuantizeLinear'), 4 * L + 1);
    assert.equal(ops.get('DequantizeLinear'), 2);
    assert.equal(body.node.filter((n) => n.op_type === 'Add' && n.name?.endsWith('_Add')).length, 4 * L);
    if (form === 'torch-merged') assert.equal(body.initializer.length, 0, 'a branch holds no weights of its own');
  }
  // The quantized weights once, in the outer graph: 4 Conv1D weights a block, the head, wte and wpe.
  const quantized = graph.initializer.filter((t) => t.name.endsWith('_quantized'));
  assert.equal(quantized.length, 4 * L + 3);
  const tables = quantized.filter((t) => /w[tp]e\.weight_quantized$/.test(t.name));
  assert.deepEqual(tables.map((t) => t.data_type), [DataType.UINT8, DataType.UINT8]);
  assert.ok(quantized.filter((t) => !tables.includes(t)).every((t) => t.data_type === (weightType === 'int8' ? DataType.INT8 : DataType.UINT8)));
  assert.equal(graph.initializer.filter((t) => t.data_type === DataType.FLOAT && t.dims.length === 2).length, 0, 'no float matrix left');
}

const written = new Map<TorchForm, Gpt2Weights>();
const CASES: [TorchForm, Dtype][] = TORCH_FORMS.flatMap((form) => [[form, 'q8'], [form, 'uint8']] as [TorchForm, Dtype][]);

for (const [form, dtype] of CASES) {
  const [file, weightType] = TORCH_Q8_FILES[dtype as keyof typeof TORCH_Q8_FILES];
  test(`q8 of a torch.onnx GPT-2, ${form}, ${dtype} (${weightType} weights): every site the q8 reference, last layer the model's own`, { skip }, async (t) => {
    assert.equal(missing, undefined, missing);
    const dir = join(root, form);
    if (!written.has(form)) written.set(form, writeTorchGpt2Q8Fixture(dir, TINY, form));
    const w = written.get(form)!;
    const path = join(dir, 'onnx', file);
    assertQuantizedGpt2(path, form, weightType);
    const model = await loadLensModel(dir, { dtype, offline: true, env });
    try {
      const ids = model.encodePrompt('The most famous sports in USA is');
      assert.deepEqual(ids, [464, 749, 5863, 5701, 287, 4916, 318]);
      const own = await ownLogits(path, ids, [TINY.heads, TINY.d / TINY.heads]);
      t.diagnostic(`${form} ${dtype}: ${await assertQ8LensAgainst(model, ids, (o) => referenceQ8Gpt2Forward(w, ids, o), TINY.d, own, { weightType })}`);
    } finally {
      await model.dispose();
    }
  });
}

test('a merged GPT-2 through quantize_dynamic() with its defaults (EnableSubgraph off): the branches only get the Gemm rewrite and stay float; lens reads them at fp32 parity', { skip }, async (t) => {
  assert.equal(missing, undefined, missing);
  const dir = join(root, 'merged-no-subgraphs');
  const w = writeTorchGpt2Fixture(dir, TINY, 'torch-merged');
  quantizeTorchExport(dir, { subgraphs: false });
  const path = join(dir, 'onnx', TORCH_Q8_FILES.q8[0]);
  const { graph } = decodeModel(readFileSync(path));
  for (const branch of graph.node[0].attribute.map((a) => a.g!)) {
    const ops = opCounts(branch);
    assert.deepEqual([ops.get('Gemm'), ops.get('MatMulInteger'), ops.get('DynamicQuantizeLinear')], [undefined, undefined, undefined]);
    assert.equal(branch.node.filter((n) => n.op_type === 'MatMul' && n.name?.endsWith('_MatMul')).length, 4 * L);
  }
  const model = await loadLensModel(dir, { dtype: 'q8', offline: true, env });
  try {
    const ids = model.encodePrompt('The most famous sports in USA is');
    const own = await ownLogits(path, ids, [TINY.heads, TINY.d / TINY.heads]);
    const worst = await assertLensMatches(model, ids, [ids.length - 1, 0, 3], referenceForward(w, ids), own, TINY.d, 1e-4);
    t.diagnostic(`largest difference ${worst.toExponential(2)}`);
  } finally {
    await model.dispose();
  }
});
