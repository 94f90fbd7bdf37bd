// Matrix products by stored weights, read as the float matrix B [K, N] each one computes with, in
// every form lens meets: MatMul and Gemm by a float or float16 weight (also behind Casts, Transposes
// or a DequantizeLinear, constants onnxruntime folds), MatMulNBits and MatMulBnb4 (4-bit blocks,
// dequantized by nodes added to the graph), and quantize_dynamic's DynamicQuantizeLinear →
// MatMulInteger → Cast → Mul. Attribution reads the head's rows and the output projections through
// this one reader, so a quantized weight is the dequantized matrix the kernel multiplies by.
import type { GraphIndex } from './graph.js';
import { AttrType, DataType, type Graph, type Node } from './proto.js';

/** Adds nodes and constants to the graph; each returns the name of what it made. */
export interface Emitter {
  /** Adds a node; returns its (first) output. */
  node(op: string, inputs: string[], output: string | string[], attribute?: Node['attribute']): string;
  floats(name: string, values: number[]): string;
  ints(name: string, values: number[]): string;
}

/** A matrix product y = scale · x · B (+ biasFactor · bias) by a stored B [K, N], as attribution reads it. */
export interface StoredProduct {
  op: string;
  /** The float activation the product reads, [..., K] (for quantize_dynamic, before it is quantized: see `roundInput`). */
  input: string;
  /** The float output y. */
  output: string;
  /** B's shape [K, N], when the graph tells it. */
  dims?: [number, number];
  scale: number;
  bias?: string;
  biasFactor: number;
  /** Set when y is not x · B for the float x the product is given: it quantizes x first (why, as a clause). */
  roundsInput?: string;
  /** float rows [R, K] of x as the product multiplies them (x̃ = (q − z) · s), from all the rows [R, K] of `input`; only where it can be read. */
  roundInput?: (emit: Emitter, prefix: string, rows: string) => string;
  /** float [C, R]: rows 0 … kEnd − 1 of B (all K without kEnd, an INT64 [1]) and its columns `columns` (INT64 [R]; all N without). */
  block: (emit: Emitter, prefix: string, columns?: string, kEnd?: string) => string;
}

// Ops that leave a constant's values as they are, up to type or layout (onnxruntime folds them).
const CONSTANT_PASS = new Set(['Cast', 'Identity', 'DequantizeLinear']);

/** The shape of a constant tensor: an initializer, or one behind Casts, Transposes and DequantizeLinear. */
function constantDims(index: GraphIndex, name: string): number[] | undefined {
  const initializer = index.graph.initializer.find((t) => t.name === name);
  if (initializer) return initializer.dims.map(Number);
  const node = index.producer.get(name);
  if (!node || index.dynamic.has(name)) return undefined;
  if (node.op_type === 'Transpose') {
    const dims = constantDims(index, node.input[0]);
    const perm = node.attribute.find((a) => a.name === 'perm')?.ints?.map(Number) ?? dims?.map((_, i) => dims.length - 1 - i);
    return dims && perm?.map((p) => dims[p]);
  }
  if (CONSTANT_PASS.has(node.op_type)) return constantDims(index, node.input[0]);
  return undefined;
}

const intAttribute = (node: Node, name: string, fallback: number) => Number(node.attribute.find((a) => a.name === name)?.i ?? fallback);
const floatAttribute = (node: Node, name: string, fallback: number) => Number(node.attribute.find((a) => a.name === name)?.f ?? fallback);
const toFloat = (emit: Emitter, input: string, output: string) => emit.node('Cast', [input], output, [{ name: 'to', type: AttrType.INT, i: DataType.FLOAT }]);
const toInt64 = (emit: Emitter, input: string, output: string) => emit.node('Cast', [input], output, [{ name: 'to', type: AttrType.INT, i: DataType.INT64 }]);
const axis = (i: number) => [{ name: 'axis', type: AttrType.INT, i }];
const transposed = (emit: Emitter, input: string, output: string) => emit.node('Transpose', [input], output, [{ name: 'perm', type: AttrType.INTS, ints: [1, 0] }]);

