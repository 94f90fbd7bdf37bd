// An independent forward pass (float64) of the Llama family and its kin, written from the
// architectures (Hugging Face's LlamaForCausalLM, Qwen2ForCausalLM, GemmaForCausalLM,
// GPTNeoXForCausalLM, GPTNeoForCausalLM), not from any graph: RMSNorm (and Gemma's x·(1 + w) with √d-scaled
// embeddings), LayerNorm, rotary embeddings over all or part of each head (rotate_half
// convention), grouped-query attention, SwiGLU / GeGLU / GELU MLPs, sequential or parallel
// residual, and GPT-Neo's learned positions, unscaled scores and local attention windows.
// Used only by the tests.
import { headDim, isLocalLayer, rotaryDim, type DecoderWeights, type Linear, type Norm } from '../fixtures/llama.js';
import type { ReferenceResult } from './gpt2.js';

type Vec = Float64Array;

/** x / rms(x) · w (Gemma: · (1 + w)), [d]. */
export function rmsNorm(x: Vec, gamma: Float32Array, eps: number, onePlus: boolean): Vec {
  let ms = 0;
  for (const v of x) ms += v * v;
  const inv = 1 / Math.sqrt(ms / x.length + eps);
  return x.map((v, i) => v * inv * (onePlus ? 1 + gamma[i] : gamma[i]));
}

/** (x − mean) / std · γ + β, [d]. */
export function layerNorm(x: Vec, gamma: Float32Array, beta: Float32Array, eps: number): Vec {
  let mean = 0;
  for (const v of x) mean += v;
  mean /= x.length;
  let variance = 0;
  for (const v of x) variance += (v - mean) ** 2;
  const inv = 1 / Math.sqrt(variance / x.length + eps);
  return x.map((v, i) => (v - mean) * inv * gamma[i] + beta[i]);
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

/** Rotates the first `rot` dims of a head vector at position `pos` (pairs i and i + rot/2). */
export function rotary(x: Vec, pos: number, rot: number, theta: number): Vec {
  const out = x.slice();
  const half = rot / 2;
  for (let i = 0; i < half; i++) {
    const angle = pos / theta ** ((2 * i) / rot);
    const c = Math.cos(angle), s = Math.sin(angle);
    out[i] = x[i] * c - x[i + half] * s;
    out[i + half] = x[i + half] * c + x[i] * s;
  }
  return out;
}

/** Runs the decoder on one sequence of token ids (positions 0..T-1). */
export function referenceDecoderForward(w: DecoderWeights, ids: number[]): ReferenceResult {
  const c = w.config, t = w.traits;
  const { d, heads, kvHeads, vocab } = c;
  const hd = headDim(c), rot = rotaryDim(c, t);
  const T = ids.length;
  const norm = (x: Vec, n: Norm) => (t.norm === 'layernorm' ? layerNorm(x, n.g, n.b!, t.eps) : rmsNorm(x, n.g, t.eps, t.norm === 'rms-1p'));
  let x: Vec[] = ids.map((id, pos) => {
    const v = Float64Array.from(w.embed.subarray(id * d, (id + 1) * d));
    if (w.positions) for (let i = 0; i < d; i++) v[i] += w.positions[pos * d + i];
    // Gemma multiplies by √d rounded to the activations' dtype (float32 here).
    return t.embedScale ? v.map((e) => e * Math.fround(Math.sqrt(d))) : v;
  });
  const residual: Vec[][] = [x.map((v) => v.slice())];
  // Sequential blocks only: block l's residual after its attention (parallel blocks have none).
  const mids: Vec[][] = [];
  for (const [layer, b] of w.blocks.entries()) {
    // GPT-Neo's local layers see keys fewer than `window` positions back.
    const first = (i: number) => (isLocalLayer(t, layer) ? Math.max(0, i - t.localWindow! + 1) : 0);
    const scale = t.unscaledScores ? 1 : 1 / Math.sqrt(hd);
    const h1 = x.map((v) => norm(v, b.ln1));
    const head = (vec: Vec, h: number) => vec.subarray(h * hd, (h + 1) * hd);
    const rotate = rot > 0 && !w.positions;
    const q = h1.map((v, pos) => { const y = apply(b.q, v); if (rotate) for (let h = 0; h < heads; h++) y.set(rotary(head(y, h), pos, rot, c.ropeTheta), h * hd); return y; });
    const k = h1.map((v, pos) => { const y = apply(b.k, v); if (rotate) for (let h = 0; h < kvHeads; h++) y.set(rotary(head(y, h), pos, rot, c.ropeTheta), h * hd); return y; });
    const vv = h1.map((v) => apply(b.v, v));
    const ctx = Array.from({ length: T }, () => new Float64Array(heads * hd));
    for (let h = 0; h < heads; h++) {
      const kv = Math.floor(h / (heads / kvHeads)); // query head h reads KV head h / n_rep
      for (let i = 0; i < T; i++) {
        const scores: number[] = [];
        for (let j = first(i); j <= i; j++) {
          let dot = 0;
          for (let e = 0; e < hd; e++) dot += q[i][h * hd + e] * k[j][kv * hd + e];
          scores.push(dot * scale);
        }
        const max = Math.max(...scores);
        const ex = scores.map((s) => Math.exp(s - max));
        const z = ex.reduce((a, s) => a + s, 0);
        for (let j = first(i); j <= i; j++) for (let e = 0; e < hd; e++) ctx[i][h * hd + e] += (ex[j - first(i)] / z) * vv[j][kv * hd + e];
      }
    }
    const attn = ctx.map((v) => apply(b.o, v));
    const mlp = (v: Vec) => {
      if (t.mlp === 'gelu-erf') return apply(b.down, apply(b.up, v).map(geluErf));
      if (t.mlp === 'gelu-tanh') return apply(b.down, apply(b.up, v).map(geluTanh));
      const act = t.mlp === 'swiglu' ? silu : geluTanh;
      const gate = apply(b.gate!, v), up = apply(b.up, v);
      return apply(b.down, gate.map((g, i) => act(g) * up[i]));
    };
    if (t.parallel) {
      x = x.map((v, i) => { const m = mlp(norm(v, b.ln2)); return v.map((r, e) => r + attn[i][e] + m[e]); });
    } else {
      const midBlock = x.map((v, i) => v.map((r, e) => r + attn[i][e]));
      mids.push(midBlock.map((v) => v.slice()));
      x = midBlock.map((v) => { const m = mlp(norm(v, b.ln2)); return v.map((r, e) => r + m[e]); });
    }
    residual.push(x.map((v) => v.slice()));
  }
  const head = w.lmHead ?? w.embed;
  return {
    residual,
    mid: mids,
    finalNorm: (v) => norm(v, w.finalNorm),
    unembed: (v) => {
      const out = new Float64Array(vocab);
      for (let tok = 0; tok < vocab; tok++) {
        let s = 0;
        for (let i = 0; i < d; i++) s += head[tok * d + i] * v[i];
        out[tok] = s;
      }
      return out;
    },
  };
}
