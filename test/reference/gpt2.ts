// An independent GPT-2 forward pass in plain TypeScript (float64), written from the
// architecture (Radford et al. 2019; Hugging Face's GPT2LMHeadModel), not from the graph.
// Used only by the tests to check the tool's hidden states and lens values.
import type { Gpt2Weights } from '../fixtures/gpt2.js';
import { VOCAB } from '../fixtures/gpt2.js';

type Vec = Float64Array;

function layerNorm(x: Vec, gamma: Float32Array, beta: Float32Array, eps = 1e-5): Vec {
  let mean = 0;
  for (const v of x) mean += v;
  mean /= x.length;
  let variance = 0;
  for (const v of x) variance += (v - mean) ** 2;
  variance /= x.length;
  const inv = 1 / Math.sqrt(variance + eps);
  return x.map((v, i) => (v - mean) * inv * gamma[i] + beta[i]);
}

/** y = x @ W + b for W stored [in, out] (GPT-2's Conv1D). */
function conv1d(x: Vec, w: Float32Array, b: Float32Array, outDim: number): Vec {
  const y = Float64Array.from(b);
  for (let i = 0; i < x.length; i++) {
    const xi = x[i];
    for (let j = 0; j < outDim; j++) y[j] += xi * w[i * outDim + j];
  }
  return y;
}

const geluNew = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

export interface ReferenceResult {
  /** residual[l][t]: the residual stream after l blocks (l = 0: embeddings), before ln_f; [L+1][T][d] */
  residual: Vec[][];
  /** mid[l-1][t]: block l's residual after its attention, before its MLP (TransformerLens resid_mid); [L][T][d] */
  mid: Vec[][];
  /** ln_f applied to a residual vector. */
  finalNorm: (x: Vec) => Vec;
  /**
   * The head after the final norm: W_U · x (+ its bias) over the whole vocabulary, then whatever
   * the model does to its logits (a scale, a softcap), [V]; W_U is the fixture's own head, wte when tied.
   */
  unembed: (x: Vec) => Vec;
}

/** A reference forward that also records what each component writes, for direct logit attribution. */
export interface AttributionReference extends ReferenceResult {
  /** attnOut[l-1][t], mlpOut[l-1][t]: what block l's attention and MLP add into the residual, [L][T][d]. */
  attnOut: Vec[][];
  mlpOut: Vec[][];
  /** headOut[l-1][t][h]: query head h's share of block l's attention output, z_h · W_O[h] (no bias), [L][T][H][d]. */
  headOut: Vec[][][];
  /** attnBias[l-1]: block l's attention output projection bias (zeros without one), [L][d]. */
  attnBias: Vec[];
  /** The final norm without its bias applied to x [d], with the scale of `at` [d] instead of x's own. */
  frozenNorm: (x: Vec, at: Vec) => Vec;
  /** The final norm's bias [d] (zeros for RMSNorm). */
  normBias: Vec;
}

/** The scale a LayerNorm (centred) or RMSNorm divides by: √(mean (x − mean x)² + eps), or √(mean x² + eps). */
export function normScaleOf(x: Vec, eps: number, centred: boolean): number {
  const mean = centred ? x.reduce((a, v) => a + v, 0) / x.length : 0;
  return Math.sqrt(x.reduce((a, v) => a + (v - mean) ** 2, 0) / x.length + eps);
}

/** gain ⊙ (x − mean x) / σ(at) (LayerNorm) or gain ⊙ x / rms(at) (RMSNorm): the final norm with its scale frozen. */
export function frozenNormOf(x: Vec, at: Vec, gain: ArrayLike<number>, eps: number, centred: boolean): Vec {
  const mean = centred ? x.reduce((a, v) => a + v, 0) / x.length : 0;
  const scale = normScaleOf(at, eps, centred);
  return x.map((v, i) => ((v - mean) / scale) * gain[i]);
}

/** How the reference computes GPT-2's embeddings and Conv1D layers: in float64 unless test/reference/q8.ts quantizes them. */
export interface Gpt2Arithmetic {
  /** wte[id] + wpe[t], [d]. */
  embed: (id: number, t: number) => Vec;
  /** x @ W + b for the rows xs [T][in] together (q8 quantizes them with one scale), W [in, out] as Conv1D stores it; [T][out]. */
  conv1d: (xs: Vec[], w: Float32Array, b: Float32Array, outDim: number) => Vec[];
}

