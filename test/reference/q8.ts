// An independent float64 forward pass of a decoder as onnxruntime's quantize_dynamic leaves it
// (QOperator: every MatMul by a weight is DynamicQuantizeLinear → MatMulInteger → scale; every
// float table a Gather reads is stored quantized), written from the ONNX operator definitions and
// onnxruntime's quant_utils, not from any graph: weights quantized per tensor (int8 symmetric or
// uint8 asymmetric) and dequantized; each MatMul's input quantized to uint8 with one scale for the
// whole tensor (one that reads the quantized embedding Gather itself takes the table's integers); the
// integer products summed exactly in float64. `pairSaturation` sums instead as MLAS's u8·s8 kernels
// without VNNI do (vpmaddubsw: the products of k = 2j and 2j+1 added in a saturating int16), to show
// what such a CPU computes; `flipNearTies` rounds activations on a tie the other way; `smeRows`
// quantizes each row alone where onnxruntime does so on an Arm CPU with SME (see Q8Options). The LayerNorm
// families' forward (referenceQ8LnForward) runs test/reference/layernorm-families.ts the same way.
// Used only by the tests.
import { quantizePerTensor, type WeightType } from '../fixtures/variants.js';
import type { DecoderWeights, Linear } from '../fixtures/llama.js';
import { VOCAB, type Gpt2Weights } from '../fixtures/gpt2.js';
import type { HubModel } from '../fixtures/ln-families.js';
import { afterHead, headShare, referenceDecoderForward, type DecoderArithmetic } from './llama.js';
import { referenceForward, type AttributionReference } from './gpt2.js';
import { causalDepthwise, lnHead, referenceLnForward, type LnConv, type LnLinear } from './layernorm-families.js';

type Vec = Float64Array;

export interface Q8Options {
  /** The weights' type: int8 (model_quantized.onnx, model_int8.onnx) or uint8 (model_uint8.onnx). */
  weightType: WeightType;
  /**
   * Whether the embedding tables (uint8, the activation type: GatherQuant quantizes them with
   * quantize_activation) are stored symmetric (scale max|w| / 127.5, zero point 128). onnxruntime's
   * quantizer makes them so with int8 weights (is_weight_symmetric), the default here;
   * test/fixtures/variants.ts stores them asymmetric.
   */
  tableSymmetric?: boolean;
  /** Sum u8·s8 products in saturating int16 pairs, as MLAS does on x86-64 without VNNI (int8 weights only). */
  pairSaturation?: boolean;
  /**
   * Round each activation that lies within TIE_RELATIVE of itself from a rounding tie to the other step:
   * where the float32 model may round such a value either way, this reference and the exact one bracket it.
   */
  flipNearTies?: boolean;
  /**
   * Quantize each row of a product's input alone, as onnxruntime (≥ 1.23) does on an Arm CPU with SME:
   * it fuses DynamicQuantizeLinear → MatMulInteger → Cast → Mul into DynamicQuantizeMatMul and, for a
   * constant int8 weight with zero point 0 and positive scales, runs KleidiAI's kernel, which quantizes
   * its float input per row to int8 (kai_lhs_quant_pack_qai8dxp_f32). Only where the quantizer's output
   * is read by that one product (the fusion needs it): inputs that several products share (q/k/v,
   * gate/up) keep their one scale. int8 weights only.
   */
  smeRows?: boolean;
}

export interface Q8ReferenceResult extends AttributionReference {
  /** The model's own logits [T][V]: the head's input quantized with one scale for all T positions. */
  ownLogits: Vec[];
  /**
   * How far a logit can move when float32 arithmetic rounds a head input that lies within
   * ROUNDING_SLACK of a rounding boundary to the other step, for inputs `xs` quantized together:
   * per row, max_j Σ over such k of scale_a · scale_w · |q_kj − z_w|.
   */
  headSlack(xs: Vec[]): number[];
}

/**
 * Steps within which float32 and float64 may round an activation differently: its float32 value
 * carries a relative error of a few 1e-7 from the ops before, and x / scale ≤ 255 steps.
 */
const ROUNDING_SLACK = 2e-3;

/**
 * How near a tie, relative to its own number of steps, an activation must lie for the alternative
 * reference to round it the other way: 4 float32 ulps. Measured on these fixtures: OLMo2's mid-block
 * residual lies 1.2e-7 of itself from a tie (76.500009 steps) and the float32 model rounds it up where
 * float64 rounds it down; the nearest ties in the other families lie 4e-7 … 4e-6 away and the model
 * rounds them as float64 does. Flipping those too would move later layers by up to 0.2 (a tie flipped
 * early changes every value after it, the true ones included) and blunt every check.
 */
