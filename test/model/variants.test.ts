// The lens on the dtype variants transformers.js publishes (fp16, q8, uint8, q4, q4f16), built from the
// fixtures as the real tools write them (test/fixtures/variants.ts). Quantized arithmetic has no independent
// reference, so: (a) the last lens layer is the variant's own logits as transformers.js computes them on the
// unrewritten directory; (b) every layer stays close to the fp32 lens of the same weights; (c) a row's lens
// does not depend on the other rows (DynamicQuantizeLinear takes one scale per tensor).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AutoModelForCausalLM, env as hfEnv, Tensor } from '@huggingface/transformers';
import { loadLensModel, type LensModel } from '../../src/model/runtime.js';
import type { Dtype } from '../../src/model/paths.js';
import type { LensRecord } from '../../src/lens/record.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeModel } from '../../src/onnx/proto.js';
import { buildModel, FORMS as GPT2_FORMS, VOCAB, writeFixture } from '../fixtures/gpt2.js';
import { toFloat16 } from '../fixtures/variants.js';
import { assertClose, cleanEnv, fixture, runCli, scratchDir, TINY } from '../helpers.js';

const V = VOCAB, L = TINY.layers;
const PROMPT_IDS = [464, 749, 5863, 5701, 287, 4916, 318]; // "The most famous sports in USA is"
const env = cleanEnv({ LENS_CACHE: scratchDir('variants-cache') });
const FORMS = ['opset14-flat', 'opset14-merged'];
const DTYPES = ['fp16', 'q8', 'uint8', 'q4', 'q4f16'] as const;

/**
 * Bounds on the lens against the fp32 lens of the same weights, per dtype (measured maxima in README):
 * max |Δprob| over every layer, position and token; top-1 must agree where the fp32 top-1 leads by MARGIN.
 */
const VS_FP32: Record<(typeof DTYPES)[number], number> = { fp16: 2e-3, q8: 0.05, uint8: 0.05, q4: 0.15, q4f16: 0.15 };
const MARGIN = 0.05;
/** --raw rows r_0..r_{L-1}: max |Δlogit| / max |logit| against the fp32 raw lens. */
const RAW_VS_FP32: Record<(typeof DTYPES)[number], number> = { fp16: 5e-3, q8: 0.1, uint8: 0.1, q4: 0.25, q4f16: 0.25 };
/** fp16 and q4f16: the last layer against the model's own logits (see (a)). */
const FP16_OWN = 2e-2;

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

function softmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  const p = new Float64Array(logits.length);
  let z = 0;
  for (let i = 0; i < logits.length; i++) z += p[i] = Math.exp(logits[i] - max);
  return p.map((v) => v / z);
}

const row = (logits: Float32Array, r: number) => logits.subarray(r * V, (r + 1) * V);

const fp32Lens = new Map<string, { model: LensModel; logits: Float32Array }>();