/** The B-index grid of a quantized block: k [C, 1] (rows 0 … kEnd − 1) and n [1, R] (the columns asked, or all). */
function indexGrid(emit: Emitter, prefix: string, K: number, N: number, columns?: string, kEnd?: string): { k: string; n: string } {
  const ks = emit.ints(`${prefix}k_range`, Array.from({ length: K }, (_, i) => i));
  const kept = kEnd ? emit.node('Slice', [ks, emit.ints(`${prefix}k_start`, [0]), kEnd], `${prefix}k_kept`) : ks;
  const ns = columns ?? emit.ints(`${prefix}n_range`, Array.from({ length: N }, (_, i) => i));
  return {
    k: emit.node('Reshape', [kept, emit.ints(`${prefix}column_shape`, [-1, 1])], `${prefix}k`),
    n: emit.node('Reshape', [ns, emit.ints(`${prefix}row_shape`, [1, -1])], `${prefix}n`),
  };
}

/** Integer arithmetic on INT64 tensors by constants, named under `prefix` (Div truncates: all operands are ≥ 0). */
function integerOps(emit: Emitter, prefix: string) {
  let count = 0;
  const constant = (c: number) => emit.ints(`${prefix}c${count++}`, [c]);
  const op = (name: string, inputs: string[]) => emit.node(name, inputs, `${prefix}i${count++}`);
  const div = (a: string, c: number) => (c === 1 ? a : op('Div', [a, constant(c)]));
  return {
    add: (a: string, b: string) => op('Add', [a, b]),
    times: (a: string, c: number) => (c === 1 ? a : op('Mul', [a, constant(c)])),
    div,
    /** a mod c, for a ≥ 0. */
    mod: (a: string, c: number) => op('Sub', [a, op('Mul', [div(a, c), constant(c)])]),
    /** The `bits`-wide field at position `slot` of each byte value (slot 0 in the lowest bits): ⌊byte / 2^(slot·bits)⌋ mod 2^bits. */
    field: (bytes: string, slot: string, bits: number, slots: number) => {
      const shifts = emit.ints(`${prefix}shifts${count++}`, Array.from({ length: slots }, (_, j) => 2 ** (j * bits)));
      const shifted = op('Div', [bytes, emit.node('Gather', [shifts, slot], `${prefix}i${count++}`, axis(0))]);
      return op('Sub', [shifted, op('Mul', [div(shifted, 2 ** bits), constant(2 ** bits)])]);
    },
    /** Elements of a stored tensor (flattened) at INT64 indices, as INT64. */
    gather: (data: string, at: string) => toInt64(emit, emit.node('Gather', [emit.node('Reshape', [data, emit.ints(`${prefix}flat${count}`, [-1])], `${prefix}i${count++}`), at], `${prefix}i${count++}`, axis(0)), `${prefix}i${count++}`),
    gatherFloat: (data: string, at: string) => toFloat(emit, emit.node('Gather', [emit.node('Reshape', [data, emit.ints(`${prefix}flat${count}`, [-1])], `${prefix}i${count++}`), at], `${prefix}i${count++}`, axis(0)), `${prefix}i${count++}`),
  };
}

// bitsandbytes' 4-bit codes as onnxruntime's MatMulBnb4 decodes them (quant_type 0: FP4, 1: NF4),
// each a fraction of its block's absmax.
const BNB4_VALUES: Record<number, number[]> = {
  0: [0, 0.005208333333, 0.66666667, 1, 0.33333333, 0.5, 0.16666667, 0.25, -0, -0.005208333333, -0.66666667, -1, -0.33333333, -0.5, -0.16666667, -0.25],
  1: [-1, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1],
};