/** Runs GPT-2 on one sequence of token ids, in float64 or with `arithmetic`. */
export function referenceForward(w: Gpt2Weights, ids: number[], arithmetic?: Gpt2Arithmetic): AttributionReference {
  const { d, heads } = w.config;
  const hd = d / heads;
  const T = ids.length;
  const embed = arithmetic?.embed ?? ((id: number, t: number) => Float64Array.from({ length: d }, (_, i) => w.wte[id * d + i] + w.wpe[t * d + i]));
  const linear = arithmetic?.conv1d ?? ((xs: Vec[], W: Float32Array, b: Float32Array, outDim: number) => xs.map((v) => conv1d(v, W, b, outDim)));
  let x: Vec[] = ids.map((id, t) => embed(id, t));
  const residual: Vec[][] = [x.map((v) => v.slice())];
  const mids: Vec[][] = [];
  const attnOut: Vec[][] = [], mlpOut: Vec[][] = [], headOut: Vec[][][] = [], attnBias: Vec[] = [];
  for (const b of w.blocks) {
    const qkv = linear(x.map((v) => layerNorm(v, b.ln1g, b.ln1b)), b.attnW, b.attnB, 3 * d);
    const ctx = Array.from({ length: T }, () => new Float64Array(d));
    for (let h = 0; h < heads; h++) {
      for (let t = 0; t < T; t++) {
        const scores: number[] = [];
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let i = 0; i < hd; i++) dot += qkv[t][h * hd + i] * qkv[s][d + h * hd + i];
          scores.push(dot / Math.sqrt(hd));
        }
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const z = e.reduce((a, c) => a + c, 0);
        for (let s = 0; s <= t; s++) for (let i = 0; i < hd; i++) ctx[t][h * hd + i] += (e[s] / z) * qkv[s][2 * d + h * hd + i];
      }
    }
    const attn = linear(ctx, b.projW, b.projB, d);
    attnOut.push(attn);
    // Head h's rows h·hd … of the [in, out] projection, applied to its slice of the context alone.
    headOut.push(ctx.map((c) => Array.from({ length: heads }, (_, h) => {
      const out = new Float64Array(d);
      for (let i = h * hd; i < (h + 1) * hd; i++) for (let j = 0; j < d; j++) out[j] += c[i] * b.projW[i * d + j];
      return out;
    })));
    attnBias.push(Float64Array.from(b.projB));
    const mid = x.map((v, t) => v.map((r, i) => r + attn[t][i]));
    mids.push(mid.map((v) => v.slice()));
    const mlp = linear(linear(mid.map((v) => layerNorm(v, b.ln2g, b.ln2b)), b.fcW, b.fcB, 4 * d).map((v) => v.map(geluNew)), b.fc2W, b.fc2B, d);
    mlpOut.push(mlp);
    x = mid.map((v, t) => v.map((r, i) => r + mlp[t][i]));
    residual.push(x.map((v) => v.slice()));
  }
  return {
    residual,
    mid: mids,
    attnOut, mlpOut, headOut, attnBias,
    frozenNorm: (v, at) => frozenNormOf(v, at, w.lnfG, 1e-5, true),
    normBias: Float64Array.from(w.lnfB),
    finalNorm: (v) => layerNorm(v, w.lnfG, w.lnfB),
    unembed: (v) => {
      const head = w.lmHead ?? w.wte;
      const out = new Float64Array(VOCAB);
      for (let tok = 0; tok < VOCAB; tok++) {
        let s = w.lmHeadBias ? w.lmHeadBias[tok] : 0;
        for (let i = 0; i < d; i++) s += head[tok * d + i] * v[i];
        out[tok] = s;
      }
      return out;
    },
  };
}

/** Reference lens logits at one position: [L+1][V]; `raw` follows HF output_hidden_states (last one normed). */
export function referenceLens(ref: ReferenceResult, position: number, raw: boolean): Vec[] {
  const L = ref.residual.length - 1;
  return ref.residual.map((layer, l) => {
    const h = layer[position];
    return ref.unembed(raw && l < L ? h : ref.finalNorm(h));
  });
}

/** A residual site in computation order: after block `layer` (0: embeddings), or after its attention. */
export interface RefSite { layer: number; site: 'block' | 'attn' }

/** The sites {0,block}, ({l,attn},) {l,block} … {L,block}, and the residual vector [d] at each for position t. */
export function referenceSites(ref: ReferenceResult, sublayers: boolean): { site: RefSite; at: (t: number) => Vec }[] {
  const L = ref.residual.length - 1;
  const out: { site: RefSite; at: (t: number) => Vec }[] = [{ site: { layer: 0, site: 'block' }, at: (t) => ref.residual[0][t] }];
  for (let l = 1; l <= L; l++) {
    if (sublayers) out.push({ site: { layer: l, site: 'attn' }, at: (t) => ref.mid[l - 1][t] });
    out.push({ site: { layer: l, site: 'block' }, at: (t) => ref.residual[l][t] });
  }
  return out;
}

/** Reference lens logits at one position for every site: [sites][V]; in `raw` only {L,block} is normed. */
export function referenceLensSites(ref: ReferenceResult, position: number, raw: boolean, sublayers: boolean): Vec[] {
  const sites = referenceSites(ref, sublayers);
  return sites.map(({ at }, i) => {
    const h = at(position);
    return ref.unembed(raw && i < sites.length - 1 ? h : ref.finalNorm(h));
  });
}

/** log softmax(x)[id], in float64, max-shifted. */
export function referenceLogProb(logits: ArrayLike<number>, id: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return logits[id] - max - Math.log(sum);
}

/**
 * Teacher-forced log P_site(t_1…t_m | prompt) = Σ_i log P_site(t_i | prompt, t_<i) for every site,
 * from one forward pass over prompt + t_1…t_{m−1}: [sites] natural logs.
 */
export function referenceTargetLogProb(w: Gpt2Weights, prompt: number[], target: number[], raw: boolean, sublayers: boolean): number[] {
  const ref = referenceForward(w, [...prompt, ...target.slice(0, -1)]);
  const perPiece = target.map((id, i) => referenceLensSites(ref, prompt.length - 1 + i, raw, sublayers).map((logits) => referenceLogProb(logits, id)));
  return perPiece[0].map((_, s) => perPiece.reduce((sum, piece) => sum + piece[s], 0));
}
