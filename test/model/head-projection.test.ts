// lens tune's onnxruntime product g_z · W_U against a float64 loop written here.
import { test } from 'node:test';
import { createHeadProjection } from '../../src/model/head-projection.js';
import { normalSampler } from '../fixtures/gpt2.js';
import { assertClose } from '../helpers.js';

test('head projection: g_z [rows, V] · W_U [V, d] equals the float64 product', async () => {
  const sample = normalSampler(3);
  const rows = 5, V = 1000, d = 24;
  const unembed = sample(V * d, 1), gradZ = sample(rows * V, 1e-3);
  const projection = await createHeadProjection(unembed, V, d);
  try {
    const actual = await projection.project(gradZ, rows);
    const expected = Array.from({ length: rows * d }, (_, i) => {
      const r = Math.floor(i / d), j = i % d;
      let sum = 0;
      for (let v = 0; v < V; v++) sum += gradZ[r * V + v] * unembed[v * d + j];
      return sum;
    });
    assertClose(actual, expected, 1e-6, 'g_y');
    // Another row count through the same session.
    assertClose(await projection.project(gradZ.subarray(0, V), 1), expected.slice(0, d), 1e-6, 'one row');
  } finally {
    await projection.release();
  }
});