/** MatMul or Gemm by a constant B (stored, or folded from stored constants). */
function floatProduct(index: GraphIndex, node: Node): StoredProduct | string | undefined {
  const weight = node.input[1];
  if (!weight || index.dynamic.has(weight) || !node.input[0] || !index.dynamic.has(node.input[0])) return undefined;
  const dims = constantDims(index, weight);
  if (dims && dims.length !== 2) return undefined;
  let layout: 'kn' | 'nk' = 'kn', scale = 1, bias: string | undefined, biasFactor = 1;
  if (node.op_type === 'Gemm') {
    if (intAttribute(node, 'transA', 0) !== 0) return 'the Gemm transposes its input';
    if (intAttribute(node, 'transB', 0) === 1) layout = 'nk';
    scale = floatAttribute(node, 'alpha', 1);
    if (node.input[2]) { bias = node.input[2]; biasFactor = floatAttribute(node, 'beta', 1); }
  }
  return {
    op: node.op_type, input: node.input[0], output: node.output[0], scale, bias, biasFactor,
    ...(dims ? { dims: (layout === 'kn' ? [dims[0], dims[1]] : [dims[1], dims[0]]) as [number, number] } : {}),
    block: (emit, prefix, columns, kEnd) => {
      const [kAxis, nAxis] = layout === 'kn' ? [0, 1] : [1, 0];
      // The few rows asked first, so that reading none copies nothing.
      let t = kEnd ? emit.node('Slice', [weight, emit.ints(`${prefix}k_start`, [0]), kEnd, emit.ints(`${prefix}k_axis`, [kAxis])], `${prefix}k_rows`) : weight;
      if (columns) t = emit.node('Gather', [t, columns], `${prefix}columns`, axis(nAxis));
      if (layout === 'nk') t = transposed(emit, t, `${prefix}kn`);
      return toFloat(emit, t, `${prefix}block`);
    },
  };
}

/** com.microsoft MatMulNBits: B [N, blocks, blob] packed `bits` wide (lowest bits first), scales [N · blocks], zero points packed alike (else 2^(bits−1)). */
function nBitsProduct(index: GraphIndex, node: Node): StoredProduct | string {
  const [input, packed, scales, zeroPoints, groupIndex, bias] = node.input;
  const K = intAttribute(node, 'K', 0), N = intAttribute(node, 'N', 0), bits = intAttribute(node, 'bits', 4), blockSize = intAttribute(node, 'block_size', 0);
  if (![2, 4, 8].includes(bits) || !K || !N || !blockSize) return `its MatMulNBits has bits ${bits}, K ${K}, N ${N}, block_size ${blockSize}`;
  if (groupIndex) return 'its MatMulNBits reorders its blocks (g_idx)';
  const zeroType = zeroPoints ? index.graph.initializer.find((t) => t.name === zeroPoints)?.data_type : DataType.UINT8;
  if (zeroType !== DataType.UINT8) return 'its MatMulNBits has zero points that are not packed uint8';
  const slots = 8 / bits, blocks = Math.ceil(K / blockSize);
  const accuracy = intAttribute(node, 'accuracy_level', 0);
  return {
    op: node.op_type, input, output: node.output[0], dims: [K, N], scale: 1, biasFactor: 1, ...(bias ? { bias } : {}),
    // accuracy_level 4: onnxruntime's CPU kernel quantizes x to int8 per block, which the graph does not show.
    ...(accuracy >= 4 ? { roundsInput: 'quantizes its input to int8 in blocks (MatMulNBits accuracy_level 4)' } : {}),
    block: (emit, prefix, columns, kEnd) => {
      const { k, n } = indexGrid(emit, prefix, K, N, columns, kEnd);
      const int = integerOps(emit, prefix);
      const bytes = int.gather(packed, int.add(int.times(n, blocks * (blockSize / slots)), int.div(k, slots)));
      const q = int.field(bytes, int.mod(k, slots), bits, slots);
      const block = int.div(k, blockSize);
      const scale = int.gatherFloat(scales, int.add(int.times(n, blocks), block));
      const zero = zeroPoints
        ? int.field(int.gather(zeroPoints, int.add(int.times(n, Math.ceil(blocks / slots)), int.div(block, slots))), int.mod(block, slots), bits, slots)
        : emit.ints(`${prefix}zero`, [2 ** (bits - 1)]);
      return emit.node('Mul', [toFloat(emit, emit.node('Sub', [q, zero], `${prefix}centred`), `${prefix}centred_float`), scale], `${prefix}block`);
    },
  };
}

