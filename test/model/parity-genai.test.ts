// The lens on onnxruntime-genai builder graphs (test/fixtures/genai.ts) of Qwen3, Gemma 2/3, Granite
// and Phi-3 LongRoPE, against the independent float64 reference (on the weights as stored: q4
// dequantized), both modes, every layer, mid-block site and position read, and the last layer
// against the model's own logits through onnxruntime on the unrewritten file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadLensModel, type LensModel } from '../../src/model/runtime.js';
import { inspectModel } from '../../src/model/inspect.js';
import { headDim, type DecoderWeights, type Family } from '../fixtures/llama.js';
import { GENAI_FORMS, genaiConfig, genaiFile, writeGenaiFixture } from '../fixtures/genai.js';
import { referenceDecoderForward } from '../reference/llama.js';
import { referenceLens } from '../reference/gpt2.js';
import { assertClose, cleanEnv, scratchDir } from '../helpers.js';
import { assertLensMatches, ownLogits } from './lens-check.js';
import { decoderAsStored, genaiAsStored, ownHalfTolerance, variantTolerance } from './stored-weights.js';
import { halfSummedNBits } from './kernel-probes.js';

// GroupQueryAttention sums in another order than the reference (the bound of the fused forms).
const TOL = 2e-4;
const PROMPT = 'The most famous sports in USA is';
const env = cleanEnv({ LENS_CACHE: scratchDir('parity-genai-cache') });
const root = scratchDir('genai-fixtures');

// LongRoPE with an original context of 6 positions: the 8-token prompt takes the long caches, a
// 4-token one the short. The cos/sin scale is Phi-3.5-mini's, √(1 + ln 32 / ln 4096) (131072 of
// 4096 positions): the formula on this fixture's 64 of 6 would give 1.52, which sharpens the
// scores past what float32 attention holds to 2e-4 (3.7e-4 measured).
const PHI35_MSCALE = Math.sqrt(1 + Math.log(32) / Math.log(4096));
const LONG_ROPE = {
  original: 6,
  shortFactor: [1, 1.05, 1.1, 1.2, 1.4, 1.7, 2.1, 2.6],
  longFactor: [1, 1.5, 2.5, 4, 6, 9, 13, 20],
  shortMscale: PHI35_MSCALE,
  longMscale: PHI35_MSCALE,
};

const CASES: { family: Family; form: string; afterHead: string[]; atEmbedding: string[]; prompts?: string[] }[] = [
  { family: 'qwen3', form: 'genai-fp32', afterHead: [], atEmbedding: [] },
  { family: 'qwen3', form: 'genai-fp32-shared', afterHead: [], atEmbedding: [] },
  { family: 'qwen3', form: 'genai-q4', afterHead: [], atEmbedding: [] },
  { family: 'qwen3', form: 'genai-q4-shared-pruned', afterHead: [], atEmbedding: [] },
  { family: 'gemma3_text', form: 'genai-fp32', afterHead: [], atEmbedding: ['× 9.8'] },
  { family: 'gemma3_text', form: 'genai-q4', afterHead: [], atEmbedding: ['× 9.8'] },
  { family: 'gemma3_text', form: 'genai-q4-shared-pruned', afterHead: [], atEmbedding: ['× 9.8'] },
  { family: 'gemma2', form: 'genai-fp32', afterHead: ['softcap 30'], atEmbedding: ['× 9.8'] },
  { family: 'granite', form: 'genai-fp32', afterHead: ['× 0.25'], atEmbedding: ['× 3'] },
  { family: 'granite', form: 'genai-q4', afterHead: ['× 0.25'], atEmbedding: ['× 3'] },
  { family: 'phi3', form: 'genai-fp32', afterHead: [], atEmbedding: [], prompts: [PROMPT, 'The most famous'] },
  { family: 'phi3', form: 'genai-q4', afterHead: [], atEmbedding: [], prompts: [PROMPT, 'The most famous'] },
];

const dtypeOf = (form: string) => (GENAI_FORMS[form].q4 ? 'q4' : 'fp32');

for (const { family, form, afterHead, atEmbedding, prompts } of CASES) {
  test(`lens matches the reference on a genai builder graph: ${family} ${form}`, async (t) => {
    const dir = join(root, `${family}-${form}`);
    const weights = writeGenaiFixture(dir, genaiConfig(family), form, family === 'phi3' ? { longRope: LONG_ROPE } : undefined);
    const inspection = await inspectModel(dir, { dtype: dtypeOf(form), offline: true, env });
    assert.deepEqual(inspection.afterHead, afterHead, 'inspect names the ops after the head');
    assert.deepEqual(inspection.atEmbedding, atEmbedding, 'inspect names the ops at the embedding');
    assert.equal(inspection.prunedHead, GENAI_FORMS[form].pruneHead === true, 'inspect says whether the head is pruned');
    assert.equal(inspection.graph.merged, false, 'a rotary-cache If is not a merged decoder');
    assert.equal(inspection.graph.rotaryCacheSwitch, family === 'phi3', 'inspect names the LongRoPE cache If');
    if (GENAI_FORMS[form].sharedEmbeddings) assert.equal(inspection.head.tiedTo, GENAI_FORMS[form].q4 ? 'lm_head.MatMul.weight_Q4' : 'lm_head.MatMul.weight', 'the embedding shares the head');
    const model = await loadLensModel(dir, { dtype: dtypeOf(form), offline: true, env });
    try {
      for (const prompt of prompts ?? [PROMPT]) {
        const ids = model.encodePrompt(prompt);
        const positions = [ids.length - 1, 0, 2];
        const ref = referenceDecoderForward(genaiAsStored(weights, form), ids);
        const own = await ownLogits(join(dir, genaiFile(form)), ids, [weights.config.kvHeads, headDim(weights.config)]);
        const worst = await assertLensMatches(model, ids, positions, ref, own, weights.config.d, TOL);
        t.diagnostic(`${ids.length} tokens: largest difference ${worst.toExponential(2)} (bound ${TOL})`);
      }
    } finally {
      await model.dispose();
    }
  });
}