const TIE_RELATIVE = 2.4e-7;

function roundingSlack(xs: Vec[], w: QuantizedWeight, rowwise = false): number[] {
  const shared = dynamicQuantize(xs).scale;
  return xs.map((x) => {
    const scale = rowwise ? smeQuantizeRow(x).scale : shared;
    const near = [...x.keys()].filter((k) => scale > 0 && Math.abs(Math.abs((x[k] / scale) % 1) - 0.5) < ROUNDING_SLACK);
    let worst = 0;
    for (let o = 0; o < w.out; o++) {
      let sum = 0;
      for (const k of near) sum += Math.abs(w.q[k * w.out + o] - w.zeroPoint);
      worst = Math.max(worst, sum * scale * w.scale);
    }
    return worst;
  });
}

/** `rounded` (the float32 model's step for `exact` steps), or with `flip` the step on the tie's other side when `exact` lies within TIE_RELATIVE of a tie. */
function nearTieFlipped(rounded: number, exact: number, flip: boolean): number {
  if (!flip || Math.abs(Math.abs(exact % 1) - 0.5) >= TIE_RELATIVE * Math.abs(exact)) return rounded;
  return rounded > exact ? rounded - 1 : rounded + 1;
}

/** Rounds half to even, as onnxruntime's quantizers and DynamicQuantizeLinear do. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** A weight quantized per tensor, as integers [in][out] (ONNX's B = Wᵀ) with its scale and zero point. */
interface QuantizedWeight { q: Int32Array; scale: number; zeroPoint: number; in: number; out: number }

function quantizeWeight(values: Float32Array, rows: number, cols: number, transpose: boolean, type: WeightType, symmetric = type === 'int8'): QuantizedWeight {
  const { data, scale, zeroPoint } = quantizePerTensor(values, type, symmetric);
  return { ...layout(data, rows, cols, transpose), scale, zeroPoint };
}

/** Integers of a [rows, cols] tensor as [in][out]: transposed for torch's [out, in] linear weights. */
function layout(data: ArrayLike<number>, rows: number, cols: number, transpose: boolean): { q: Int32Array; in: number; out: number } {
  const [inDim, outDim] = transpose ? [cols, rows] : [rows, cols];
  const q = new Int32Array(inDim * outDim);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
    const v = data[r * cols + c];
    if (transpose) q[c * outDim + r] = v; else q[r * outDim + c] = v;
  }
  return { q, in: inDim, out: outDim };
}

/**
 * DynamicQuantizeLinear over a whole tensor (rows × n): range widened to hold 0, scale = range / 255
 * in float32, zero point = round(−min / scale), q = saturate(round(x / scale) + zero point).
 */
export function dynamicQuantize(xs: Vec[], flipNearTies = false): { q: Int32Array[]; scale: number; zeroPoint: number } {
  let lo = 0, hi = 0;
  for (const x of xs) for (const v of x) { const f = Math.fround(v); lo = Math.min(lo, f); hi = Math.max(hi, f); }
  const scale = Math.fround((hi - lo) / 255);
  if (scale === 0) return { q: xs.map((x) => new Int32Array(x.length)), scale: 0, zeroPoint: 0 };
  const zeroPoint = Math.min(255, Math.max(0, roundHalfEven(Math.fround(-lo / scale))));
  const step = (v: number) => nearTieFlipped(roundHalfEven(Math.fround(Math.fround(v) / scale)), v / scale, flipNearTies);
  const q = xs.map((x) => Int32Array.from(x, (v) => Math.min(255, Math.max(0, step(v) + zeroPoint))));
  return { q, scale, zeroPoint };
}

/**
 * One row quantized as KleidiAI's qai8dxp packing does (onnxruntime's DynamicQuantizeMatMul on an Arm
 * CPU with SME), in float32 steps: range widened to hold 0, multiplier m = 255 / range, zero point from
 * whichever end loses less (rounded half to even, clamped to int8), q = round(x · m) (half away from
 * zero) + zero point, clamped to int8; the dequantizing scale is 1 / m. (Clamped, not wrapped as the
 * scalar C cast of KleidiAI's reference packing would: onnxruntime 1.30 under SME emulation clamps;
 * a raw embedding row of the GPT-NeoX fixture, whose top value lands on 128, tells the two apart.)
 */