/** com.microsoft MatMulBnb4: Bᵀ [N, K] flattened in blocks of block_size, two codes a byte (the first in the high nibble), absmax per block. */
function bnb4Product(node: Node): StoredProduct | string {
  const [input, packed, absmax] = node.input;
  const K = intAttribute(node, 'K', 0), N = intAttribute(node, 'N', 0), blockSize = intAttribute(node, 'block_size', 0), type = intAttribute(node, 'quant_type', 1);
  const values = BNB4_VALUES[type];
  if (!values || !K || !N || !blockSize) return `its MatMulBnb4 has quant_type ${type}, K ${K}, N ${N}, block_size ${blockSize}`;
  return {
    op: node.op_type, input, output: node.output[0], dims: [K, N], scale: 1, biasFactor: 1,
    block: (emit, prefix, columns, kEnd) => {
      const { k, n } = indexGrid(emit, prefix, K, N, columns, kEnd);
      const int = integerOps(emit, prefix);
      const flat = int.add(int.times(n, K), k);
      // Slot 1 (the high nibble) for even elements: 1 − (i mod 2).
      const slot = emit.node('Sub', [emit.ints(`${prefix}one`, [1]), int.mod(flat, 2)], `${prefix}slot`);
      const code = int.field(int.gather(packed, int.div(flat, 2)), slot, 4, 2);
      const value = emit.node('Gather', [emit.floats(`${prefix}codes`, values), code], `${prefix}code_values`, axis(0));
      return emit.node('Mul', [value, int.gatherFloat(absmax, int.div(flat, blockSize))], `${prefix}block`);
    },
  };
}

/**
 * quantize_dynamic's y = Cast(MatMulInteger(q(x), B_q, z_x, z_B)) · (s_x · s_B), read at the Mul
 * that makes y: B = (B_q − z_B) · s_B (per tensor or per column), x̃ = (q(x) − z_x) · s_x.
 */
function integerProduct(index: GraphIndex, node: Node): StoredProduct | string | undefined {
  const producer = (name: string) => index.producer.get(name);
  const castIndex = node.input.findIndex((i) => producer(i)?.op_type === 'Cast' && producer(producer(i)!.input[0])?.op_type === 'MatMulInteger');
  if (castIndex < 0) return undefined;
  const integer = producer(producer(node.input[castIndex])!.input[0])!;
  const scales = producer(node.input[1 - castIndex]);
  const [quantized, weight, inputZero, weightZero] = integer.input;
  const quantizer = producer(quantized);
  if (scales?.op_type !== 'Mul' || quantizer?.op_type !== 'DynamicQuantizeLinear' || !weight || index.dynamic.has(weight)) return 'its MatMulInteger is not quantize_dynamic\'s pattern';
  const inputScale = quantizer.output[1];
  const weightScale = scales.input.find((i) => i !== inputScale);
  if (!scales.input.includes(inputScale) || !weightScale || index.dynamic.has(weightScale)) return 'its MatMulInteger is not quantize_dynamic\'s pattern';
  const dims = constantDims(index, weight);
  if (dims?.length !== 2) return 'its MatMulInteger weight has no known 2-D shape';
  const [K, N] = dims;
  const perColumn = (name: string) => (constantDims(index, name) ?? []).reduce((a, b) => a * b, 1) === N && N > 1;
  return {
    op: 'MatMulInteger', input: quantizer.input[0], output: node.output[0], dims: [K, N], scale: 1, biasFactor: 1,
    roundsInput: 'quantizes its input with one scale for the whole tensor (DynamicQuantizeLinear)',
    // A DynamicQuantizeLinear of its own over all the rows: the model's one scale and zero point, the
    // same integers. Reading the model's quantizer instead would give it readers besides the product,
    // and onnxruntime fuses a quantizer into its product (DynamicQuantizeMatMul) only when the product
    // is its one reader: on an Arm CPU with SME the fused product quantizes each row alone, so the
    // lens's graph would no longer compute what the model computes there.
    roundInput: (emit, prefix, rows) => {
      const [q, scale, zero] = [`${prefix}x_q`, `${prefix}x_scale`, `${prefix}x_zero`];
      emit.node('DynamicQuantizeLinear', [rows], [q, scale, zero]);
      const centred = emit.node('Sub', [toFloat(emit, q, `${prefix}x_q_float`), toFloat(emit, zero, `${prefix}x_zero_float`)], `${prefix}x_centred`);
      return emit.node('Mul', [centred, scale], `${prefix}x_dequantized`);
    },
    block: (emit, prefix, columns, kEnd) => {
      const { k, n } = indexGrid(emit, prefix, K, N, columns, kEnd);
      const int = integerOps(emit, prefix);
      const at = int.add(int.times(k, N), n);
      const q = int.gather(weight, at);
      const zero = weightZero ? (perColumn(weightZero) ? int.gather(weightZero, n) : int.gather(weightZero, emit.ints(`${prefix}first`, [0]))) : emit.ints(`${prefix}no_zero`, [0]);
      const scale = perColumn(weightScale) ? int.gatherFloat(weightScale, n) : toFloat(emit, weightScale, `${prefix}scale`);
      return emit.node('Mul', [toFloat(emit, emit.node('Sub', [q, zero], `${prefix}centred`), `${prefix}centred_float`), scale], `${prefix}block`);
    },
  };
}

