// An independent forward pass (float64) of the Llama family and its kin, written from the
// architectures (Hugging Face's LlamaForCausalLM, Qwen2/Qwen3, Mistral, SmolLM3, Granite, Phi-3,
// StableLM, Gemma/Gemma 2/Gemma 3, OLMo2, Cohere, GPTNeoXForCausalLM, GPTNeoForCausalLM), not from
// any graph: RMSNorm (and Gemma's x·(1 + w) with √d-scaled embeddings), LayerNorm (Cohere's
// without bias), rotary embeddings over all or part of each head (rotate_half convention, or
// Cohere's neighbouring pairs; SmolLM3's layers without), q/k norms per head or over the whole
// projection, grouped-query attention, score scales and softcaps, SwiGLU / GeGLU / GELU MLPs,
// sequential blocks with pre-, sandwich or output-only norms, parallel blocks, Granite's
// multipliers, GPT-Neo's learned positions, unscaled scores and local attention windows, and
// what the model does to its logits (÷ logits_scaling, × logit_scale, softcap).
// Used only by the tests.
import { headDim, isLocalLayer, rotaryDim, type DecoderWeights, type FamilyTraits, type Linear, type Norm } from '../fixtures/llama.js';
import { frozenNormOf, type AttributionReference } from './gpt2.js';

type Vec = Float64Array;

/** x / rms(x) · w (Gemma: · (1 + w)), [d]. */
export function rmsNorm(x: Vec, gamma: Float32Array, eps: number, onePlus: boolean): Vec {
  let ms = 0;
  for (const v of x) ms += v * v;
  const inv = 1 / Math.sqrt(ms / x.length + eps);
  return x.map((v, i) => v * inv * (onePlus ? 1 + gamma[i] : gamma[i]));
}

/** (x − mean) / std · γ + β (no β: 0), [d]. */
export function layerNorm(x: Vec, gamma: Float32Array, beta: Float32Array | undefined, eps: number): Vec {
  let mean = 0;
  for (const v of x) mean += v;
  mean /= x.length;
  let variance = 0;
  for (const v of x) variance += (v - mean) ** 2;
  const inv = 1 / Math.sqrt(variance / x.length + eps);
  return x.map((v, i) => (v - mean) * inv * gamma[i] + (beta ? beta[i] : 0));
}

/** y = W x + b with W in torch's [out, in] layout. */
export function apply(lin: Linear, x: Vec): Vec {
  const y = new Float64Array(lin.out);
  for (let o = 0; o < lin.out; o++) {
    let s = lin.b ? lin.b[o] : 0;
    for (let i = 0; i < lin.in; i++) s += lin.w[o * lin.in + i] * x[i];
    y[o] = s;
  }
  return y;
}

/** x·σ(x). */
export const silu = (v: number) => v / (1 + Math.exp(-v));
/** GELU, tanh approximation (gelu_new). */
export const geluTanh = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
function erf(x: number): number {
  // Maclaurin series: exact to ~1e-9 below |x| = 4 in float64; beyond, 1 - erf(|x|) < 2e-8.
  const t = Math.abs(x);
  if (t >= 4) return Math.sign(x);
  let sum = t, term = t;
  for (let n = 1; n < 120; n++) { term *= (-t * t) / n; sum += term / (2 * n + 1); }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
}
/** GELU, exact (erf). */
export const geluErf = (v: number) => 0.5 * v * (1 + erf(v / Math.SQRT2));

/**
 * Rotates the first `rot` dims of a head vector at position `pos`: pair i (frequency
 * θ^(−2i/rot)) is dims i and i + rot/2, or with `interleaved` (Cohere) dims 2i and 2i + 1.
 */
