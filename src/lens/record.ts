// The JSON record lens emits for one prompt (the contract documented in the README),
// computed from the lens logits of each layer at the read position.
import { klFromLogits, rankOf, softmaxStats, topK } from './math.js';

export interface TokenInfo { id: number; text: string }
export interface TopEntry { id: number; token: string; prob: number; logit: number }
export interface TargetEntry { text: string; id: number; prob: number; logit: number; rank: number }
export interface LayerRecord { layer: number; top: TopEntry[]; entropy: number; kl_to_final: number; targets: TargetEntry[] }
export interface LensRecord {
  model: string;
  mode: 'norm' | 'raw';
  prompt: string;
  tokens: TokenInfo[];
  position: number;
  layers: LayerRecord[];
}

export interface Target { text: string; id: number }

export interface RecordInput {
  model: string;
  mode: 'norm' | 'raw';
  prompt: string;
  tokens: TokenInfo[];
  position: number;
  /** One logit vector per layer, [L+1][V]. */
  layerLogits: ArrayLike<number>[];
  k: number;
  targets: Target[];
  tokenText: (id: number) => string;
}

/** Builds the record: top-k, entropy, KL to the last layer and target stats per layer. Throws on an empty layer list. */
export function buildRecord(input: RecordInput): LensRecord {
  const finalLogits = input.layerLogits[input.layerLogits.length - 1];
  if (!finalLogits) throw new RangeError('no layers');
  // Per layer: one exp pass for the partition function and entropy; KL to the final layer is a dot product.
  const stats = input.layerLogits.map((l) => softmaxStats(l));
  const final = stats[stats.length - 1];
  const finalProbs = new Float64Array(finalLogits.length);
  for (let i = 0; i < finalProbs.length; i++) finalProbs[i] = Math.exp(finalLogits[i] - final.logZ); // (Float64Array.from with a map function is ~20x slower)
  const layers = input.layerLogits.map((logits, layer): LayerRecord => {
    const { logZ, entropy } = stats[layer];
    const prob = (id: number) => Math.exp(logits[id] - logZ);
    return {
      layer,
      top: topK(logits, input.k).map((id) => ({ id, token: input.tokenText(id), prob: prob(id), logit: logits[id] })),
      entropy,
      kl_to_final: layer === stats.length - 1 ? 0 : klFromLogits(finalProbs, final.entropy, logits, logZ),
      targets: input.targets.map((t) => ({ text: t.text, id: t.id, prob: prob(t.id), logit: logits[t.id], rank: rankOf(logits, t.id) })),
    };
  });
  return { model: input.model, mode: input.mode, prompt: input.prompt, tokens: input.tokens, position: input.position, layers };
}