for (const form of FORMS) {
  for (const dtype of DTYPES) {
    test(`${dtype} on ${form}: last layer is the variant's own logits, layers near fp32, rows independent`, async (t) => {
      const { dir } = fixture(form, TINY, { variants: true });
      const positions = [PROMPT_IDS.length - 1, 2];
      const P = positions.length;
      if (!fp32Lens.has(form)) {
        const model = await loadLensModel(dir, { dtype: 'fp32', offline: true, env });
        fp32Lens.set(form, { model, logits: (await model.run(PROMPT_IDS, positions, 'norm')).logits });
      }
      const fp32 = fp32Lens.get(form)!.logits;
      const lens = await loadLensModel(dir, { dtype, offline: true, env });
      try {
        const { logits } = await lens.run(PROMPT_IDS, positions, 'norm');
        assert.equal(logits.length, (L + 1) * P * V);

        // (a) The last layer against the variant's own logits.
        const own = await ownLogits(dir, dtype, PROMPT_IDS);
        let worstA = 0;
        positions.forEach((pos, p) => {
          const mine = row(logits, L * P + p), theirs = row(own, pos);
          if (dtype === 'fp16' || dtype === 'q4f16') {
            // The same float16 weights and ops on the same row, but onnxruntime drops the float16 Casts
            // around ops it runs in float differently in the two graphs (here the model's own logits come
            // out not rounded to float16), so one side may round the head's input h to float16 where the
            // other does not: that moves a logit by up to ½ ulp16(max|h| ≈ 3.1) · max_j Σ_k |W_kj| = 2^-10 · 20.2 ≈ 0.02.
            for (let i = 0; i < V; i++) worstA = Math.max(worstA, Math.abs(mine[i] - theirs[i]));
            assertClose(mine, theirs, FP16_OWN, `${dtype} last layer at ${pos}`);
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

        // (b) Every layer against the fp32 lens.
        let worstProb = 0, compared = 0;
        for (let r = 0; r < (L + 1) * P; r++) {
          const a = softmax(row(logits, r)), b = softmax(row(fp32, r));
          for (let i = 0; i < V; i++) worstProb = Math.max(worstProb, Math.abs(a[i] - b[i]));
          const order = Array.from(b.keys()).sort((x, y) => b[y] - b[x]);
          if (b[order[0]] - b[order[1]] > MARGIN) {
            compared++;
            const top = a.indexOf(Math.max(...a));
            assert.equal(top, order[0], `${dtype} row ${r}: top-1 ${top} vs fp32 ${order[0]} (fp32 margin ${b[order[0]] - b[order[1]]})`);
          }
        }
        assert.ok(worstProb <= VS_FP32[dtype], `${dtype}: max |Δprob| vs fp32 ${worstProb} > ${VS_FP32[dtype]}`);

        // (c) Rows are independent: the same position alone, or stacked with others, gives the same values.
        const alone = (await lens.run(PROMPT_IDS, [2], 'norm')).logits;
        for (let l = 0; l <= L; l++) assertClose(row(alone, l), row(logits, l * P + 1), 1e-5, `${dtype} layer ${l} alone vs stacked`);
        // --raw skips the norm on r_0..r_{L-1} (per row, also inside a per-row head): those rows stay near the
        // fp32 raw lens, in logits relative to their size (raw logits reach ±90 here, so probabilities are
        // too peaked to compare); a norm wrongly applied or skipped would be off by about the whole logit.
        const raw = (await lens.run(PROMPT_IDS, [2], 'raw')).logits;
        const fp32Raw = (await fp32Lens.get(form)!.model.run(PROMPT_IDS, [2], 'raw')).logits;
        assertClose(row(raw, L), row(alone, L), 1e-5, `${dtype} raw last layer is normed`);
        let worstRaw = 0;
        for (let l = 0; l < L; l++) {
          let diff = 0, size = 0;
          for (let i = 0; i < V; i++) { diff = Math.max(diff, Math.abs(row(raw, l)[i] - row(fp32Raw, l)[i])); size = Math.max(size, Math.abs(row(fp32Raw, l)[i])); }
          worstRaw = Math.max(worstRaw, diff / size);
        }
        assert.ok(worstRaw <= RAW_VS_FP32[dtype], `${dtype} raw: max |Δlogit| / max |logit| vs fp32 ${worstRaw} > ${RAW_VS_FP32[dtype]}`);
        t.diagnostic(`${dtype} ${form}: (a) max|Δlogit| ${worstA.toExponential(2)}; (b) max|Δprob| ${worstProb.toExponential(2)}, top-1 compared on ${compared}/${(L + 1) * P} rows; raw max|Δlogit|/max|logit| ${worstRaw.toExponential(2)}`);
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
      assertClose(row(logits, L), row(await ownLogits(dir, 'fp16', PROMPT_IDS), pos), FP16_OWN, 'last layer vs own logits');
    } finally {
      await lens.dispose();
    }
  });
}

test('--dtype q4 from the command line', async () => {
  const { dir } = fixture('opset14-merged', TINY, { variants: true });
  const r = await runCli(['topk', '--dtype', 'q4', '-m', dir, '--json', '-k', '2', 'Paris is capital of'], { env: { LENS_CACHE: scratchDir('variants-cli') }, timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  const record = JSON.parse(r.stdout) as LensRecord;
  assert.deepEqual(record.layers.map((l) => l.layer), [0, 1, 2, 3]);
  const ids = record.tokens.map((x) => x.id);
  const own = row(await ownLogits(dir, 'q4', ids), ids.length - 1);
  const best = own.indexOf(Math.max(...own));
  assert.equal(record.layers[L].top[0].id, best, 'the last layer\'s top token is the q4 model\'s own');
  assertClose(record.layers[L].top[0].logit, own[best], 1e-4, 'its logit');
});

test.after(async () => {
  for (const { model } of fp32Lens.values()) await model.dispose();
});
