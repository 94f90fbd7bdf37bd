// Trajectories read off one record: how a quantity moves through the layers at one position.
// Pure functions of the record; every site (block and, with sub-layers, mid-block) is a step.
import type { LayerRecord, LensRecord } from './record.js';

/** One value per site of a record, in its order: the site's layer, whether it is after the whole block or its attention only, and the value. */
export interface LayerValue { layer: number; site: LayerRecord['site']; value: number }

/** A target of the record, by its text (as given) or its (first) token id. */
export type TargetRef = string | number;

const byLayer = (record: LensRecord, value: (entry: LayerRecord) => number): LayerValue[] =>
  record.layers.map((entry) => ({ layer: entry.layer, site: entry.site, value: value(entry) }));

/** Entropy of each site's next-token distribution, in nats (divide by ln 2 for bits) [sites]. */
export function entropyByLayer(record: LensRecord): LayerValue[] {
  return byLayer(record, (entry) => entry.entropy);
}

/** KL(final ‖ site) of each site, in nats; 0 at the final layer [sites]. */
export function klToFinalByLayer(record: LensRecord): LayerValue[] {
  return byLayer(record, (entry) => entry.kl_to_final);
}

function targetIndex(record: LensRecord, target: TargetRef): number {
  const targets = record.layers[0]?.targets ?? [];
  const index = targets.findIndex((t) => (typeof target === 'number' ? t.id === target : t.text === target));
  if (index < 0) {
    const known = targets.map((t) => JSON.stringify(t.text)).join(', ') || 'none';
    throw new RangeError(`${JSON.stringify(target)} is not a target of this record (its targets: ${known})`);
  }
  return index;
}

/**
 * The first site from which `target` (its first token) stays in the top `k` (rank ≤ k) through the
 * final layer, or undefined when the final layer does not rank it in the top k. Throws RangeError
 * when the target is not one of the record's targets or k < 1.
 */
export function commitmentLayer(record: LensRecord, target: TargetRef, k = 1): Pick<LayerValue, 'layer' | 'site'> | undefined {
  if (!(k >= 1)) throw new RangeError(`k must be at least 1, not ${k}`);
  const t = targetIndex(record, target);
  let first: LayerRecord | undefined;
  for (let s = record.layers.length - 1; s >= 0 && record.layers[s].targets[t].rank <= k; s--) first = record.layers[s];
  return first && { layer: first.layer, site: first.site };
}

/**
 * logit(a) − logit(b) at each site, of the targets' first tokens, in logits (nats of odds: the log
 * of P(a)/P(b) at that site) [sites]. Throws RangeError when either is not a target of the record.
 */
export function logitDiffByLayer(record: LensRecord, a: TargetRef, b: TargetRef): LayerValue[] {
  const ia = targetIndex(record, a), ib = targetIndex(record, b);
  return byLayer(record, (entry) => entry.targets[ia].logit - entry.targets[ib].logit);
}

/**
 * The cross-entropy of the prompt's actual next token at each site of a record, in nats (−ln P; divide
 * by ln 2 for bits) [sites]: the token at position + 1, read from the record's targets (by its id, a
 * single-token target) or else its top-k. Run the prompt with that token as a target (or a large k) to
 * have it at every site; over all positions p < n−1 the records give the per-position curve. Throws
 * RangeError at the prompt's last position (no next token) or when a site has neither entry.
 */
export function nextTokenCrossEntropyByLayer(record: LensRecord): LayerValue[] {
  const next = record.tokens[record.position + 1];
  if (!next) throw new RangeError(`position ${record.position} is the prompt's last: it has no next token`);
  return byLayer(record, (entry) => {
    const target = entry.targets.find((t) => t.id === next.id && t.pieces.length <= 1);
    if (target) return -target.logprob;
    const top = entry.top.find((t) => t.id === next.id);
    if (top) return -Math.log(top.prob);
    throw new RangeError(`the next token ${JSON.stringify(next.text)} (id ${next.id}) is neither a target nor in the top ${entry.top.length} at layer ${entry.layer}`);
  });
}