/** A Qwen3 fixture in `form`, loaded as `dtype`, read at three positions of the prompt: what `check` needs. */
async function onQwen3(form: string, dtype: 'q4' | 'q4f16', check: (run: { model: LensModel; weights: DecoderWeights; ids: number[]; positions: number[]; own: Float32Array }) => Promise<void>): Promise<void> {
  const dir = join(root, `qwen3-${form}`);
  const weights = writeGenaiFixture(dir, genaiConfig('qwen3'), form);
  const model = await loadLensModel(dir, { dtype, offline: true, env });
  try {
    const ids = model.encodePrompt(PROMPT);
    const own = await ownLogits(join(dir, genaiFile(form)), ids, [weights.config.kvHeads, headDim(weights.config)]);
    await check({ model, weights, ids, positions: [ids.length - 1, 0, 2], own });
  } finally {
    await model.dispose();
  }
}

/** Row `site` × position index `p` of a lens run's logits [sites · P, V]. */
const lensRow = (logits: Float32Array, site: number, p: number, P: number, V: number) => logits.subarray((site * P + p) * V, (site * P + p + 1) * V);

// io_dtype float16 (the builder's int4 for CUDA and WebGPU): every activation float16. Each layer
// against the float64 reference on the weights as stored (float16, q4 with float16 scales) within the
// float16 error budget the dtype variants use (test/model/stored-weights.ts), and the last layer
// against the model's own float16 logits to the q4f16 variants' bound (ownHalfTolerance).
test('genai q4f16 (float16 io): every layer the reference within the float16 budget, last layer = the model\'s own logits', async (t) => {
  await onQwen3('genai-q4f16', 'q4f16', async ({ model, weights, ids, positions, own }) => {
    const stored = decoderAsStored(weights, 'q4f16');
    const ref = referenceDecoderForward(stored, ids);
    const V = model.vocabSize, L = model.layers, P = positions.length;
    const halfSums = await halfSummedNBits();
    for (const mode of ['norm', 'raw'] as const) {
      const run = await model.run(ids, positions, mode);
      let worstRatio = 0, worstOwn = 0;
      positions.forEach((pos, p) => {
        const expected = referenceLens(ref, pos, mode === 'raw');
        for (let l = 0; l <= L; l++) {
          const h = ref.residual[l][pos];
          const tol = variantTolerance('q4f16', l, mode === 'raw' && l < L ? h : ref.finalNorm(h), stored.lmHead!, V, halfSums);
          worstRatio = Math.max(worstRatio, assertClose(lensRow(run.logits, l, p, P, V), expected[l], tol, `${mode} L${l} at ${pos}`) / tol);
        }
        const ownTol = ownHalfTolerance('q4f16', ref.finalNorm(ref.residual[L][pos]), stored.lmHead!, V, halfSums);
        worstOwn = Math.max(worstOwn, assertClose(lensRow(run.logits, L, p, P, V), own.subarray(pos * V, (pos + 1) * V), ownTol, `${mode} last layer vs own logits at ${pos}`));
      });
      t.diagnostic(`${mode}: ${worstRatio.toFixed(2)} of the float16 bound; last layer vs own logits ${worstOwn.toExponential(2)}`);
    }
  });
});

// The builder's CPU default, accuracy_level 4, quantizes each MatMulNBits input to int8 per row and
// block: the rows then differ from the float reference by the quantization, but the lens's last layer
// (each stacked row quantized on its own, as each position is in the model) is still the model's own.
test('genai q4 with int8 activations (accuracy_level 4): last layer = the model\'s own logits', async (t) => {
  await onQwen3('genai-q4-int8', 'q4', async ({ model, ids, positions, own }) => {
    const V = model.vocabSize, L = model.layers, P = positions.length;
    for (const mode of ['norm', 'raw'] as const) {
      const run = await model.run(ids, positions, mode);
      assert.ok(run.logits.every(Number.isFinite));
      let worst = 0;
      positions.forEach((pos, p) => {
        worst = Math.max(worst, assertClose(lensRow(run.logits, L, p, P, V), own.subarray(pos * V, (pos + 1) * V), 1e-4, `${mode} last layer vs own logits at ${pos}`));
      });
      t.diagnostic(`${mode}: last layer vs own logits ${worst.toExponential(2)}`);
    }
  });
});