export function smeQuantizeRow(x: Vec, flipNearTies = false): { q: Int32Array; scale: number; zeroPoint: number } {
  let lo = 0, hi = 0;
  for (const v of x) { const f = Math.fround(v); lo = Math.min(lo, f); hi = Math.max(hi, f); }
  const m = lo === hi ? 1 : Math.fround(255 / Math.fround(hi - lo));
  const below = Math.fround(lo * m), above = Math.fround(hi * m);
  const fromMin = Math.fround(-128 - below), fromMax = Math.fround(127 - above);
  const z = Math.fround(-128 + below) + Math.fround(127 + above) > 0 ? fromMin : fromMax;
  const zeroPoint = roundHalfEven(Math.min(127, Math.max(-128, z)));
  const step = (v: number) => {
    const scaled = Math.fround(Math.fround(v) * m);
    return nearTieFlipped(Math.sign(scaled) * Math.round(Math.abs(scaled)), v * m, flipNearTies);
  };
  const q = Int32Array.from(x, (v) => Math.min(127, Math.max(-128, step(v) + zeroPoint)));
  return { q, scale: Math.fround(1 / m), zeroPoint };
}

/** quantizedProduct with each row quantized alone as smeQuantizeRow does (int8 weights with zero point 0). */
function smeRowsProduct(xs: Vec[], w: QuantizedWeight, bias: Float32Array | undefined, flipNearTies = false): Vec[] {
  if (w.zeroPoint !== 0) throw new Error('onnxruntime runs KleidiAI only for weights with zero point 0');
  return xs.map((x) => { const { q, scale, zeroPoint } = smeQuantizeRow(x, flipNearTies); return integerProduct({ q: [q], scale, zeroPoint }, w, bias, false)[0]; });
}

/**
 * The products (by key) whose input another product also reads, found by a first run of `forward`
 * that reports each product's key and input (the parts of one stored product report one key): they share one DynamicQuantizeLinear, which onnxruntime
 * does not fuse, so they keep the whole-tensor scale under `smeRows`.
 */
function sharedInputs<K>(forward: (product: (key: K, xs: Vec[]) => void) => void): Set<K> {
  const readers = new Map<Vec[], Set<K>>();
  forward((key, xs) => { readers.set(xs, (readers.get(xs) ?? new Set()).add(key)); });
  return new Set([...readers.values()].filter((keys) => keys.size > 1).flatMap((keys) => [...keys]));
}

/** An activation as MatMulInteger reads it: integers per row [T][in], with one scale and zero point. */
interface QuantizedActivation { q: Int32Array[]; scale: number; zeroPoint: number }

/** DynamicQuantizeLinear of the rows, then MatMulInteger, Cast and Mul by the two scales; exact, or with MLAS's non-VNNI pair saturation. */
function quantizedProduct(xs: Vec[], w: QuantizedWeight, bias: Float32Array | undefined, pairSaturation: boolean, flipNearTies = false): Vec[] {
  return integerProduct(dynamicQuantize(xs, flipNearTies), w, bias, pairSaturation);
}

/** MatMulInteger of an activation already quantized, then Cast and Mul by the two scales (and the bias's Add), [T][out]. */
function integerProduct({ q: qa, scale, zeroPoint }: QuantizedActivation, w: QuantizedWeight, bias: Float32Array | undefined, pairSaturation: boolean): Vec[] {
  const sat16 = (v: number) => Math.min(32767, Math.max(-32768, v));
  return qa.map((a) => {
    const y = new Float64Array(w.out);
    for (let o = 0; o < w.out; o++) {
      let sum = 0;
      if (pairSaturation) {
        // Raw u8 × s8 bytes in pairs, saturated to int16; the zero points come in afterwards, exactly
        // (MLAS subtracts za·Σ_k b_k from the column sums; the weight's zero point is 0 for int8).
        let columnSum = 0;
        for (let k = 0; k < w.in; k += 2) {
          const b0 = w.q[k * w.out + o], b1 = k + 1 < w.in ? w.q[(k + 1) * w.out + o] : 0;
          sum += sat16(a[k] * b0 + (k + 1 < w.in ? a[k + 1] * b1 : 0));
          columnSum += b0 + b1;
        }
        sum -= zeroPoint * columnSum;
      } else {
        for (let k = 0; k < w.in; k++) sum += (a[k] - zeroPoint) * (w.q[k * w.out + o] - w.zeroPoint);
      }
      y[o] = sum * scale * w.scale + (bias ? bias[o] : 0);
    }
    return y;
  });
}

