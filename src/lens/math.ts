// Pure math on logit vectors. No I/O, no model. All results in float64; logs are natural.

/** log softmax of one logit vector [V] → [V]; stable for large logits. Throws on an empty vector. */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  const n = logits.length;
  if (n === 0) throw new RangeError('logSoftmax of an empty vector');
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[i] - max);
  const logZ = max + Math.log(sum);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = logits[i] - logZ;
  return out;
}

/** softmax of one logit vector [V] → [V]. */
export function softmax(logits: ArrayLike<number>): Float64Array {
  return logSoftmax(logits).map(Math.exp);
}

/** Shannon entropy in nats of a distribution given as log-probabilities [V]. */
export function entropy(logProbs: ArrayLike<number>): number {
  let h = 0;
  for (let i = 0; i < logProbs.length; i++) {
    const lp = logProbs[i];
    if (lp > -Infinity) h -= Math.exp(lp) * lp;
  }
  return h;
}

/** KL(P ‖ Q) in nats from log-probabilities [V] each; Infinity where Q has no mass under P. Throws on length mismatch. */
export function klDivergence(logP: ArrayLike<number>, logQ: ArrayLike<number>): number {
  if (logP.length !== logQ.length) throw new RangeError('KL of vectors of different lengths');
  let kl = 0;
  for (let i = 0; i < logP.length; i++) {
    const lp = logP[i];
    if (lp === -Infinity) continue;
    kl += Math.exp(lp) * (lp - logQ[i]);
  }
  return Math.max(0, kl);
}

/** Indices of the k largest values [k], best first; ties go to the lower index. Throws if k < 1. */
export function topK(values: ArrayLike<number>, k: number): number[] {
  if (!(k >= 1)) throw new RangeError('k must be at least 1');
  k = Math.min(k, values.length);
  // A small sorted buffer: k is tiny next to the vocabulary, so this beats sorting V values.
  const best: number[] = [];
  const better = (a: number, b: number) => values[a] > values[b] || (values[a] === values[b] && a < b);
  for (let i = 0; i < values.length; i++) {
    if (best.length === k && !better(i, best[k - 1])) continue;
    let j = best.length < k ? best.length : k - 1;
    while (j > 0 && better(i, best[j - 1])) { best[j] = best[j - 1]; j--; }
    best[j] = i;
  }
  return best;
}

/** Rank of token `id`: 1 + the number of tokens with a strictly larger value. Throws on an id out of range. */
export function rankOf(values: ArrayLike<number>, id: number): number {
  if (!(id >= 0 && id < values.length)) throw new RangeError(`token id ${id} is out of range`);
  const v = values[id];
  let larger = 0;
  for (let i = 0; i < values.length; i++) if (values[i] > v) larger++;
  return larger + 1;
}
