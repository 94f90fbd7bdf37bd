// An independent forward pass (float64) of the LayerNorm and hybrid families, written from the
// architectures (Hugging Face's PhiForCausalLM, OPTForCausalLM, BloomForCausalLM,
// GPTNeoXForCausalLM, Lfm2ForCausalLM) and reading the hub's state-dict names, not any graph:
// Phi-2's parallel block off one LayerNorm with partial rotary and a biased head; OPT's learned
// positions (offset 2), ReLU MLP and project_in/out; BLOOM's embedding LayerNorm, ALiBi and
// per-head fused q/k/v; GPT-NeoX's parallel residual; LFM2's causal short convolutions, per-head
// q/k RMSNorm and final `embedding_norm`. Used only by the tests.
import type { HubModel } from '../fixtures/ln-families.js';
import { frozenNormOf, type AttributionReference } from './gpt2.js';
import { apply, geluErf, geluTanh, layerNorm, rmsNorm, rotary, silu } from './llama.js';

type Vec = Float64Array;

/**
 * Causal softmax attention over T positions: q [T][heads·hd], k and v [T][kvHeads·hd] (query
 * head h reads KV head h / (heads / kvHeads)); `bias(h, i, j)` is added to each score. [T][heads·hd].
 */
function attention(q: Vec[], k: Vec[], v: Vec[], heads: number, kvHeads: number, hd: number, bias: (h: number, i: number, j: number) => number = () => 0): Vec[] {
  const T = q.length;
  const ctx = Array.from({ length: T }, () => new Float64Array(heads * hd));
  for (let h = 0; h < heads; h++) {
    const kv = Math.floor(h / (heads / kvHeads));
    for (let i = 0; i < T; i++) {
      const scores: number[] = [];
      for (let j = 0; j <= i; j++) {
        let dot = 0;
        for (let e = 0; e < hd; e++) dot += q[i][h * hd + e] * k[j][kv * hd + e];
        scores.push(dot / Math.sqrt(hd) + bias(h, i, j));
      }
      const max = Math.max(...scores);
      const ex = scores.map((s) => Math.exp(s - max));
      const z = ex.reduce((a, s) => a + s, 0);
      for (let j = 0; j <= i; j++) for (let e = 0; e < hd; e++) ctx[i][h * hd + e] += (ex[j] / z) * v[j][kv * hd + e];
    }
  }
  return ctx;
}

/** Applies `f` to each head's [hd] slice of a [heads·hd] vector. */
function perHead(x: Vec, hd: number, f: (head: Vec) => Vec): Vec {
  const out = new Float64Array(x.length);
  for (let h = 0; h < x.length / hd; h++) out.set(f(x.subarray(h * hd, (h + 1) * hd)), h * hd);
  return out;
}

/** Part `which` (0: q, 1: k, 2: v) of a fused projection laid out [heads, 3, hd], as [heads·hd]. */
function headInterleaved(qkv: Vec, hd: number, which: number): Vec {
  const out = new Float64Array(qkv.length / 3);
  for (let e = 0; e < out.length; e++) out[e] = qkv[Math.floor(e / hd) * 3 * hd + which * hd + (e % hd)];
  return out;
}

/** ALiBi slopes of modeling_bloom: a geometric series for the largest power of two ≤ heads, then every other term of the next. */
export function alibiSlopes(heads: number): number[] {
  const closest = 2 ** Math.floor(Math.log2(heads));
  const base = 2 ** -(2 ** -(Math.log2(closest) - 3));
  const slopes = Array.from({ length: closest }, (_, i) => base ** (i + 1));
  const extraBase = 2 ** -(2 ** -(Math.log2(2 * closest) - 3));
  for (let i = 0; i < Math.min(closest, heads - closest); i++) slopes.push(extraBase ** (2 * i + 1));
  return slopes;
}

/**
 * How a forward pass applies a linear layer: `weight` [out, in] and `bias` [out] by their tensor names
 * (the head by its weight's, the embedding table's where tied), to the rows `xs` [T][in] of one tensor
 * (a quantized variant quantizes them together); returns [T][out].
 */
export type LnLinear = (weight: string, bias: string | undefined, xs: Vec[]) => Vec[];

/**
 * How a forward pass applies a causal depthwise convolution (LFM2's): `weight` [d, 1, width] by tensor
 * name over the rows `xs` [T][d] of one tensor, history before the first row zero; returns [T][d].
 */
export type LnConv = (weight: string, xs: Vec[], width: number) => Vec[];

