// The lens on the dtype variants transformers.js publishes (fp16, q8, uint8, q4, q4f16), built from the
// fixtures as the real tools write them (test/fixtures/variants.ts). (a) The last lens layer is the
// variant's own logits as transformers.js computes them on the unrewritten directory; (b) every layer, in
// both modes, is the independent float64 reference forward pass run on the weights as the variant stores
// them (test/model/stored-weights.ts), within a bound derived from the variant's arithmetic; (c) a row's
// lens does not depend on the other rows (DynamicQuantizeLinear takes one scale per tensor).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AutoModelForCausalLM, env as hfEnv, Tensor } from '@huggingface/transformers';
import { loadLensModel } from '../../src/model/runtime.js';
import type { Dtype } from '../../src/model/paths.js';
import type { LensRecord } from '../../src/lens/record.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeModel } from '../../src/onnx/proto.js';
import { buildModel, FORMS as GPT2_FORMS, VOCAB, writeFixture } from '../fixtures/gpt2.js';
import { toFloat16 } from '../fixtures/variants.js';
import { referenceForward, referenceLens } from '../reference/gpt2.js';
import { gpt2AsStored, OWN_HALF_TOL, ownHalfTolerance, variantTolerance } from './stored-weights.js';
import { halfSummedNBits } from './kernel-probes.js';
import { assertClose, cleanEnv, fixture, runCli, scratchDir, TINY } from '../helpers.js';

const V = VOCAB, L = TINY.layers;
const PROMPT_IDS = [464, 749, 5863, 5701, 287, 4916, 318]; // "The most famous sports in USA is"
const env = cleanEnv({ LENS_CACHE: scratchDir('variants-cache') });
const FORMS = ['opset14-flat', 'opset14-merged'];
const DTYPES = ['fp16', 'q8', 'uint8', 'q4', 'q4f16'] as const;

/** The variant's own logits [T, V] for `ids`, from transformers.js on the original directory. */
async function ownLogits(dir: string, dtype: Dtype, ids: number[]): Promise<Float32Array> {
  hfEnv.allowRemoteModels = false;
  hfEnv.allowLocalModels = true;
  hfEnv.localModelPath = '';
  const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype, local_files_only: true, device: 'cpu' } as never);
  try {
    const T = ids.length;
    const out = await (model as unknown as { forward(i: Record<string, Tensor>): Promise<Record<string, Tensor>> }).forward({
      input_ids: new Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, T]),
      attention_mask: new Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]),
    });
    const logits = out.logits.type === 'float32' ? out.logits : out.logits.to('float32');
    return Float32Array.from(logits.data as Float32Array);
  } finally {
    await model.dispose();
  }
}

const row = (logits: Float32Array, r: number) => logits.subarray(r * V, (r + 1) * V);