/** The forward pass of `w` quantized as quantize_dynamic does, in float64; the lens rows quantize each row alone (the lens's per-row head). */
export function referenceQ8DecoderForward(w: DecoderWeights, ids: number[], options: Q8Options): Q8ReferenceResult {
  checkOptions(options);
  const shared = options.smeRows ? sharedInputs<Float32Array>((report) => decoderQ8(w, ids, { ...options, smeRows: false }, report)) : new Set<Float32Array>();
  return decoderQ8(w, ids, options, undefined, shared);
}

/** Throws for options no CPU combines: the u8·s8 kernels' pair saturation and KleidiAI's rows are int8 weights' paths. */
function checkOptions(options: Q8Options): void {
  if (options.pairSaturation && options.weightType !== 'int8') throw new Error('pair saturation is the u8·s8 kernel: int8 weights only');
  if (options.smeRows && options.weightType !== 'int8') throw new Error('KleidiAI\'s rows are the int8-weight path: int8 weights only');
  if (options.smeRows && options.pairSaturation) throw new Error('no CPU both saturates u8·s8 pairs and has SME');
}

/** referenceQ8DecoderForward, reporting each product's weight and input to `report`; `shared` the weights whose input another product reads. */
function decoderQ8(w: DecoderWeights, ids: number[], options: Q8Options, report?: (weight: Float32Array, xs: Vec[]) => void, shared = new Set<Float32Array>()): Q8ReferenceResult {
  const { d, vocab } = w.config;
  const saturate = options.pairSaturation === true;
  // Linears stored as one weight are one product: keyed by their first part.
  const stackOf = new Map<Float32Array, Float32Array>();
  const productKey = (weight: Float32Array) => stackOf.get(weight) ?? weight;
  const rowwise = (weight: Float32Array) => options.smeRows === true && !shared.has(productKey(weight));
  const quantized = new Map<Float32Array, QuantizedWeight>();
  const weightOf = (values: Float32Array, rows: number, cols: number, transpose: boolean) => {
    let q = quantized.get(values);
    if (!q) quantized.set(values, (q = quantizeWeight(values, rows, cols, transpose, options.weightType)));
    return q;
  };
  /** Linears stored as one weight (rows stacked along the output) share its scale and zero point. */
  const quantizeStacked = (parts: Linear[]) => {
    const fused = new Float32Array(parts.reduce((n, l) => n + l.w.length, 0));
    let offset = 0;
    for (const lin of parts) { fused.set(lin.w, offset); offset += lin.w.length; }
    const { data, scale, zeroPoint } = quantizePerTensor(fused, options.weightType, options.weightType === 'int8');
    offset = 0;
    for (const lin of parts) {
      stackOf.set(lin.w, parts[0].w);
      quantized.set(lin.w, { ...layout(data.subarray(offset, offset + lin.w.length), lin.out, lin.in, true), scale, zeroPoint });
      offset += lin.w.length;
    }
  };
  // GPT-NeoX's query_key_value; Phi-3's qkv_proj and gate_up_proj.
  if (w.traits.fusedQkv || w.traits.fusedProjections) for (const b of w.blocks) quantizeStacked([b.q, b.k, b.v]);
  if (w.traits.fusedProjections) for (const b of w.blocks) quantizeStacked([b.gate!, b.up]);
  // The Gather reads the stored table; its DequantizeLinear restores the float.
  const table = quantizeTable(w.embed, vocab, d, options);
  // The quantizer reuses a value it has already quantized: a MatMul that reads the embedding Gather's
  // output itself (OLMo2's first block, which has no pre-norm) multiplies the table's stored integers,
  // with the table's scale and zero point, and no DynamicQuantizeLinear.
  const storedRows = new WeakMap<Vec, Int32Array>();
  const arithmetic: DecoderArithmetic = {
    embedRow: (id) => {
      const row = table(id);
      storedRows.set(row.dequantized, row.q);
      return row.dequantized;
    },
    linear: (lin: Linear, xs: Vec[]) => {
      report?.(productKey(lin.w), xs);
      const weight = weightOf(lin.w, lin.out, lin.in, true);
      const stored = xs.map((x) => storedRows.get(x));
      // No DynamicQuantizeLinear here, so nothing for onnxruntime to fuse: the table's one scale on every CPU.
      if (stored.every((q) => q !== undefined)) return integerProduct({ q: stored as Int32Array[], scale: table.scale, zeroPoint: table.zeroPoint }, weight, lin.b, saturate);
      if (rowwise(lin.w)) return smeRowsProduct(xs, weight, lin.b, options.flipNearTies);
      return quantizedProduct(xs, weight, lin.b, saturate, options.flipNearTies);
    },
    // The projection multiplies the whole sequence's quantized input: each head's share is its slice of
    // that. (Under smeRows the model quantizes each row instead; lens's heads keep the one scale.)
    headShares: (lin: Linear, xs: Vec[], heads: number) => {
      const weight = weightOf(lin.w, lin.out, lin.in, true);
      const { q, scale, zeroPoint } = dynamicQuantize(xs, options.flipNearTies);
      const dequantized = { ...lin, w: Float32Array.from({ length: lin.out * lin.in }, (_, k) => (weight.q[(k % lin.in) * weight.out + Math.floor(k / lin.in)] - weight.zeroPoint) * weight.scale) };
      return q.map((row) => Array.from({ length: heads }, (_, h) => headShare(dequantized, Float64Array.from(row, (v) => (v - zeroPoint) * scale), h, lin.in / heads)));
    },
  };
  const ref = referenceDecoderForward(w, ids, arithmetic);
  // What follows the head is a scaling and a softcap (1-Lipschitz): a head output's slack scales with the first only.
  return withQ8Head(ref, weightOf(w.lmHead ?? w.embed, vocab, d, true), options, (z) => afterHead(w.traits, z), (w.traits.logitScale ?? 1) / (w.traits.logitsScaling ?? 1));
}

