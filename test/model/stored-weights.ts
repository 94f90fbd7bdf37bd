// The weights a dtype variant file holds, as float arrays for the float64 reference forward passes:
// float16-rounded (fp16, q4f16), 4-bit blockwise (q4) and 8-bit per-tensor (q8, uint8) values
// dequantized, rebuilt with the fixtures' own quantizers (test/fixtures/variants.ts). A lens row of a
// variant is then compared with the reference on these weights, so what remains is the arithmetic of
// the variant (float16 or quantized activations), which error bounds below the tests' tolerances cover.
import type { Gpt2Weights } from '../fixtures/gpt2.js';
import { VOCAB } from '../fixtures/gpt2.js';
import { transpose, type DecoderWeights, type Linear, type Norm } from '../fixtures/llama.js';
import { GENAI_FORMS } from '../fixtures/genai.js';
import type { HubModel } from '../fixtures/ln-families.js';
import { floatLinear, type LnLinear } from '../reference/layernorm-families.js';
import { apply } from '../reference/llama.js';
import { BNB4, BNB4_CODES, floatToHalfBits, quantizeBlockwise4, quantizeBnb4, quantizePerTensor, type Bnb4Type, type WeightType } from '../fixtures/variants.js';

/** The value of IEEE half bits `h`. */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** float16 unit roundoff: round to nearest moves a value by at most this much relative to it (½ ulp). */
export const HALF_ROUNDOFF = 2 ** -11;

/** Values [n] as the float16 converter stores them: magnitudes clamped into [1e-7, 1e4], rounded to half. */
export function roundToHalf(values: Float32Array): Float32Array {
  return Float32Array.from(values, (v) => {
    const magnitude = Math.min(1e4, Math.max(1e-7, Math.abs(v)));
    return v === 0 || !Number.isFinite(v) ? v : halfToFloat(floatToHalfBits(Math.sign(v) * magnitude));
  });
}

/** A copy of `weights` with every float array put through `f` (the config and traits kept). */
function mapArrays<T>(weights: T, f: (a: Float32Array) => Float32Array): T {
  if (weights instanceof Float32Array) return f(weights) as T;
  if (Array.isArray(weights)) return weights.map((v) => mapArrays(v, f)) as T;
  if (weights && typeof weights === 'object') {
    return Object.fromEntries(Object.entries(weights).map(([k, v]) => [k, k === 'config' || k === 'traits' ? v : mapArrays(v, f)])) as T;
  }
  return weights;
}

/** B [K, N] through MatMul4BitsQuantizer's symmetric blocks of 32 along K and back: (q − 8) · scale, the scale rounded to half for q4f16. */
function dequantizedQ4(b: Float32Array, K: number, N: number, halfScales: boolean): Float32Array {
  const blockSize = 32, blocks = Math.ceil(K / blockSize);
  const { packed, scales } = quantizeBlockwise4(b, K, N, blockSize, true);
  const scale = halfScales ? roundToHalf(scales) : scales;
  const out = new Float32Array(K * N);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const byte = packed[n * blocks * (blockSize / 2) + (k >> 1)];
      const q = k & 1 ? byte >> 4 : byte & 0xf;
      out[k * N + n] = (q - 8) * scale[n * blocks + Math.floor(k / blockSize)];
    }
  }
  return out;
}

/** A [rows, cols] matrix stored transposed (as the graph's MatMul B) through the 4-bit quantizer and back, in its own layout. */
function q4Transposed(w: Float32Array, rows: number, cols: number, halfScales: boolean): Float32Array {
  return transpose(dequantizedQ4(transpose(w, rows, cols), cols, rows, halfScales), cols, rows);
}

/**
 * A linear's weight W [out, in] (torch's layout, which is the transposed MatMul B the bnb4 quantizer
 * flattens) through MatMulBnb4Quantizer's NF4 blocks of 64 and back: code value · block absmax, in float32.
 */
export function bnb4RoundTrip(w: Float32Array, out: number, inDim: number, type: Bnb4Type = 1, blockSize = 64): Float32Array {
  const { packed, absmax } = quantizeBnb4(transpose(w, out, inDim), inDim, out, blockSize, type);
  return Float32Array.from(w, (_, i) => Math.fround(BNB4_CODES[type][i & 1 ? packed[i >> 1] & 0xf : packed[i >> 1] >> 4] * absmax[Math.floor(i / blockSize)]));
}