for (const form of FORMS) {
  for (const dtype of DTYPES) {
    test(`${dtype} on ${form}: last layer is the variant's own logits, every layer the reference on the stored weights, rows independent`, async (t) => {
      const { dir, weights } = fixture(form, TINY, { variants: true });
      const positions = [PROMPT_IDS.length - 1, 2];
      const P = positions.length;
      const lens = await loadLensModel(dir, { dtype, offline: true, env });
      try {
        const { logits } = await lens.run(PROMPT_IDS, positions, 'norm');
        assert.equal(logits.length, (L + 1) * P * V);

        // (a) The last layer against the variant's own logits.
        const stored = gpt2AsStored(weights, dtype);
        const ref = referenceForward(stored, PROMPT_IDS);
        const halfSums = await halfSummedNBits();
        const own = await ownLogits(dir, dtype, PROMPT_IDS);
        let worstA = 0;
        positions.forEach((pos, p) => {
          const mine = row(logits, L * P + p), theirs = row(own, pos);
          if (dtype === 'fp16' || dtype === 'q4f16') {
            // The same float16 weights and ops on the same row, but onnxruntime drops the float16 Casts
            // around ops it runs in float differently in the two graphs (here the model's own logits come
            // out not rounded to float16), so one side may round the head's input h to float16 where the
            // other does not: that moves a logit by up to ½ ulp16(max|h| ≈ 3.1) · max_j Σ_k |W_kj| = 2^-10 · 20.2 ≈ 0.02
            // (and a q4f16 head that sums in float16 adds both sides' sums: ownHalfTolerance).
            for (let i = 0; i < V; i++) worstA = Math.max(worstA, Math.abs(mine[i] - theirs[i]));
            assertClose(mine, theirs, ownHalfTolerance(dtype, ref.finalNorm(ref.residual[L][pos]), stored.lmHead!, V, halfSums), `${dtype} last layer at ${pos}`);
          } else {
            // q4: the same MatMulNBits on the same float row. q8: the model quantizes the whole sequence
            // with one scale, so the lens takes the model's own logits as they are: bit for bit.
            const tol = dtype === 'q4' ? 1e-4 : 0;
            for (let i = 0; i < V; i++) worstA = Math.max(worstA, Math.abs(mine[i] - theirs[i]));
            assertClose(mine, theirs, tol, `${dtype} last layer at ${pos}`);
          }
        });
        if (dtype === 'q8' || dtype === 'uint8') {
          // With one token, the sequence is the row: the lens is then exactly the model's own computation.
          const one = [PROMPT_IDS[0]];
          const single = (await lens.run(one, [0], 'norm')).logits;
          assertClose(row(single, L), row(await ownLogits(dir, dtype, one), 0), 0, `${dtype} one-token last layer`);
        }

        // (b) Every layer, both modes, against the float64 reference on the weights as this file stores them.
        const worstRatio = { norm: 0, raw: 0 }, worstDiff = { norm: 0, raw: 0 };
        for (const mode of ['norm', 'raw'] as const) {
          const run = mode === 'norm' ? logits : (await lens.run(PROMPT_IDS, positions, 'raw')).logits;
          positions.forEach((pos, p) => {
            const expected = referenceLens(ref, pos, mode === 'raw');
            for (let l = 0; l <= L; l++) {
              const h = ref.residual[l][pos];
              const tol = variantTolerance(dtype, l, mode === 'raw' && l < L ? h : ref.finalNorm(h), stored.lmHead!, V, halfSums);
              const mine = row(run, l * P + p);
              let diff = 0;
              for (let i = 0; i < V; i++) diff = Math.max(diff, Math.abs(mine[i] - expected[l][i]));
              worstRatio[mode] = Math.max(worstRatio[mode], diff / tol);
              worstDiff[mode] = Math.max(worstDiff[mode], diff);
              assertClose(mine, expected[l], tol, `${dtype} ${mode} L${l} at ${pos} vs the reference on the stored weights`);
            }
          });
        }

        // (c) Rows are independent: the same position alone, or stacked with others, gives the same values.
        const alone = (await lens.run(PROMPT_IDS, [2], 'norm')).logits;
        for (let l = 0; l <= L; l++) assertClose(row(alone, l), row(logits, l * P + 1), 1e-5, `${dtype} layer ${l} alone vs stacked`);
        t.diagnostic(`${dtype} ${form}: (a) max|Δlogit| ${worstA.toExponential(2)}; (b) max|Δlogit| norm ${worstDiff.norm.toExponential(2)} (${worstRatio.norm.toFixed(2)} of the bound), raw ${worstDiff.raw.toExponential(2)} (${worstRatio.raw.toFixed(2)})`);
      } finally {
        await lens.dispose();
      }
    });
  }
}

for (const form of FORMS) {
  test(`fp16 with float16 graph inputs and outputs (keep_io_types=False, older hub files) on ${form}`, async () => {
    const dir = join(scratchDir('fp16-io'), form);
    const weights = writeFixture(dir, form, TINY);
    writeFileSync(join(dir, 'onnx', 'model_fp16.onnx'), encodeModel(toFloat16(buildModel(weights, GPT2_FORMS[form]), false)));
    const lens = await loadLensModel(dir, { dtype: 'fp16', offline: true, env });
    try {
      const pos = PROMPT_IDS.length - 1;
      const { logits, hidden } = await lens.run(PROMPT_IDS, [pos], 'norm');
      assert.equal(hidden.length, (L + 1) * TINY.d);
      // transformers.js feeds float16 past_key_values here (it reads the graph's input types).
      assertClose(row(logits, L), row(await ownLogits(dir, 'fp16', PROMPT_IDS), pos), OWN_HALF_TOL, 'last layer vs own logits');
    } finally {
      await lens.dispose();
    }
  });
}

test('--dtype q4 from the command line', async () => {
  const { dir } = fixture('opset14-merged', TINY, { variants: true });
  const r = await runCli(['topk', '--dtype', 'q4', '-m', dir, '--json', '-k', '2', 'Paris is capital of'], { env: { LENS_CACHE: scratchDir('variants-cli') } });
  assert.equal(r.code, 0, r.stderr);
  const record = JSON.parse(r.stdout) as LensRecord;
  assert.deepEqual(record.layers.map((l) => l.layer), [0, 1, 2, 3]);
  const ids = record.tokens.map((x) => x.id);
  const own = row(await ownLogits(dir, 'q4', ids), ids.length - 1);
  const best = own.indexOf(Math.max(...own));
  assert.equal(record.layers[L].top[0].id, best, 'the last layer\'s top token is the q4 model\'s own');
  assertClose(record.layers[L].top[0].logit, own[best], 1e-4, 'its logit');
});

