// The checks of lens attribute against an independent float64 reference, shared by the attribution tests.
import assert from 'node:assert/strict';
import { attribute } from '../../src/commands/attribute.js';
import type { TargetSpec } from '../../src/commands/analyze.js';
import type { AttributionRecord, Part } from '../../src/lens/attribution.js';
import { parseIndexSpec } from '../../src/lens/spec.js';
import type { Dtype } from '../../src/model/paths.js';
import type { AttributionReference as ReferenceResult } from '../reference/gpt2.js';
import { cleanEnv, scratchDir } from '../helpers.js';

export const env = cleanEnv({ LENS_CACHE: scratchDir('attribution-cache') });
export const PROMPT = 'The most famous sports in USA is';
// The bound: 1e-4 absolute plus 1e-3 relative.
export const within = (actual: number, expected: number, abs = 1e-4, rel = 1e-3) => Math.abs(actual - expected) <= abs + rel * Math.abs(expected);

export async function attributionRecords(dir: string, targets: TargetSpec[], positions: string, dtype: Dtype = 'fp32', heads = false): Promise<AttributionRecord[]> {
  const out: AttributionRecord[] = [];
  const options = { model: dir, dtype, positions: parseIndexSpec(positions, { step: false }), offline: true, targets, env, heads };
  for await (const { records } of attribute([PROMPT], options, { color: false })) out.push(...records);
  return out;
}

/** The reference's parts for token t at a position: each write through the frozen final norm and W_U[t], then the biases. */
export function referenceParts(ref: ReferenceResult, position: number, t: number, perPartScale = false, heads = false): Part[] {
  const L = ref.residual.length - 1;
  const finalResidual = ref.residual[L][position];
  const zero = ref.unembed(new Float64Array(finalResidual.length));
  // W_U[t] · x without the head's bias, which belongs to the bias part.
  const direct = (x: Float64Array) => ref.unembed(ref.frozenNorm(x, perPartScale ? x : finalResidual))[t] - zero[t];
  const parts: Part[] = [{ name: 'embed', layer: 0, value: direct(ref.residual[0][position]) }];
  for (let l = 1; l <= L; l++) {
    parts.push({ name: 'attn', layer: l, value: direct(ref.attnOut[l - 1][position]) });
    if (heads) {
      ref.headOut[l - 1][position].forEach((v, h) => parts.push({ name: 'head', layer: l, head: h, value: direct(v) }));
      parts.push({ name: 'attn_bias', layer: l, value: direct(ref.attnBias[l - 1]) });
    }
    parts.push({ name: 'mlp', layer: l, value: direct(ref.mlpOut[l - 1][position]) });
  }
  parts.push({ name: 'bias', layer: null, value: ref.unembed(ref.normBias)[t] });
  return parts;
}

export function referenceLogit(ref: ReferenceResult, position: number, t: number): number {
  return ref.unembed(ref.finalNorm(ref.residual[ref.residual.length - 1][position]))[t];
}

/**
 * Checks a record's parts, value and sum against the reference, and each layer's heads and attn_bias
 * adding up to its attn unless `headsAddUp` is false; the bound `abs`, `rel` as `within`. Returns the
 * largest |heads + attn_bias − attn| (0 without heads).
 */
export function assertMatchesReference(record: AttributionRecord, ref: ReferenceResult, what: string, abs = 1e-4, rel = 1e-3, headsAddUp = true): number {
  const { position } = record;
  const t = record.target.id, versus = record.versus?.id;
  const minus = (a: Part[], b: Part[]) => a.map((p, i) => ({ ...p, value: p.value - b[i].value }));
  const heads = record.parts.some((p) => p.name === 'head');
  const expected = versus === undefined ? referenceParts(ref, position, t, false, heads) : minus(referenceParts(ref, position, t, false, heads), referenceParts(ref, position, versus, false, heads));
  assert.deepEqual(record.parts.map((p) => [p.name, p.layer, p.head]), expected.map((p) => [p.name, p.layer, p.head]), `${what}: parts in computation order`);
  record.parts.forEach((p, i) => assert.ok(within(p.value, expected[i].value, abs, rel), `${what}: ${p.name} L${p.layer} ${p.value} vs reference ${expected[i].value}`));
  const logit = referenceLogit(ref, position, t) - (versus === undefined ? 0 : referenceLogit(ref, position, versus));
  assert.ok(within(record.value, logit, abs, rel), `${what}: value ${record.value} vs reference ${logit}`);
  // The parts add up to the model's own value up to float error (float32 residuals, float64 sums);
  // each layer's heads and attn_bias to its attn.
  const sum = record.parts.reduce((s, p) => s + (p.name === 'head' || p.name === 'attn_bias' ? 0 : p.value), 0);
  let headsGap = 0;
  for (const attn of record.parts.filter((p) => p.name === 'attn' && heads)) {
    const split = record.parts.filter((p) => p.layer === attn.layer && (p.name === 'head' || p.name === 'attn_bias')).reduce((s, p) => s + p.value, 0);
    headsGap = Math.max(headsGap, Math.abs(split - attn.value));
    if (headsAddUp) assert.ok(within(split, attn.value, abs, abs), `${what}: L${attn.layer} heads + attn_bias ${split} vs attn ${attn.value}`);
  }
  assert.ok(within(sum, record.value, abs, abs), `${what}: sum of parts ${sum} vs the model's ${record.value}`);
  // The frozen scale matters on these fixtures: each part normalised by its own σ would be far off
  // (checked at the float32 bound; float16's is too loose to tell every part apart).
  if (versus === undefined && abs <= 1e-4) {
    const perPart = referenceParts(ref, position, t, true, heads);
    assert.ok(perPart.some((p, i) => Math.abs(p.value - record.parts[i].value) > 100 * (abs + rel * Math.abs(p.value))), `${what}: a per-part σ would pass too`);
  }
  return headsGap;
}