/** Per-tensor 8-bit values through quantize_dynamic and back: (q − zero point) · scale. */
function dequantized8(values: Float32Array, type: WeightType, symmetric: boolean): Float32Array {
  const { data, scale, zeroPoint } = quantizePerTensor(values, type, symmetric);
  return Float32Array.from(data, (q) => (q - zeroPoint) * scale);
}

/** The variant dtypes whose stored weights these functions rebuild. */
export type StoredDtype = 'fp16' | 'q8' | 'uint8' | 'q4' | 'q4f16' | 'bnb4';

/**
 * A GPT-2 fixture's weights as the `dtype` variant stores them. fp16: every float rounded to half.
 * q4: only MatMul weights are quantized, and these fixtures' Conv1D layers are Gemm, so only the head
 * (its own [d, V] copy of wteᵀ; the embedding Gather keeps wte). q8/uint8: Gemm is rewritten to MatMul
 * first, so every linear (int8 symmetric or uint8 asymmetric) and the head; the Gather tables wte and
 * wpe uint8 asymmetric. Returned with `lmHead` set, since the head no longer equals the embedding.
 */
export function gpt2AsStored(w: Gpt2Weights, dtype: StoredDtype): Gpt2Weights {
  const { d } = w.config;
  const head = w.lmHead ?? w.wte;
  if (dtype === 'fp16') return mapArrays({ ...w, lmHead: head }, roundToHalf);
  if (dtype === 'q4' || dtype === 'q4f16') {
    // q4f16 rounds the other floats (and the scales) to half; the 4-bit values come from the float32 weights.
    const rest = dtype === 'q4f16' ? mapArrays(w, roundToHalf) : w;
    return { ...rest, lmHead: q4Transposed(head, VOCAB, d, dtype === 'q4f16') };
  }
  if (dtype === 'bnb4') throw new Error('no bnb4 GPT-2 fixture: its variant test is on the Llama family');
  const type: WeightType = dtype === 'q8' ? 'int8' : 'uint8';
  const linear = (m: Float32Array) => dequantized8(m, type, type === 'int8');
  return {
    ...w,
    wte: dequantized8(w.wte, 'uint8', false), wpe: dequantized8(w.wpe, 'uint8', false),
    blocks: w.blocks.map((b) => ({ ...b, attnW: linear(b.attnW), projW: linear(b.projW), fcW: linear(b.fcW), fc2W: linear(b.fc2W) })),
    lmHead: transpose(linear(transpose(head, VOCAB, d)), d, VOCAB),
  };
}

/**
 * A decoder fixture's weights as the fp16, q4, q4f16 or bnb4 variant stores them: fp16 rounds every
 * float (the norms' gains, the rotary frequencies and the head included); q4 and bnb4 quantize every
 * linear (one MatMul B [in, out] each, K = in) and the head, not the embedding Gather. Gemma's gains
 * in the float16 dtypes: half(fround(1 + w)), the folded sum rounded (gemmaGainsAsStored).
 */
export function decoderAsStored(w: DecoderWeights, dtype: 'fp16' | 'q4' | 'q4f16' | 'bnb4'): DecoderWeights {
  const { d, vocab } = w.config;
  const head = w.lmHead ?? w.embed;
  if (dtype === 'fp16') return gemmaGainsAsStored(mapArrays({ ...w, lmHead: head }, roundToHalf), w);
  const half = dtype === 'q4f16';
  const rest = half ? gemmaGainsAsStored(mapArrays(w, roundToHalf), w) : w;
  const stored = dtype === 'bnb4' ? bnb4RoundTrip : (m: Float32Array, rows: number, cols: number) => q4Transposed(m, rows, cols, half);
  const lin = (l: Linear | undefined): Linear | undefined => l && { ...l, w: stored(l.w, l.out, l.in) };
  return {
    ...rest,
    blocks: w.blocks.map((b, i) => ({ ...rest.blocks[i], q: lin(b.q)!, k: lin(b.k)!, v: lin(b.v)!, o: lin(b.o)!, gate: lin(b.gate), up: lin(b.up)!, down: lin(b.down)! })),
    lmHead: stored(head, vocab, d),
  };
}

