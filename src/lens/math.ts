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
  if (values instanceof Float32Array) {
    const fast = float32Rank(values, id);
    if (fast !== undefined) return fast;
  }
  const v = values[id];
  let larger = 0;
  for (let i = 0; i < values.length; i++) if (values[i] > v) larger++;
  return larger + 1;
}

// A float32's bits b, as b ^ ((b >> 31) & 0x7fffffff), order as signed integers as the floats do,
// except that −0 comes before +0 and NaNs sort outside ±∞. For a pair of such keys, t − k is an
// exact double in (−2³², 2³²): floor((t − k)·2⁻³²) is −1 when k > t, else 0, with no branch (a
// compare whose outcome is random, as a target's rank is, mispredicts about half the time).
const TWO_TO_MINUS_32 = 2 ** -32;

/** rankOf for float32 logits [V] without a branch per element; undefined when the target is ±0 or a value is NaN (the keys' order differs from the floats' there). */
function float32Rank(values: Float32Array, id: number): number | undefined {
  const target = values[id];
  if (target === 0 || Number.isNaN(target)) return undefined;
  const bits = new Int32Array(values.buffer, values.byteOffset, values.length);
  const t = bits[id] ^ ((bits[id] >> 31) & 0x7fffffff);
  let below = 0, guard = 0;
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    below += Math.floor((t - (b ^ ((b >> 31) & 0x7fffffff))) * TWO_TO_MINUS_32);
    guard += values[i];
  }
  // A NaN among the values makes the guard NaN (as do +∞ and −∞ together: then the plain loop decides too).
  return Number.isNaN(guard) ? undefined : 1 - below;
}

/** log Σ exp(x) and the entropy in nats of softmax(x) for one logit vector [V], with one exp per element. Throws on an empty vector. */
export function softmaxStats(logits: ArrayLike<number>): { logZ: number; entropy: number } {
  const n = logits.length;
  if (n === 0) throw new RangeError('softmaxStats of an empty vector');
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
  // H = logZ − E_p[x]; shifting by max keeps every exp in range.
  let sum = 0, weighted = 0;
  for (let i = 0; i < n; i++) {
    const shifted = logits[i] - max;
    const e = Math.exp(shifted);
    sum += e;
    weighted += e * shifted;
  }
  const logSum = Math.log(sum);
  return { logZ: max + logSum, entropy: Math.max(0, logSum - weighted / sum) };
}

/**
 * KL(P ‖ softmax(x)) in nats, for P given by its probabilities [V] and entropy (nats), and a logit
 * vector x [V] with its log-partition: Σ p (log p − x + logZ) = −H(P) − Σ p·x + logZ. One pass, no exp.
 */
export function klFromLogits(probsP: ArrayLike<number>, entropyP: number, logits: ArrayLike<number>, logZ: number): number {
  let dot = 0;
  for (let i = 0; i < logits.length; i++) { const p = probsP[i]; if (p > 0) dot += p * logits[i]; }
  return Math.max(0, -entropyP - dot + logZ);
}

// exp(x) = 2^(k/64) · exp(r), k = round(64x/ln 2), |r| ≤ ln 2/128: a table of 2^(j/64), a table of
// whole powers of two and a degree-5 Taylor polynomial (its error, r⁶/720, is below 1e-16). Inlined
// by V8, it is several times faster than Math.exp, which dominates the record's cost (one per logit).
const EXP_STEPS = 64;
const EXP_INV = EXP_STEPS / Math.LN2;
const EXP_STEP = Math.LN2 / EXP_STEPS;
const EXP_FRACTION = Float64Array.from({ length: EXP_STEPS }, (_, j) => 2 ** (j / EXP_STEPS));
const EXP_MIN_POWER = -1100, EXP_MAX_POWER = 64;
const EXP_POWER = Float64Array.from({ length: EXP_MAX_POWER - EXP_MIN_POWER + 1 }, (_, i) => 2 ** (i + EXP_MIN_POWER));
const ROUNDER = 6755399441055744; // 1.5 · 2^52: adding and subtracting it rounds to the nearest integer

/** e^x for x ≤ 40 (logits shifted by their max or log-partition), relative error below 1e-13; 0 below −745; NaN for NaN. */
export function fastExp(x: number): number {
  if (x < -745) return 0;
  const kf = x * EXP_INV + ROUNDER - ROUNDER;
  const r = x - kf * EXP_STEP;
  const k = kf | 0;
  const poly = 1 + r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120)))));
  return EXP_POWER[(k >> 6) - EXP_MIN_POWER] * EXP_FRACTION[k & (EXP_STEPS - 1)] * poly;
}

/** What one pass pair over a logit vector [V] gives: log-partition, entropy (nats), the top indices (best first) and Σ q·x for a given distribution q. */
export interface VectorStats { max: number; logZ: number; entropy: number; top: number[]; dot: number }

/**
 * Max, top-k, log-sum-exp, entropy and (with `weights` [V]) Σ weights·x of one logit vector [V], in
 * float64, in two passes: max and top-k together, then one exp per element. Throws on an empty vector or k < 1.
 */
export function vectorStats(logits: ArrayLike<number>, k: number, weights?: ArrayLike<number>): VectorStats {
  const n = logits.length;
  if (n === 0) throw new RangeError('vectorStats of an empty vector');
  if (!(k >= 1)) throw new RangeError('k must be at least 1');
  k = Math.min(k, n);
  // Top-k in a small sorted buffer (ties to the lower index); its best is the max.
  const top: number[] = [];
  let kth = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = logits[i];
    if (top.length === k && !(v > kth)) continue;
    let j = top.length < k ? top.length : k - 1;
    while (j > 0 && v > logits[top[j - 1]]) { top[j] = top[j - 1]; j--; }
    top[j] = i;
    if (top.length === k) kth = logits[top[k - 1]];
  }
  const max = logits[top[0]];
  // H = logZ − E_p[x]; shifting by max keeps every exp in range. One loop for the exps and the weighted sum.
  let sum = 0, weighted = 0, dot = 0;
  if (weights) {
    for (let i = 0; i < n; i++) {
      const x = logits[i], shifted = x - max, e = fastExp(shifted);
      sum += e;
      weighted += e * shifted;
      const q = weights[i];
      if (q > 0) dot += q * x; // (0 · −∞ would be NaN)
    }
  } else {
    for (let i = 0; i < n; i++) {
      const shifted = logits[i] - max, e = fastExp(shifted);
      sum += e;
      weighted += e * shifted;
    }
  }
  const logSum = Math.log(sum);
  return { max, logZ: max + logSum, entropy: Math.max(0, logSum - weighted / sum), top, dot };
}

/** log Σ exp(x) of one logit vector [V], float64. Throws on an empty vector. */
export function logSumExp(logits: ArrayLike<number>): number {
  return softmaxStats(logits).logZ;
}
