// Direct logit attribution: what each component writes into the residual stream, read through
// the final norm with its scale frozen at the real final residual (as TransformerLens's
// apply_ln_to_stack does) and the target's row of the head. The parts then add up to the
// model's own logit: the norm is linear in its input once its scale is fixed.

/** The final norm and the head for the targets of one run, as the graph gives them. */
export interface FinalHead {
  /** W_U[t] for each target, [T, d] flattened. */
  unembedRows: ArrayLike<number>;
  /** The head's bias for each target as it reaches the logits (after the head's scaling), [T]. */
  headBias: ArrayLike<number>;
  /** The factor the head multiplies W_U·x by (1 for most heads). */
  headScale: number;
  /** A softcapped head's cap c (logit = c·tanh(u)): the scale and bias then give c·u, the logit before the cap. */
  softcap?: number;
  /** The final norm's gain [d] (Gemma's 1 + w included) and bias [d] (zeros without one). */
  gain: ArrayLike<number>;
  bias: ArrayLike<number>;
  epsilon: number;
  /** LayerNorm (subtracts the mean) or RMSNorm. */
  centred: boolean;
  /** Whether the head quantizes its input before multiplying (q8): its logit is then not linear in the parts. */
  roundsInput?: boolean;
}

export type PartName = 'embed' | 'attn' | 'head' | 'attn_bias' | 'mlp' | 'bias';
/** One component's residual write: `embed` (layer 0), `attn`/`mlp` of block `layer`, or one of its heads (`head`) and its output projection's bias (`attn_bias`). */
export interface PartVector { name: Exclude<PartName, 'bias'>; layer: number; head?: number; vector: ArrayLike<number> }
/** One part's direct contribution to the explained value; `layer` null for the final norm's and head's bias. */
export interface Part { name: PartName; layer: number | null; head?: number; value: number }

/** Whether a part is one of the finer `head`/`attn_bias` parts, which split an `attn` part rather than add to the total. */
export function isHeadPart(part: Pick<Part, 'name'>): boolean {
  return part.name === 'head' || part.name === 'attn_bias';
}

/** Each layer's attention output before its output projection and the projection itself, as the graph gives them. */
export interface HeadInputs {
  /** z, [L, P, K] flattened (K = count · head size). */
  inputs: Float32Array;
  /** W_O as z · W_O, [L, K, d] flattened. */
  weights: Float32Array;
  /** The projections' biases, [L, d] flattened. */
  biases: Float32Array;
  /** Query heads per layer. */
  count: number;
}

/**
 * `writes` with, after each block's `attn`, one write per query head h (z_h · W_O[h], the head's
 * slice of the projection) and the projection's bias (`attn_bias`); they sum to that `attn`.
 * Throws RangeError when K is not a multiple of the head count.
 */
export function withHeadWrites(writes: PartVector[], heads: HeadInputs, P: number, p: number, d: number): PartVector[] {
  const layers = heads.biases.length / d;
  const K = heads.inputs.length / (layers * P);
  if (!Number.isInteger(K) || K % heads.count !== 0 || heads.weights.length !== layers * K * d) throw new RangeError('the attention outputs do not split into the heads');
  const size = K / heads.count;
  return writes.flatMap((write) => {
    if (write.name !== 'attn') return [write];
    const l = write.layer - 1;
    const z = heads.inputs.subarray((l * P + p) * K, (l * P + p + 1) * K);
    const perHead: PartVector[] = Array.from({ length: heads.count }, (_, h) => {
      const vector = new Float64Array(d);
      for (let k = h * size; k < (h + 1) * size; k++) {
        const row = heads.weights.subarray((l * K + k) * d, (l * K + k + 1) * d);
        for (let j = 0; j < d; j++) vector[j] += z[k] * row[j];
      }
      return { name: 'head', layer: write.layer, head: h, vector };
    });
    return [write, ...perHead, { name: 'attn_bias', layer: write.layer, vector: heads.biases.subarray(l * d, (l + 1) * d) }];
  });
}

/**
 * The components' writes at one position, in computation order, from the residual sites
 * (`hidden` [sites, P, d] flattened, sites {0,block}, {1,attn}, {1,block}, …) for sequential blocks,
 * or from r_0 and the branch outputs (`branches` [2L, P, d]: attn_1, mlp_1, …) for parallel ones.
 * Throws RangeError when sequential sites lack the mid-block residuals and no branches are given.
 */
export function componentWrites(hidden: Float32Array, sites: { layer: number; site: 'block' | 'attn' }[], P: number, p: number, d: number, branches?: Float32Array): PartVector[] {
  const row = (s: number) => hidden.subarray((s * P + p) * d, (s * P + p + 1) * d);
  const minus = (a: Float32Array, b: Float32Array) => Float64Array.from(a, (v, i) => v - b[i]);
  const writes: PartVector[] = [{ name: 'embed', layer: 0, vector: Float64Array.from(row(0)) }];
  const layers = sites.at(-1)!.layer;
  if (branches) {
    for (let l = 1; l <= layers; l++) {
      (['attn', 'mlp'] as const).forEach((name, k) => {
        const at = ((2 * (l - 1) + k) * P + p) * d;
        writes.push({ name, layer: l, vector: Float64Array.from(branches.subarray(at, at + d)) });
      });
    }
    return writes;
  }
  if (sites.length !== 2 * layers + 1) throw new RangeError('sequential attribution needs the mid-block residual of every block');
  for (let l = 1; l <= layers; l++) {
    const before = row(2 * l - 2), mid = row(2 * l - 1), after = row(2 * l);
    writes.push({ name: 'attn', layer: l, vector: minus(mid, before) }, { name: 'mlp', layer: l, vector: minus(after, mid) });
  }
  return writes;
}