/** A genai builder fixture's float32 weights as `form` stores them: q4 linears and head dequantized; a shared embedding is the head. */
export function genaiAsStored(w: DecoderWeights, form: string): DecoderWeights {
  if (!GENAI_FORMS[form].q4) return w;
  const stored = decoderAsStored(w, 'q4');
  return GENAI_FORMS[form].sharedEmbeddings ? { ...stored, embed: stored.lmHead! } : stored;
}

/** A LayerNorm-family model as a variant stores it, for referenceLnForward(model, ids, linear). */
export interface StoredLn {
  /** The tensors the graph reads directly (norms, biases, embedding tables, LFM2's convolution). */
  model: HubModel;
  /** The linear layers (and the head) as the variant's MatMuls compute them. */
  linear: LnLinear;
  /** The stored weight [out, in] of a linear by tensor name (the head's: its weight's, or the tied table's). */
  weight(name: string): Float32Array;
  /** The weights quantized so far (by tensor name), to count against the file's quantized MatMuls. */
  quantized: Set<string>;
}

/**
 * A LayerNorm-family hub model as its fp16 or q4 variant stores it. fp16: every tensor rounded to half.
 * q4: each linear the export computes with MatMul (B = Wᵀ, K = in) through MatMul4BitsQuantizer's
 * symmetric blocks of 32 and back, the head a separate copy of a tied table (the Gather keeps the
 * float table); `notMatMul` names the weights exported otherwise (OPT's fc1 and fc2 are Gemm, which
 * the quantizer leaves in float32).
 */
export function lnAsStored(hub: HubModel, dtype: 'fp16' | 'q4', notMatMul: ReadonlySet<string> = new Set()): StoredLn {
  const quantized = new Set<string>();
  if (dtype === 'fp16') {
    const model: HubModel = { config: hub.config, tensors: new Map([...hub.tensors].map(([name, t]) => [name, { ...t, data: roundToHalf(t.data) }])) };
    return { model, linear: floatLinear(model), weight: (name) => model.tensors.get(name)!.data, quantized };
  }
  const cache = new Map<string, Float32Array>();
  const weight = (name: string) => {
    const t = hub.tensors.get(name);
    if (!t) throw new Error(`no tensor ${name}`);
    if (notMatMul.has(name)) return t.data;
    if (!cache.has(name)) { cache.set(name, q4Transposed(t.data, t.shape[0], t.shape[1], false)); quantized.add(name); }
    return cache.get(name)!;
  };
  const linear: LnLinear = (name, bias, xs) => {
    const [out, inDim] = hub.tensors.get(name)!.shape;
    const lin = { w: weight(name), b: bias === undefined ? undefined : hub.tensors.get(bias)!.data, out, in: inDim };
    return xs.map((x) => apply(lin, x));
  };
  return { model: hub, linear, weight, quantized };
}

/**
 * Gemma's norms multiply by 1 + w, and both exporters store that sum as one float32 initializer
 * (torch.onnx folds the Add into `onnx::Mul_N`; the hand-built fixtures write `weight_plus_one`),
 * which the float16 converter then rounds: the stored gain is half(fround(1 + w)), not 1 + half(w).
 * `halved` is `source` with every float rounded to half; returns it with each norm's w replaced by
 * half(fround(1 + w)) − 1 (exact in float32: a multiple of 2^-11 below 1 in magnitude), so that the
 * reference's 1 + w is the stored value. Other families' weights are returned as they are.
 */
function gemmaGainsAsStored(halved: DecoderWeights, source: DecoderWeights): DecoderWeights {
  if (source.traits.norm !== 'rms-1p') return halved;
  const gain = (n: Norm): Norm => ({ ...n, g: Float32Array.from(roundToHalf(Float32Array.from(n.g, (g) => 1 + g)), (s) => s - 1) });
  const maybe = (n: Norm | undefined) => n && gain(n);
  return {
    ...halved,
    finalNorm: gain(source.finalNorm),
    blocks: source.blocks.map((b, i) => ({
      ...halved.blocks[i], ln1: gain(b.ln1), ln2: gain(b.ln2), postAttn: maybe(b.postAttn), postMlp: maybe(b.postMlp), qNorm: maybe(b.qNorm), kNorm: maybe(b.kNorm),
    })),
  };
}