export function rotary(x: Vec, pos: number, rot: number, theta: number, interleaved = false, divisors?: number[], mscale = 1): Vec {
  const out = x.slice();
  const half = rot / 2;
  for (let i = 0; i < half; i++) {
    const angle = pos / ((divisors?.[i] ?? 1) * theta ** ((2 * i) / rot));
    const c = Math.cos(angle) * mscale, s = Math.sin(angle) * mscale;
    const [a, b] = interleaved ? [2 * i, 2 * i + 1] : [i, i + half];
    out[a] = x[a] * c - x[b] * s;
    out[b] = x[b] * c + x[a] * s;
  }
  return out;
}

/**
 * The arithmetic a forward pass is done in: the embedding row of a token, and a linear layer applied
 * to every position at once (a quantized model scales each MatMul's input over the whole sequence).
 */
export interface DecoderArithmetic {
  embedRow(id: number): Vec;
  linear(lin: Linear, xs: Vec[]): Vec[];
  /**
   * Each head's share of the output projection `lin` applied to every position, [T][H][out], no bias:
   * by default the columns h·hd … of its weight on that head's slice of the input.
   */
  headShares?(lin: Linear, xs: Vec[], heads: number): Vec[][];
}

/** Head h's share of `lin` on x: the columns h·size … (h+1)·size of its [out, in] weight times x's slice, no bias. */
export function headShare(lin: Linear, x: ArrayLike<number>, h: number, size: number): Vec {
  const out = new Float64Array(lin.out);
  for (let o = 0; o < lin.out; o++) for (let i = h * size; i < (h + 1) * size; i++) out[o] += lin.w[o * lin.in + i] * x[i];
  return out;
}

/** Float64 throughout, from the float32 weights. */
export function floatArithmetic(w: DecoderWeights): DecoderArithmetic {
  const { d } = w.config;
  return { embedRow: (id) => Float64Array.from(w.embed.subarray(id * d, (id + 1) * d)), linear: (lin, xs) => xs.map((x) => apply(lin, x)) };
}

const softcap = (v: number, cap: number) => Math.tanh(v / cap) * cap;

/** What the model does to a head output z: ÷ logits_scaling (Granite), × logit_scale (Cohere), tanh(z / cap) · cap (Gemma 2). */
export function afterHead(t: FamilyTraits, z: number): number {
  let s = z;
  if (t.logitsScaling !== undefined) s /= t.logitsScaling;
  if (t.logitScale !== undefined) s *= t.logitScale;
  return t.finalSoftcap === undefined ? s : softcap(s, t.finalSoftcap);
}