/** An embedding table [rows, d] stored quantized (uint8): a row lookup giving its integers and their DequantizeLinear, with the scale and zero point. */
function quantizeTable(values: Float32Array, rows: number, d: number, options: Q8Options): ((row: number) => { q: Int32Array; dequantized: Vec }) & { scale: number; zeroPoint: number } {
  const table = quantizeWeight(values, rows, d, false, 'uint8', options.tableSymmetric ?? options.weightType === 'int8');
  const lookup = (row: number) => {
    const q = table.q.slice(row * d, (row + 1) * d);
    return { q, dequantized: Float64Array.from(q, (v) => (v - table.zeroPoint) * table.scale) };
  };
  return Object.assign(lookup, { scale: table.scale, zeroPoint: table.zeroPoint });
}

/** `ref` with its head quantized: the lens rows each alone, the model's own logits all positions together (each row alone under smeRows: the head reads its quantizer alone); `after` maps a head output, `slackScale` its Lipschitz factor. */
function withQ8Head(ref: AttributionReference, head: QuantizedWeight, options: Q8Options, after: (z: number) => number, slackScale: number): Q8ReferenceResult {
  const last = ref.residual[ref.residual.length - 1];
  const product = (xs: Vec[]) => (options.smeRows ? smeRowsProduct(xs, head, undefined) : quantizedProduct(xs, head, undefined, options.pairSaturation === true));
  return {
    ...ref,
    unembed: (v) => product([v])[0].map(after),
    ownLogits: product(last.map((v) => ref.finalNorm(v))).map((row) => row.map(after)),
    headSlack: (xs) => roundingSlack(xs, head, options.smeRows).map((s) => s * slackScale),
  };
}

/**
 * GPT-2 quantized as quantize_dynamic does after rewriting its Conv1D Gemms to MatMul + Add: each
 * Conv1D weight [in, out] (ONNX's B as it is) per tensor, its bias added in float; wte and wpe stored as
 * tables; the tied head torch writes as its own initializer wteᵀ, quantized with the weight type.
 */
export function referenceQ8Gpt2Forward(w: Gpt2Weights, ids: number[], options: Q8Options): Q8ReferenceResult {
  const { d, nPositions } = w.config;
  checkOptions(options);
  const saturate = options.pairSaturation === true;
  // Each Conv1D reads its own LayerNorm or activation: none shares its quantizer.
  const quantized = new Map<Float32Array, QuantizedWeight>();
  const wte = quantizeTable(w.wte, VOCAB, d, options), wpe = quantizeTable(w.wpe, nPositions, d, options);
  const ref = referenceForward(w, ids, {
    // Both Gathers' DequantizeLinears, then the Add in float32.
    embed: (id, t) => { const a = wte(id).dequantized, b = wpe(t).dequantized; return a.map((v, i) => Math.fround(v) + Math.fround(b[i])); },
    conv1d: (xs, W, b, outDim) => {
      let q = quantized.get(W);
      if (!q) quantized.set(W, (q = quantizeWeight(W, xs[0].length, outDim, false, options.weightType)));
      return options.smeRows ? smeRowsProduct(xs, q, b) : quantizedProduct(xs, q, b, saturate);
    },
  });
  return withQ8Head(ref, quantizeWeight(w.lmHead ?? w.wte, VOCAB, d, true, options.weightType), options, (z) => z, 1);
}