/** out[t][e] = Σ_j w[e, j] · x[t − (width − 1) + j][e], with `at(t, e)` giving x (and `tap(e, j)` w). */
export function causalDepthwise(T: number, d: number, width: number, tap: (e: number, j: number) => number, at: (t: number, e: number) => number): Vec[] {
  return Array.from({ length: T }, (_, t) => {
    const y = new Float64Array(d);
    for (let e = 0; e < d; e++) for (let j = 0; j < width; j++) { const src = t - (width - 1) + j; if (src >= 0) y[e] += tap(e, j) * at(src, e); }
    return y;
  });
}

/** The convolutions of `model` in float64. */
export function floatConv(model: HubModel): LnConv {
  return (weight, xs, width) => {
    const w = model.tensors.get(weight)!.data;
    return causalDepthwise(xs.length, xs[0].length, width, (e, j) => w[e * width + j], (t, e) => xs[t][e]);
  };
}

/** The linear layers of `model` in float64. */
export function floatLinear(model: HubModel): LnLinear {
  return (weight, bias, xs) => {
    const w = model.tensors.get(weight), b = bias === undefined ? undefined : model.tensors.get(bias);
    if (!w || (bias !== undefined && !b)) throw new Error(`no tensor ${w ? bias : weight}`);
    const [out, inDim] = w.shape;
    return xs.map((x) => apply({ w: w.data, b: b?.data, out, in: inDim }, x));
  };
}

/** The head's weight [V, d] and bias [V] by tensor name: the embedding table where tied. Throws for a family it does not know. */
export function lnHead(model: HubModel): { weight: string; bias?: string } {
  switch (model.config.model_type) {
    case 'phi': return { weight: 'lm_head.weight', bias: 'lm_head.bias' };
    case 'opt': return { weight: 'model.decoder.embed_tokens.weight' };
    case 'bloom': return { weight: 'transformer.word_embeddings.weight' };
    case 'gpt_neox': return { weight: 'embed_out.weight' };
    case 'lfm2': return { weight: 'model.embed_tokens.weight' };
    default: throw new Error(`no reference for ${String(model.config.model_type)}`);
  }
}

/**
 * Runs a family's tiny model on one sequence of token ids (positions 0..T-1), its linear layers
 * applied by `linear` and LFM2's convolutions by `conv` (float64 by default). Throws for a family it does not know.
 */