/**
 * The matrix product by a stored weight whose output is `tensor`, as a StoredProduct; a string
 * saying why when `tensor` comes from a product lens cannot read; undefined when it is no product.
 */
export function storedProductAt(index: GraphIndex, tensor: string): StoredProduct | string | undefined {
  const node = index.producer.get(tensor);
  if (!node) return undefined;
  if (node.op_type === 'MatMul' || node.op_type === 'Gemm') return floatProduct(index, node);
  if (node.op_type === 'Mul') return integerProduct(index, node);
  if (node.input[1] && index.dynamic.has(node.input[1])) return undefined;
  if (node.op_type === 'MatMulNBits') return nBitsProduct(index, node);
  if (node.op_type === 'MatMulBnb4') return bnb4Product(node);
  if (['MatMulInteger', 'QLinearMatMul', 'FusedMatMul', 'MatMulIntegerToFloat', 'DynamicQuantizeMatMul'].includes(node.op_type)) return `its ${node.op_type} is not a form lens reads as a stored matrix`;
  return undefined;
}

/** The float output of the product `node` computes: its own output, or for MatMulInteger the Mul by the scales after its Cast. */
export function productOutput(index: GraphIndex, node: Node): string {
  if (node.op_type !== 'MatMulInteger') return node.output[0];
  const cast = index.consumers.get(node.output[0])?.find((n) => n.op_type === 'Cast');
  const mul = cast && index.consumers.get(cast.output[0])?.find((n) => n.op_type === 'Mul');
  return mul?.output[0] ?? node.output[0];
}

// Products onnxruntime computes with integer kernels, which it may choose by whether their weights
// were prepacked: on an Arm CPU with SME, DynamicQuantizeMatMul (the fused DynamicQuantizeLinear →
// MatMulInteger) runs KleidiAI's kernel, which quantizes per row, only on its prepacked weight.
const QUANTIZED_PRODUCT_OPS = new Set(['DynamicQuantizeLinear', 'MatMulInteger', 'ConvInteger', 'QLinearMatMul', 'MatMulNBits', 'MatMulBnb4', 'DynamicQuantizeMatMul', 'MatMulIntegerToFloat']);

/** Whether `graph` (or a subgraph of it) has a product QUANTIZED_PRODUCT_OPS names. */
export function hasQuantizedProducts(graph: Graph): boolean {
  return graph.node.some((n) => QUANTIZED_PRODUCT_OPS.has(n.op_type) || n.attribute.some((a) => (a.g ? hasQuantizedProducts(a.g) : false)));
}