/** The embedding tables of the LayerNorm families, which their exports read with Gather. */
const LN_TABLES = ['model.embed_tokens.weight', 'model.decoder.embed_tokens.weight', 'model.decoder.embed_positions.weight', 'transformer.word_embeddings.weight', 'gpt_neox.embed_in.weight'];

/**
 * referenceQ8DecoderForward for a LayerNorm-family hub model (test/reference/layernorm-families.ts):
 * every linear and the head quantized per tensor from its float32 weight (a tied head from the table,
 * as the export's folded copy is), LFM2's convolutions as ConvInteger, each embedding table stored
 * quantized as quantizeTable stores it; other tensors (norms, biases) stay float. Throws for OPT with project_out (its head
 * input is itself quantized, which headSlack does not cover).
 */
export function referenceQ8LnForward(hub: HubModel, ids: number[], options: Q8Options): Q8ReferenceResult {
  if (hub.tensors.has('model.decoder.project_out.weight')) throw new Error('no q8 reference for OPT with project_out');
  checkOptions(options);
  const shared = options.smeRows ? sharedInputs<string>((report) => lnQ8(hub, ids, { ...options, smeRows: false }, report)) : new Set<string>();
  return lnQ8(hub, ids, options, undefined, shared);
}

/** referenceQ8LnForward, reporting each product's weight name and input to `report`; `shared` the weights whose input another product reads. */
function lnQ8(hub: HubModel, ids: number[], options: Q8Options, report?: (weight: string, xs: Vec[]) => void, shared = new Set<string>()): Q8ReferenceResult {
  const quantized = new Map<string, QuantizedWeight>();
  const weightOf = (name: string) => {
    let q = quantized.get(name);
    const t = hub.tensors.get(name);
    if (!t) throw new Error(`no tensor ${name}`);
    if (!q) quantized.set(name, (q = quantizeWeight(t.data, t.shape[0], t.shape[1], true, options.weightType)));
    return q;
  };
  const tables = new Map([...hub.tensors].map(([name, t]) => {
    if (!LN_TABLES.includes(name)) return [name, t];
    const table = quantizeTable(t.data, t.shape[0], t.shape[1], options);
    const data = new Float32Array(t.data.length);
    for (let r = 0; r < t.shape[0]; r++) data.set(table(r).dequantized, r * t.shape[1]);
    return [name, { ...t, data }];
  }));
  const linear: LnLinear = (name, bias, xs) => {
    report?.(name, xs);
    const b = bias === undefined ? undefined : hub.tensors.get(bias)!.data;
    if (options.smeRows && !shared.has(name)) return smeRowsProduct(xs, weightOf(name), b, options.flipNearTies);
    return quantizedProduct(xs, weightOf(name), b, options.pairSaturation === true, options.flipNearTies);
  };
  // ConvInteger: the input (with its zero history, which quantizes to the zero point) quantized as one
  // tensor, the weight per tensor, the integer products summed exactly and scaled.
  const conv: LnConv = (name, xs, width) => {
    const { q: qa, scale, zeroPoint } = dynamicQuantize(xs, options.flipNearTies);
    const t = hub.tensors.get(name)!;
    const w = quantizePerTensor(t.data, options.weightType, options.weightType === 'int8');
    return causalDepthwise(xs.length, xs[0].length, width, (e, j) => w.data[e * width + j] - w.zeroPoint, (s, e) => qa[s][e] - zeroPoint).map((y) => y.map((v) => v * scale * w.scale));
  };
  const ref = referenceLnForward({ config: hub.config, tensors: tables }, ids, linear, conv);
  const head = lnHead(hub);
  const last = ref.residual[ref.residual.length - 1];
  return {
    ...ref,
    ownLogits: linear(head.weight, head.bias, last.map((v) => ref.finalNorm(v))),
    headSlack: (xs) => roundingSlack(xs, weightOf(head.weight), options.smeRows),
  };
}
