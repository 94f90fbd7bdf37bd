// The lens on GPT-2 as torch.onnx.export writes it from a module after Hugging Face's modeling_gpt2
// (test/fixtures/torch/modeling_ln.py: Conv1D as Reshape → Gemm → Reshape, learned positions, the
// causal bias buffer, gelu_new, the head tied to wte), past and Optimum-merged: every site, both modes,
// with and without --sublayers, against the independent float64 reference (test/reference/gpt2.ts),
// the last layer against the model's own logits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadLensModel } from '../../src/model/runtime.js';
import { decodeModel } from '../../src/onnx/proto.js';
import { TORCH_FORMS, torchAvailable, torchSkip, writeTorchGpt2Fixture } from '../fixtures/torch-export.js';
import { referenceForward } from '../reference/gpt2.js';
import { cleanEnv, scratchDir, TINY } from '../helpers.js';
import { assertLensMatches, ownLogits } from './lens-check.js';

const TOL = 1e-4;
const env = cleanEnv({ LENS_CACHE: scratchDir('parity-torch-gpt2-cache') });
const root = scratchDir('torch-gpt2-fixtures');
const missing = torchAvailable();
const skip = torchSkip();

for (const form of TORCH_FORMS) {
  test(`lens matches the reference on a torch.onnx GPT-2: ${form}`, { skip }, async (t) => {
    assert.equal(missing, undefined, missing);
    const dir = join(root, form);
    const w = writeTorchGpt2Fixture(dir, TINY, form);
    const path = join(dir, 'onnx', 'model.onnx');
    // What the real export has: every Conv1D a Gemm by its [in, out] weight.
    const { graph } = decodeModel(readFileSync(path));
    const nodes = graph.node.flatMap((n) => [n, ...n.attribute.flatMap((a) => a.g?.node ?? [])]);
    assert.equal(nodes.filter((n) => n.op_type === 'Gemm').length, 4 * TINY.layers * (form === 'torch-merged' ? 2 : 1));
    const model = await loadLensModel(dir, { dtype: 'fp32', offline: true, env });
    try {
      const ids = model.encodePrompt('The most famous sports in USA is');
      assert.deepEqual(ids, [464, 749, 5863, 5701, 287, 4916, 318]);
      const own = await ownLogits(path, ids, [TINY.heads, TINY.d / TINY.heads]);
      const worst = await assertLensMatches(model, ids, [ids.length - 1, 0, 3], referenceForward(w, ids), own, TINY.d, TOL);
      t.diagnostic(`largest difference ${worst.toExponential(2)}`);
    } finally {
      await model.dispose();
    }
  });
}
