// The JSON record lens emits for one prompt (the contract documented in the README),
// computed from the lens logits of each layer at the read position.
import { entropy, klDivergence, logSoftmax, rankOf, topK } from './math.js';

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
  const logProbs = input.layerLogits.map((l) => logSoftmax(l));
  const final = logProbs[logProbs.length - 1];
  if (!final) throw new RangeError('no layers');
  const layers = input.layerLogits.map((logits, layer): LayerRecord => {
    const lp = logProbs[layer];
    return {
      layer,
      top: topK(logits, input.k).map((id) => ({ id, token: input.tokenText(id), prob: Math.exp(lp[id]), logit: logits[id] })),
      entropy: entropy(lp),
      kl_to_final: klDivergence(final, lp),
      targets: input.targets.map((t) => ({ text: t.text, id: t.id, prob: Math.exp(lp[t.id]), logit: logits[t.id], rank: rankOf(logits, t.id) })),
    };
  });
  return { model: input.model, mode: input.mode, prompt: input.prompt, tokens: input.tokens, position: input.position, layers };
}