/** Runs the decoder on one sequence of token ids (positions 0..T-1). */
export function referenceDecoderForward(w: DecoderWeights, ids: number[], arithmetic: DecoderArithmetic = floatArithmetic(w)): AttributionReference {
  const { embedRow, linear } = arithmetic;
  const c = w.config, t = w.traits;
  const { d, heads, kvHeads, vocab } = c;
  const hd = headDim(c), rot = rotaryDim(c, t);
  const T = ids.length;
  const norm = (x: Vec, n: Norm) => (t.norm.startsWith('layernorm') ? layerNorm(x, n.g, n.b, t.eps) : rmsNorm(x, n.g, t.eps, t.norm === 'rms-1p'));
  const preNorms = t.blockNorms !== 'post';
  const outputNorms = t.blockNorms === 'sandwich' || t.blockNorms === 'post';
  // Granite scales each branch before adding it to the residual.
  const toResidual = (branch: Vec) => (t.residualMultiplier === undefined ? branch : branch.map((v) => v * t.residualMultiplier!));
  let x: Vec[] = ids.map((id, pos) => {
    const v = embedRow(id);
    if (w.positions) for (let i = 0; i < d; i++) v[i] += w.positions[pos * d + i];
    // Gemma multiplies by √d rounded to the activations' dtype (float32 here).
    if (t.embedScale) {
      const decimals = 10 ** (t.embedScaleDecimals ?? 0);
      const scale = Math.fround(t.embedScaleDecimals === undefined ? Math.sqrt(d) : Math.round(Math.sqrt(d) * decimals) / decimals);
      return v.map((e) => e * scale);
    }
    return t.embeddingMultiplier === undefined ? v : v.map((e) => e * t.embeddingMultiplier!);
  });
  const residual: Vec[][] = [x.map((v) => v.slice())];
  // Sequential blocks only: block l's residual after its attention (parallel blocks have none).
  const mids: Vec[][] = [];
  const attnOut: Vec[][] = [], mlpOut: Vec[][] = [], headOut: Vec[][][] = [], attnBias: Vec[] = [];
  for (const [layer, b] of w.blocks.entries()) {
    // GPT-Neo's local layers see keys fewer than `window` positions back.
    const first = (i: number) => (isLocalLayer(t, layer) ? Math.max(0, i - t.localWindow! + 1) : 0);
    const scale = t.unscaledScores ? 1 : t.attentionMultiplier ?? 1 / Math.sqrt(t.queryPreAttnScalar ?? hd);
    const h1 = preNorms ? x.map((v) => norm(v, b.ln1)) : x;
    const head = (vec: Vec, h: number) => vec.subarray(h * hd, (h + 1) * hd);
    const rotate = rot > 0 && !w.positions && (t.ropeLayers?.[layer] ?? 1) === 1;
    // Gemma 3: local layers rotate with the config's base, global ones with their own.
    const theta = t.globalRopeTheta !== undefined && !isLocalLayer(t, layer) ? t.globalRopeTheta : c.ropeTheta;
    // Phi-3 LongRoPE: the long factors once the sequence is longer than the original context.
    const long = t.longRope !== undefined && T > t.longRope.original;
    const divisors = t.longRope && (long ? t.longRope.longFactor : t.longRope.shortFactor);
    const mscale = t.longRope ? (long ? t.longRope.longMscale : t.longRope.shortMscale) : 1;
    /** q or k at every position: projected, normed (whole, or per head), rotated per head. */
    const project = (lin: Linear, qkNorm: Norm | undefined, count: number) => linear(lin, h1).map((projected, pos) => {
      const y = t.qkNorm === 'whole' ? norm(projected, qkNorm!) : projected;
      for (let h = 0; h < count; h++) {
        if (t.qkNorm === 'head') y.set(norm(head(y, h), qkNorm!), h * hd);
        if (rotate) y.set(rotary(head(y, h), pos, rot, theta, t.interleavedRotary, divisors, mscale), h * hd);
      }
      return y;
    });
    const q = project(b.q, b.qNorm, heads);
    const k = project(b.k, b.kNorm, kvHeads);
    const vv = linear(b.v, h1);
    const ctx = Array.from({ length: T }, () => new Float64Array(heads * hd));
    for (let h = 0; h < heads; h++) {
      const kv = Math.floor(h / (heads / kvHeads)); // query head h reads KV head h / n_rep
      for (let i = 0; i < T; i++) {
        const scores: number[] = [];
        for (let j = first(i); j <= i; j++) {
          let dot = 0;
          for (let e = 0; e < hd; e++) dot += q[i][h * hd + e] * k[j][kv * hd + e];
          scores.push(t.attnSoftcap === undefined ? dot * scale : softcap(dot * scale, t.attnSoftcap));
        }
        const max = Math.max(...scores);
        const ex = scores.map((s) => Math.exp(s - max));
        const z = ex.reduce((a, s) => a + s, 0);
        for (let j = first(i); j <= i; j++) for (let e = 0; e < hd; e++) ctx[i][h * hd + e] += (ex[j - first(i)] / z) * vv[j][kv * hd + e];
      }
    }
    // What the attention branch adds: after any post-attention norm and residual multiplier.
    const attn = linear(b.o, ctx).map((y) => toResidual(outputNorms ? norm(y, b.postAttn!) : y));
    /** The MLP on every position at once, [T][d]. */
    const mlp = (vs: Vec[]) => {
      if (b.experts) return sparseMlp(vs);
      if (t.mlp === 'gelu-erf') return linear(b.down, linear(b.up, vs).map((u) => u.map(geluErf)));
      if (t.mlp === 'gelu-tanh') return linear(b.down, linear(b.up, vs).map((u) => u.map(geluTanh)));
      const act = t.mlp === 'swiglu' ? silu : geluTanh;
      const gate = linear(b.gate!, vs), up = linear(b.up, vs);
      return linear(b.down, gate.map((g, pos) => g.map((v, i) => act(v) * up[pos][i])));
    };
    /**
     * Qwen3-MoE's sparse MLP, [T][d]: each token's router softmax over the experts, its topK
     * largest kept (renormalized to sum 1 with normTopk), and the picked experts' SwiGLU outputs summed with those weights.
     */
    const sparseMlp = (vs: Vec[]) => {
      const { topK, normTopk } = t.moe!;
      const logits = linear(b.router!, vs);
      const outs = b.experts!.map((e) => {
        const gate = linear(e.gate, vs), up = linear(e.up, vs);
        return linear(e.down, gate.map((g, pos) => g.map((v, i) => silu(v) * up[pos][i])));
      });
      return vs.map((_, pos) => {
        const z = logits[pos];
        const max = Math.max(...z);
        const p = Array.from(z, (v) => Math.exp(v - max));
        const sum = p.reduce((a, v) => a + v, 0);
        const order = p.map((_, e) => e).sort((a, c) => p[c] - p[a]).slice(0, topK);
        const kept = order.reduce((a, e) => a + p[e], 0);
        const out = new Float64Array(d);
        for (const e of order) {
          const weight = normTopk ? p[e] / kept : p[e] / sum;
          for (let i = 0; i < d; i++) out[i] += weight * outs[e][pos][i];
        }
        return out;
      });
    };
    attnOut.push(attn);
    // Head h: the columns h·hd … of o_proj's [out, in] weight, applied to its slice of the context alone,
    // then Granite's residual multiplier (a post-attention norm has no per-head share: not linear).
    const shares = arithmetic.headShares?.(b.o, ctx, heads) ?? ctx.map((v) => Array.from({ length: heads }, (_, h) => headShare(b.o, v, h, hd)));
    headOut.push(shares.map((perHead) => perHead.map(toResidual)));
    attnBias.push(toResidual(b.o.b ? Float64Array.from(b.o.b) : new Float64Array(d)));
    if (t.parallel) {
      const m = mlp(x.map((v) => norm(v, t.sharedNorm ? b.ln1 : b.ln2)));
      mlpOut.push(m);
      x = x.map((v, i) => v.map((r, e) => r + attn[i][e] + m[i][e]));
    } else {
      const midBlock = x.map((v, i) => v.map((r, e) => r + attn[i][e]));
      mids.push(midBlock.map((v) => v.slice()));
      // What the MLP branch adds: after any post-feedforward norm and residual multiplier.
      const m = mlp(preNorms ? midBlock.map((v) => norm(v, b.ln2)) : midBlock).map((y) => toResidual(outputNorms ? norm(y, b.postMlp!) : y));
      mlpOut.push(m);
      x = midBlock.map((v, i) => v.map((r, e) => r + m[i][e]));
    }
    residual.push(x.map((v) => v.slice()));
  }
  const head = w.lmHead ?? w.embed;
  const finalGain = t.norm === 'rms-1p' ? w.finalNorm.g.map((g) => 1 + g) : w.finalNorm.g;
  return {
    residual,
    mid: mids,
    attnOut, mlpOut, headOut, attnBias,
    frozenNorm: (v, at) => frozenNormOf(v, at, finalGain, t.eps, t.norm.startsWith('layernorm')),
    normBias: w.finalNorm.b ? Float64Array.from(w.finalNorm.b) : new Float64Array(d),
    finalNorm: (v) => norm(v, w.finalNorm),
    unembed: (v) => {
      const out = new Float64Array(vocab);
      for (let tok = 0; tok < vocab; tok++) {
        let s = 0;
        for (let i = 0; i < d; i++) s += head[tok * d + i] * v[i];
        out[tok] = afterHead(t, s);
      }
      return out;
    },
  };
}