/** The final norm's scale at a residual vector [d]: σ = √(var + ε) for LayerNorm, rms = √(mean x² + ε) for RMSNorm. */
export function normScale(residual: ArrayLike<number>, head: Pick<FinalHead, 'epsilon' | 'centred'>): number {
  const d = residual.length;
  let mean = 0;
  if (head.centred) { for (let i = 0; i < d; i++) mean += residual[i]; mean /= d; }
  let square = 0;
  for (let i = 0; i < d; i++) square += (residual[i] - mean) ** 2;
  return Math.sqrt(square / d + head.epsilon);
}

/**
 * Each write's direct contribution to target `t`'s logit (t indexes the head's rows), then the
 * `bias` part (the final norm's bias and the head's), with the norm's scale frozen at `finalResidual` [d]:
 * scale · W_U[t] · (γ ⊙ (p − mean p) / σ_L) (no mean for RMSNorm). They sum to the logit.
 */
export function attributeWrites(writes: PartVector[], finalResidual: ArrayLike<number>, head: FinalHead, t: number): Part[] {
  const d = finalResidual.length;
  const sigma = normScale(finalResidual, head);
  const weighted = new Float64Array(d);
  let weightSum = 0, biasDot = 0;
  for (let i = 0; i < d; i++) {
    const w = head.unembedRows[t * d + i];
    weighted[i] = w * head.gain[i];
    weightSum += weighted[i];
    biasDot += w * head.bias[i];
  }
  const parts: Part[] = writes.map(({ name, layer, head: h, vector }) => {
    let dot = 0, mean = 0;
    for (let i = 0; i < d; i++) { dot += weighted[i] * vector[i]; mean += vector[i]; }
    mean /= d;
    const value = (head.headScale * (dot - (head.centred ? mean * weightSum : 0))) / sigma;
    return h === undefined ? { name, layer, value } : { name, layer, head: h, value };
  });
  parts.push({ name: 'bias', layer: null, value: head.headScale * biasDot + head.headBias[t] });
  return parts;
}

/** Part by part, `a` − `b` (the same parts in the same order). Throws RangeError on a mismatch. */
export function subtractParts(a: Part[], b: Part[]): Part[] {
  if (a.length !== b.length) throw new RangeError('the two targets have different parts');
  return a.map((part, i) => {
    if (b[i].name !== part.name || b[i].layer !== part.layer) throw new RangeError('the two targets have different parts');
    return { ...part, value: part.value - b[i].value };
  });
}

/** The JSON record of `lens attribute` for one prompt and position. */
export interface AttributionRecord {
  model: string;
  prompt: string;
  tokens: { id: number; text: string }[];
  position: number;
  target: { id: number; text: string };
  versus: { id: number; text: string } | null;
  /** The model's own final logit of the target (minus the versus token's); before the softcap when there is one. */
  value: number;
  /** Present only for a softcapped head: its cap; `value` and the parts are then the logits before it. */
  softcap?: number;
  /**
   * Present only when the head quantizes its input (q8, QDQ, int8 MatMulNBits): the parts explain the dequantized head
   * applied to the unrounded input, which is not the model's logit; `parts_sum` is their sum and
   * `difference` = value − parts_sum, the share of the head's rounding that no part carries.
   */
  quantized_head?: { parts_sum: number; difference: number };
  parts: Part[];
}

/** The logit before a softcap c (logit = c·tanh(u / c)): c·atanh(logit / c); the logit itself without one. */
export function beforeSoftcap(logit: number, softcap: number | undefined): number {
  return softcap ? softcap * Math.atanh(logit / softcap) : logit;
}

/** Σ of the parts' values (the `head` and `attn_bias` parts are already in their `attn`). */
export function partsSum(parts: Part[]): number {
  return parts.reduce((sum, p) => sum + (isHeadPart(p) ? 0 : p.value), 0);
}

/**
 * The running total after each layer, [L+1]: the bias plus every part up to that layer — the
 * lens's logit at that layer with the final norm's scale frozen at the last layer's.
 */
export function runningTotals(parts: Part[]): { layer: number; total: number }[] {
  const bias = parts.filter((p) => p.name === 'bias').reduce((s, p) => s + p.value, 0);
  const layers = Math.max(...parts.map((p) => p.layer ?? 0));
  const totals: { layer: number; total: number }[] = [];
  let total = bias;
  for (let l = 0; l <= layers; l++) {
    for (const p of parts) if (p.layer === l && p.name !== 'bias' && !isHeadPart(p)) total += p.value;
    totals.push({ layer: l, total });
  }
  return totals;
}