/**
 * Scales of a head row's error, from the head's input x [d] and the head W [V, d]:
 * `products` = max_j Σ_k |W_jk x_k| (a logit's error when every x_k moves by a relative ε is at most
 * ε · products), and `quantStep` = ½ · (max(0, max x) − min(0, min x)) / 255 · max_j Σ_k |W_jk| (the
 * most DynamicQuantizeLinear's uint8 rounding of x, half a step per element, moves a logit).
 */
export function headErrorScales(x: ArrayLike<number>, head: Float32Array, vocab: number): { products: number; quantStep: number } {
  const d = x.length;
  let lo = 0, hi = 0;
  for (let k = 0; k < d; k++) { lo = Math.min(lo, x[k]); hi = Math.max(hi, x[k]); }
  let products = 0, rowSum = 0;
  for (let j = 0; j < vocab; j++) {
    let p = 0, s = 0;
    for (let k = 0; k < d; k++) { const w = Math.abs(head[j * d + k]); p += w * Math.abs(x[k]); s += w; }
    products = Math.max(products, p);
    rowSum = Math.max(rowSum, s);
  }
  return { products, quantStep: ((hi - lo) / 255 / 2) * rowSum };
}

/**
 * How many u a head W [V, d] that sums in float16 may move a logit by, reading x [d]: max_j of
 * halfSumMass of row j's terms, each column's kernel by its index (the last V mod 8 are tail columns).
 */
export function headHalfSums(x: ArrayLike<number>, head: Float32Array, vocab: number): number {
  const d = x.length;
  const terms = new Float64Array(d);
  let most = 0;
  for (let j = 0; j < vocab; j++) {
    for (let k = 0; k < d; k++) terms[k] = head[j * d + k] * x[k];
    most = Math.max(most, halfSumMass(terms, j >= vocab - (vocab % 8)));
  }
  return most;
}

/**
 * Σ |every value a float16 MatMulNBits rounds| for one output from its terms w_k·x_k [K], so that
 * u times it bounds the output's error to first order in u (kernel-probes.ts, halfSummedNBits, has the
 * kernel): each weight is rounded to half (|w_k x_k|), and then, in a column of a full group of 8, each
 * fused step acc = fma(x_k, w_k, acc) rounds the running sum (|S_k|, k = 1 … K); in one of the last N
 * mod 8 (`tail`) columns, each product, each pair, four and eight of them and each new acc is rounded.
 */
export function halfSumMass(terms: ArrayLike<number>, tail: boolean): number {
  const K = terms.length;
  let mass = 0, acc = 0;
  for (let k = 0; k < K; k++) mass += Math.abs(terms[k]);
  if (!tail) {
    for (let k = 0; k < K; k++) { acc += terms[k]; mass += Math.abs(acc); }
    return mass;
  }
  // Chunks of 8, then what is left in one chunk each of 4, 2 and 1, each summed as a tree (every
  // level rounded) before it joins acc.
  let k = 0;
  const chunk = (width: number) => {
    let level = Array.from({ length: width }, (_, i) => terms[k + i]);
    for (;;) {
      mass += level.reduce((m, t) => m + Math.abs(t), 0);
      if (level.length === 1) break;
      level = level.filter((_, i) => i % 2 === 0).map((t, i) => t + level[2 * i + 1]);
    }
    acc += level[0];
    mass += Math.abs(acc);
    k += width;
  };
  while (k + 8 <= K) chunk(8);
  for (const width of [4, 2, 1]) if (K & width) chunk(width);
  return mass;
}

/** float32 unit roundoff. */
const FLOAT32_ROUNDOFF = 2 ** -24;
/** float32 arithmetic against float64 on these tiny models, before the head (the parity tests' tolerance). */
const FLOAT32_TOL = 1e-4;