export function referenceLnForward(model: HubModel, ids: number[], linear: LnLinear = floatLinear(model), conv: LnConv = floatConv(model)): AttributionReference {
  const c = model.config;
  const num = (name: string) => Number(c[name]);
  const get = (name: string) => {
    const t = model.tensors.get(name);
    if (!t) throw new Error(`no tensor ${name}`);
    return t.data;
  };
  const has = (name: string) => model.tensors.has(name);
  /** The linear `name` on every row of one tensor. */
  const lin = (name: string, xs: Vec[]) => linear(`${name}.weight`, has(`${name}.bias`) ? `${name}.bias` : undefined, xs);
  const ln = (name: string, eps: number) => (x: Vec) => layerNorm(x, get(`${name}.weight`), get(`${name}.bias`), eps);
  const rms = (name: string, eps: number) => (x: Vec) => rmsNorm(x, get(`${name}.weight`), eps, false);
  const rows = (table: string, id: number, width: number) => Float64Array.from(get(table).subarray(id * width, (id + 1) * width));
  const { weight: headWeight, bias: headBias } = lnHead(model);
  const head = (x: Vec) => linear(headWeight, headBias, [x])[0];
  const add = (...vs: Vec[]) => vs[0].map((_, e) => vs.reduce((s, v) => s + v[e], 0));
  const d = num('hidden_size');
  const residual: Vec[][] = [];
  const mid: Vec[][] = [];
  let x: Vec[];
  let finalNorm: (v: Vec) => Vec;
  let unembed: (v: Vec) => Vec;
  // Attribution (phi, opt, bloom): what each branch adds, each head's share of it, the final LayerNorm's name.
  const attnOut: Vec[][] = [], mlpOut: Vec[][] = [], headOut: Vec[][][] = [], attnBias: Vec[] = [];
  let finalLn: string | undefined;
  /** Query head h's share of the output projection `name` at every position: its columns h·hd … on its slice of ctx. */
  const attend = (name: string, ctx: Vec[], heads: number, hd: number) => {
    const w = get(`${name}.weight`);
    headOut.push(ctx.map((v) => Array.from({ length: heads }, (_, h) => {
      const out = new Float64Array(d);
      for (let o = 0; o < d; o++) for (let i = h * hd; i < (h + 1) * hd; i++) out[o] += w[o * heads * hd + i] * v[i];
      return out;
    })));
    attnBias.push(has(`${name}.bias`) ? Float64Array.from(get(`${name}.bias`)) : new Float64Array(d));
    const out = lin(name, ctx);
    attnOut.push(out);
    return out;
  };

  switch (c.model_type) {
    case 'phi': {
      const heads = num('num_attention_heads'), hd = d / heads, rot = Math.floor(hd * num('partial_rotary_factor')), eps = num('layer_norm_eps');
      x = ids.map((id) => rows('model.embed_tokens.weight', id, d));
      residual.push(x);
      for (let l = 0; l < num('num_hidden_layers'); l++) {
        const p = `model.layers.${l}`;
        const h = x.map(ln(`${p}.input_layernorm`, eps));
        const rotate = (v: Vec, pos: number) => perHead(v, hd, (hv) => rotary(hv, pos, rot, num('rope_theta')));
        const q = lin(`${p}.self_attn.q_proj`, h).map(rotate);
        const k = lin(`${p}.self_attn.k_proj`, h).map(rotate);
        const vv = lin(`${p}.self_attn.v_proj`, h);
        const attn = attend(`${p}.self_attn.dense`, attention(q, k, vv, heads, heads, hd), heads, hd);
        const mlp = lin(`${p}.mlp.fc2`, lin(`${p}.mlp.fc1`, h).map((v) => v.map(geluTanh)));
        mlpOut.push(mlp);
        x = x.map((r, i) => add(r, attn[i], mlp[i]));
        residual.push(x);
      }
      finalNorm = ln('model.final_layernorm', eps);
      finalLn = 'model.final_layernorm';
      unembed = head;
      break;
    }
    case 'opt': {
      const heads = num('num_attention_heads'), hd = d / heads, proj = num('word_embed_proj_dim'), eps = 1e-5;
      const projected = proj !== d;
      // Learned positions start at row 2 (OPT's offset).
      const tokens = ids.map((id) => rows('model.decoder.embed_tokens.weight', id, proj));
      x = (projected ? lin('model.decoder.project_in', tokens) : tokens).map((e, pos) => add(e, rows('model.decoder.embed_positions.weight', pos + 2, d)));
      residual.push(x);
      for (let l = 0; l < num('num_hidden_layers'); l++) {
        const p = `model.decoder.layers.${l}`;
        const h = x.map(ln(`${p}.self_attn_layer_norm`, eps));
        const ctx = attention(lin(`${p}.self_attn.q_proj`, h), lin(`${p}.self_attn.k_proj`, h), lin(`${p}.self_attn.v_proj`, h), heads, heads, hd);
        const attn = attend(`${p}.self_attn.out_proj`, ctx, heads, hd);
        const m = x.map((r, i) => add(r, attn[i]));
        mid.push(m);
        const mlp = lin(`${p}.fc2`, lin(`${p}.fc1`, m.map(ln(`${p}.final_layer_norm`, eps))).map((v) => v.map((e) => Math.max(0, e))));
        mlpOut.push(mlp);
        x = m.map((r, i) => add(r, mlp[i]));
        residual.push(x);
      }
      finalNorm = ln('model.decoder.final_layer_norm', eps);
      finalLn = 'model.decoder.final_layer_norm';
      unembed = projected ? (v) => head(lin('model.decoder.project_out', [v])[0]) : head;
      break;
    }
    case 'bloom': {
      const heads = num('n_head'), hd = d / heads, eps = num('layer_norm_epsilon');
      const slopes = alibiSlopes(heads);
      // BLOOM's residual stream starts after the embedding LayerNorm.
      x = ids.map((id) => ln('transformer.word_embeddings_layernorm', eps)(rows('transformer.word_embeddings.weight', id, d)));
      residual.push(x);
      for (let l = 0; l < num('n_layer'); l++) {
        const p = `transformer.h.${l}`;
        // query_key_value's output is laid out [heads, (q, k, v), hd].
        const qkv = lin(`${p}.self_attention.query_key_value`, x.map(ln(`${p}.input_layernorm`, eps)));
        const part = (which: number) => qkv.map((v) => headInterleaved(v, hd, which));
        const ctx = attention(part(0), part(1), part(2), heads, heads, hd, (h, _i, j) => slopes[h] * j);
        const attn = attend(`${p}.self_attention.dense`, ctx, heads, hd);
        const m = x.map((r, i) => add(r, attn[i]));
        mid.push(m);
        const gelu = (v: number) => v * 0.5 * (1 + Math.tanh(0.79788456 * v * (1 + 0.044715 * v * v)));
        const mlp = lin(`${p}.mlp.dense_4h_to_h`, lin(`${p}.mlp.dense_h_to_4h`, m.map(ln(`${p}.post_attention_layernorm`, eps))).map((v) => v.map(gelu)));
        mlpOut.push(mlp);
        x = m.map((r, i) => add(r, mlp[i]));
        residual.push(x);
      }
      finalNorm = ln('transformer.ln_f', eps);
      finalLn = 'transformer.ln_f';
      unembed = head;
      break;
    }
    case 'gpt_neox': {
      const heads = num('num_attention_heads'), hd = d / heads, rot = Math.floor(hd * num('rotary_pct')), eps = num('layer_norm_eps');
      x = ids.map((id) => rows('gpt_neox.embed_in.weight', id, d));
      residual.push(x);
      for (let l = 0; l < num('num_hidden_layers'); l++) {
        const p = `gpt_neox.layers.${l}`;
        // query_key_value's output is laid out [heads, (q, k, v) · hd].
        const qkv = lin(`${p}.attention.query_key_value`, x.map(ln(`${p}.input_layernorm`, eps)));
        const rotate = (v: Vec, pos: number) => perHead(v, hd, (hv) => rotary(hv, pos, rot, num('rotary_emb_base')));
        const q = qkv.map((v, pos) => rotate(headInterleaved(v, hd, 0), pos));
        const k = qkv.map((v, pos) => rotate(headInterleaved(v, hd, 1), pos));
        const vv = qkv.map((v) => headInterleaved(v, hd, 2));
        const attn = lin(`${p}.attention.dense`, attention(q, k, vv, heads, heads, hd));
        const mlp = lin(`${p}.mlp.dense_4h_to_h`, lin(`${p}.mlp.dense_h_to_4h`, x.map(ln(`${p}.post_attention_layernorm`, eps))).map((v) => v.map(geluErf)));
        x = x.map((r, i) => add(r, attn[i], mlp[i]));
        residual.push(x);
      }
      finalNorm = ln('gpt_neox.final_layer_norm', eps);
      unembed = head;
      break;
    }
    case 'lfm2': {
      const heads = num('num_attention_heads'), kvHeads = num('num_key_value_heads'), hd = d / heads, eps = num('norm_eps'), L = num('conv_L_cache');
      x = ids.map((id) => rows('model.embed_tokens.weight', id, d));
      residual.push(x);
      (c.layer_types as string[]).forEach((kind, l) => {
        const p = `model.layers.${l}`;
        const h = x.map(rms(`${p}.operator_norm`, eps));
        let out: Vec[];
        if (kind === 'full_attention') {
          const rotate = (v: Vec, pos: number, norm: string) => perHead(v, hd, (hv) => rotary(rms(norm, eps)(hv), pos, hd, num('rope_theta')));
          const q = lin(`${p}.self_attn.q_proj`, h).map((v, pos) => rotate(v, pos, `${p}.self_attn.q_layernorm`));
          const k = lin(`${p}.self_attn.k_proj`, h).map((v, pos) => rotate(v, pos, `${p}.self_attn.k_layernorm`));
          const vv = lin(`${p}.self_attn.v_proj`, h);
          out = lin(`${p}.self_attn.out_proj`, attention(q, k, vv, heads, kvHeads, hd));
        } else {
          // The gated short convolution: B ⊙ x, a causal depthwise convolution over the last L positions, then C ⊙ ·.
          const bcx = lin(`${p}.conv.in_proj`, h);
          const bx = bcx.map((v) => v.subarray(0, d).map((b, e) => b * v[2 * d + e]));
          const convolved = conv(`${p}.conv.conv.weight`, bx, L);
          out = lin(`${p}.conv.out_proj`, bcx.map((v, t) => convolved[t].map((s, e) => v[d + e] * s)));
        }
        const m = x.map((r, i) => add(r, out[i]));
        mid.push(m);
        const n = m.map(rms(`${p}.ffn_norm`, eps));
        const gate = lin(`${p}.feed_forward.w1`, n), up = lin(`${p}.feed_forward.w3`, n);
        const ffn = lin(`${p}.feed_forward.w2`, gate.map((g, i) => g.map((v, e) => silu(v) * up[i][e])));
        x = m.map((r, i) => add(r, ffn[i]));
        residual.push(x);
      });
      finalNorm = rms('model.embedding_norm', eps);
      unembed = head;
      break;
    }
    default:
      throw new Error(`no reference for ${String(c.model_type)}`);
  }
  const lnEps = c.model_type === 'opt' ? 1e-5 : num(c.model_type === 'bloom' ? 'layer_norm_epsilon' : 'layer_norm_eps');
  return {
    residual, mid, finalNorm, unembed, attnOut, mlpOut, headOut, attnBias,
    frozenNorm: (v, at) => {
      if (!finalLn) throw new Error(`no attribution reference for ${String(c.model_type)}`);
      return frozenNormOf(v, at, get(`${finalLn}.weight`), lnEps, true);
    },
    normBias: finalLn ? Float64Array.from(get(`${finalLn}.bias`)) : new Float64Array(d),
  };
}