/**
 * The most a lens logit of the `dtype` variant may differ from the float64 reference on the weights as
 * the variant stores them, for a row read after `layer` blocks whose head input (normed, or raw) is
 * x [d], the head W [V, d] being the stored one. Throws on another dtype.
 * - q4: the same dequantized weights in float32: the parity tolerance, plus the head's float32 dot
 *   product (at most d · 2^-24 · max_j Σ_k |W_jk x_k|; raw rows have logits up to ±90). Added to the others too.
 * - fp16, q4f16: an error budget of float16 roundings, each moving a value by at most u = 2^-11 of
 *   itself, so a logit by at most u · max_j Σ_k |W_jk x_k|: the head's input and its output are
 *   rounded (2), and each block adds two rounded sub-layer outputs to the residual the head reads (2
 *   per block; the norm scales the residual and its error alike). With `halfSums` (a q4f16 head whose
 *   MatMulNBits sums in float16, as on arm64: kernel-probes.ts), the head's output rounding becomes
 *   the rounding of its weights and of every partial sum (headHalfSums).
 * - q8, uint8: DynamicQuantizeLinear rounds the head's input to a uint8 step (at most the quantStep
 *   of headErrorScales: a bound, not an estimate), and each block's quantized linears perturb the
 *   residual it reads, allowed one such step per block.
 */
export function variantTolerance(dtype: StoredDtype, layer: number, x: ArrayLike<number>, head: Float32Array, vocab: number, halfSums = false): number {
  const { products, quantStep } = headErrorScales(x, head, vocab);
  const float32 = FLOAT32_TOL + x.length * FLOAT32_ROUNDOFF * products;
  // bnb4, like q4: onnxruntime dequantizes the stored blocks to float32 and multiplies in float32.
  if (dtype === 'q4' || dtype === 'bnb4') return float32;
  if (dtype === 'q4f16' && halfSums) return ((1 + 2 * layer) * products + headHalfSums(x, head, vocab)) * HALF_ROUNDOFF + float32;
  if (dtype === 'fp16' || dtype === 'q4f16') return (2 + 2 * layer) * HALF_ROUNDOFF * products + float32;
  if (dtype === 'q8' || dtype === 'uint8') return (1 + layer) * quantStep + float32;
  throw new Error(`no tolerance for ${dtype as string}`);
}

/**
 * fp16 and q4f16: how far the last lens row may be from the model's own logits. The two graphs may round
 * the head's input to float16 differently (README, "Smaller files": ½ ulp of |h| ≤ 3.1, times
 * max_j Σ_k |W_jk| = 20.2 on the fixtures: 0.02).
 */
export const OWN_HALF_TOL = 2e-2;

/**
 * The most a fp16 or q4f16 variant's last lens row may differ from the model's own logits, for a head
 * W [V, d] reading x [d] (the reference's normed last residual): OWN_HALF_TOL, and where a q4f16 head
 * sums in float16 (`halfSums`, kernel-probes.ts) the error of both sides' sums, each u times
 * headHalfSums. Throws on another dtype.
 */
export function ownHalfTolerance(dtype: StoredDtype, x: ArrayLike<number>, head: Float32Array, vocab: number, halfSums: boolean): number {
  if (dtype !== 'fp16' && dtype !== 'q4f16') throw new Error(`no float16 own-logits tolerance for ${dtype}`);
  return dtype === 'q4f16' && halfSums ? OWN_HALF_TOL + 2 * HALF_ROUNDOFF * headHalfSums(x, head, vocab) : OWN_HALF_TOL;
}

/** decoderAsStored's bnb4 weights with FP4 codes. */
export function fp4Stored(w: DecoderWeights): DecoderWeights {
  const lin = <T extends { w: Float32Array; out: number; in: number } | undefined>(l: T): T => (l && { ...l, w: bnb4RoundTrip(l.w, l.out, l.in, BNB4.FP4) }) as T;
  return {
    ...w,
    blocks: w.blocks.map((b) => ({ ...b, q: lin(b.q), k: lin(b.k), v: lin(b.v), o: lin(b.o), gate: lin(b.gate), up: lin(b.up), down: lin(b.down) })),
    lmHead: bnb4RoundTrip(w.lmHead ?? w.embed, w.config.vocab, w.config.d, BNB4.FP4),
  };
}
