// What direct logit attribution needs from a decoder graph, added as outputs of the lens graph:
// the final norm's gain, bias and epsilon, the head's rows for the targets asked and its bias and
// scale, and, for parallel blocks, each branch's output. Found by structure, from the residual
// walk of the lens; the head and the output projections are read through stored-products.ts as the
// float matrices their kernels multiply by (quantized weights dequantized in the graph). A head or
// norm it cannot read adds nothing (attribute refuses, naming why).
import type { DecoderStructure } from './lens-graph.js';
import type { GraphIndex } from './graph.js';
import { AttrType, DataType, halfToFloat, type Node, type Tensor, type ValueInfo } from './proto.js';
import { productOutput, storedProductAt, type Emitter, type StoredProduct } from './stored-products.js';

/** Names of the inputs and outputs attribution adds to the lens graph. */
export const ATTRIBUTION_IO = {
  /** INT64 [T]: the token ids whose head rows to read; T = 0 reads none. */
  targetIds: 'lens_target_ids',
  /** INT64 [Q]: positions at which to read the branch outputs (parallel blocks only); Q = 0 reads none. */
  branchPositions: 'lens_branch_positions',
  /** float [T, d]: the unembedding's row W_U[t] for each target id, as the float matrix the head multiplies by (quantized weights dequantized). */
  unembedRows: 'lens_unembed_rows',
  /** float [T]: the head's bias for each target, as it reaches the logits (after the scaling that follows it); 0 without one. */
  headBias: 'lens_head_bias',
  /** float [1]: 1 when the head quantizes its input (q8's DynamicQuantizeLinear, a QDQ QuantizeLinear, int8 MatMulNBits): its logits are then not linear in the residual; 0 otherwise. */
  headRounds: 'lens_head_rounds',
  /** float [1]: the factor the head multiplies W_U·x by before the logits (alpha, logit scales); 1 if none. */
  headScale: 'lens_head_scale',
  /** float [1]: a softcapped head's cap c (logits = c·tanh(u)), whose scale and bias then give c·u; 0 without one. */
  headSoftcap: 'lens_head_softcap',
  /** float [d]: the final norm's gain as it multiplies (Gemma's 1 + w included). */
  normGain: 'lens_norm_gain',
  /** float [d]: the final norm's bias; absent from graphs whose final norm has none. */
  normBias: 'lens_norm_bias',
  /** float [2]: the final norm's epsilon, and 1 when it subtracts the mean (LayerNorm), 0 when not (RMSNorm). */
  normShape: 'lens_norm_shape',
  /** float [B, 2L·Q, d]: parallel blocks' branch outputs attn_1, mlp_1, …, attn_L, mlp_L, Q rows each. */
  branches: 'lens_branches',
  /** INT64 [Q]: positions at which to read each attention's input to its output projection (batch 1); Q = 0 reads none. */
  headPositions: 'lens_head_positions',
  /** INT64 [1]: how many rows of each output projection to read: 0, or all of them (any larger number). */
  headRowCount: 'lens_head_row_count',
  /** float [L·Q, K]: each layer's attention output before its output projection (the heads' concatenation z), K = heads · head size. */
  headInputs: 'lens_head_inputs',
  /** float [L·K', d]: each layer's output projection W_O as z · W_O, K' = K rows when asked, 0 otherwise. */
  headWeights: 'lens_head_weights',
  /** float [L, d]: each layer's output projection bias (zeros without one). */
  headBiases: 'lens_head_biases',
} as const;

/** The nodes, initializers, inputs and outputs to add to the lens graph, or why none can be. */
export type AttributionOutputs =
  | { nodes: Node[]; initializers: Tensor[]; inputs: ValueInfo[]; outputs: ValueInfo[]; headsRefused?: string }
  | { refused: string };

const PASS_THROUGH = new Set(['Reshape', 'Flatten', 'Identity', 'Cast', 'Squeeze', 'Unsqueeze']);
// Between the final norm and the head, newer exports slice the positions to score.
const NORM_PASS_THROUGH = new Set([...PASS_THROUGH, 'Slice', 'Gather']);
const ATTENTION_OPS = new Set(['Softmax', 'Attention', 'MultiHeadAttention', 'GroupQueryAttention', 'PackedMultiHeadAttention']);
const DOUBLE = 11;

class Refusal extends Error {}

/** The numbers of a small constant tensor (float, float16 or double, stored in the graph). Throws Refusal. */
function tensorNumbers(t: Tensor): number[] {
  if (t.external_data?.length) throw new Refusal(`the constant ${t.name} is stored outside the graph`);
  if (t.data_type === DataType.FLOAT) {
    if (t.float_data?.length) return t.float_data;
    const raw = t.raw_data ?? new Uint8Array();
    return Array.from(new Float32Array(Uint8Array.from(raw).buffer));
  }
  if (t.data_type === DOUBLE) {
    if (t.double_data?.length) return t.double_data;
    return Array.from(new Float64Array(Uint8Array.from(t.raw_data ?? []).buffer));
  }
  if (t.data_type === DataType.FLOAT16) {
    const bits = t.int32_data?.length ? t.int32_data : Array.from(new Uint16Array(Uint8Array.from(t.raw_data ?? []).buffer));
    return bits.map(halfToFloat);
  }
  throw new Refusal(`the constant ${t.name} is not a float`);
}

/** The value of a scalar constant (an initializer or a Constant node's), or undefined if `name` is not one. */
function scalarConstant(index: GraphIndex, name: string): number | undefined {
  const initializer = index.graph.initializer.find((t) => t.name === name);
  const producer = index.producer.get(name);
  const tensor = initializer ?? (producer?.op_type === 'Constant' ? producer.attribute.find((a) => a.name === 'value')?.t : undefined);
  // Reads only one-element tensors (a large one may be stored outside the graph).
  if (!tensor || (tensor.dims ?? []).reduce((n: number, k) => n * Number(k), 1) !== 1) return undefined;
  const values = tensorNumbers(tensor);
  return values.length === 1 ? values[0] : undefined;
}

/** The constant (non-dynamic) input of a two-input node whose other input is dynamic. */
function constantInput(index: GraphIndex, node: Node): string | undefined {
  const [a, b] = node.input;
  if (!a || !b) return undefined;
  if (index.dynamic.has(a) && !index.dynamic.has(b)) return b;
  if (index.dynamic.has(b) && !index.dynamic.has(a)) return a;
  return undefined;
}

interface FinalNorm { gain: string; bias?: string; epsilon: number; centred: boolean }

/** The final norm's gain, bias, epsilon and kind, read back from its output. Throws Refusal. */
function readFinalNorm(index: GraphIndex, structure: DecoderStructure): FinalNorm {
  const rLast = structure.residuals[structure.residuals.length - 1];
  let gain: string | undefined, bias: string | undefined;
  let t = structure.finalNormOutput;
  for (let node = index.producer.get(t); node; node = index.producer.get(t)) {
    const epsilonAttribute = Number(node.attribute.find((a) => a.name === 'epsilon')?.f ?? 1e-5);
    if (node.op_type === 'LayerNormalization' || node.op_type === 'SimplifiedLayerNormalization' || node.op_type === 'RMSNormalization') {
      if (gain || bias) throw new Refusal(`the final norm ${node.op_type} is followed by another gain or bias`);
      const centred = node.op_type === 'LayerNormalization';
      return { gain: node.input[1], bias: centred && node.input[2] ? node.input[2] : undefined, epsilon: epsilonAttribute, centred };
    }
    const constant = constantInput(index, node);
    if (NORM_PASS_THROUGH.has(node.op_type) && !(node.op_type === 'Gather' && node.input[0] !== index.dynamicInputs(node)[0])) {
      t = index.dynamicInputs(node)[0];
    } else if (node.op_type === 'Add' && constant && !gain && !bias) {
      bias = constant;
      t = index.dynamicInputs(node)[0];
    } else if (node.op_type === 'Mul' && constant && !gain) {
      gain = constant;
      t = index.dynamicInputs(node)[0];
    } else {
      break;
    }
  }
  if (!gain) throw new Refusal('no gain (a Mul by a constant) ends the final norm');
  // A decomposed norm: the nodes between the last residual and the normalised vector.
  const after = index.descendants(rLast);
  const between = [...index.ancestors([t])].filter((x) => after.has(x) && x !== rLast).map((x) => index.producer.get(x)!).filter(Boolean);
  const centred = between.some((n) => n.op_type === 'Sub');
  const epsilons = new Set(between.filter((n) => n.op_type === 'Add').map((n) => constantInput(index, n)).filter((c): c is string => !!c).map((c) => scalarConstant(index, c)).filter((v): v is number => v !== undefined));
  if (epsilons.size !== 1) throw new Refusal(`the final norm's epsilon is not one constant added (found ${epsilons.size})`);
  return { gain, bias, epsilon: [...epsilons][0], centred };
}

interface Head { product: StoredProduct; roundsInput?: string; bias?: string; biasFactor: number; scale: number; softcap?: number }

/** The unembedding as a stored matrix, its bias and scaling, from the unembedding to the logits. Throws Refusal. */
function readHead(index: GraphIndex, structure: DecoderStructure): Head {
  const { unembed, logits } = structure;
  const product = storedProductAt(index, productOutput(index, unembed));
  if (typeof product === 'string') throw new Refusal(`the head: ${product}`);
  if (!product) throw new Refusal(`the head is a ${unembed.op_type} attribute cannot read as a product by stored weights`);
  // A QuantizeLinear between the norm and a float head (QDQ form) rounds its input as q8's does.
  let quantizes = false;
  for (let t = product.input, n = index.producer.get(t); n && t !== structure.finalNormOutput; t = index.dynamicInputs(n)[0], n = index.producer.get(t)) {
    quantizes ||= n.op_type === 'QuantizeLinear' || n.op_type === 'DynamicQuantizeLinear';
  }
  const roundsInput = product.roundsInput ?? (quantizes ? 'quantizes its input (QuantizeLinear)' : undefined);
  const head: Head = { product, roundsInput, bias: product.bias, biasFactor: product.biasFactor, scale: product.scale };
  // The ops from the head's product to the logits, in computation order.
  const chain: Node[] = [];
  for (let name = logits, node = index.producer.get(name); name !== product.output; name = index.dynamicInputs(node!)[0], node = index.producer.get(name)) {
    if (!node) throw new Refusal('the logits do not come from the head');
    chain.unshift(node);
  }
  let tanh = false;
  for (const node of chain) {
    if (PASS_THROUGH.has(node.op_type)) continue;
    const constant = constantInput(index, node);
    const scalar = constant ? scalarConstant(index, constant) : undefined;
    if (head.softcap !== undefined) throw new Refusal(`the head applies ${node.op_type} after its softcap`);
    if (tanh) {
      // A softcap c·tanh(u): what is attributed is c·u, the logit before the cap (Gemma 2's W·x).
      if (node.op_type !== 'Mul' || scalar === undefined) throw new Refusal(`the head's tanh is followed by ${node.op_type}, not a softcap's Mul`);
      head.softcap = scalar;
      head.scale *= scalar;
      head.biasFactor *= scalar;
    } else if (node.op_type === 'Tanh') {
      tanh = true;
    } else if (node.op_type === 'Add' && constant && !head.bias) {
      head.bias = constant;
      head.biasFactor = 1;
    } else if ((node.op_type === 'Mul' || node.op_type === 'Div') && scalar !== undefined && (node.op_type === 'Mul' || node.input[1] === constant)) {
      const factor = node.op_type === 'Mul' ? scalar : 1 / scalar;
      head.scale *= factor;
      head.biasFactor *= factor;
    } else {
      throw new Refusal(`the head applies ${node.op_type} after the unembedding, which is not a bias, a scale or a softcap`);
    }
  }
  if (tanh && head.softcap === undefined) throw new Refusal('the head ends in a tanh without a softcap\'s Mul');
  return head;
}

/**
 * Refuses a head whose rows are not as wide as the final norm's gain: it reads a projection of the
 * norm's output (OPT's project_out), which the parts would have to go through first. Throws Refusal.
 */
function checkHeadReadsNorm(index: GraphIndex, norm: FinalNorm, head: Head): void {
  const gain = index.graph.initializer.find((t) => t.name === norm.gain)?.dims.map(Number);
  const width = head.product.dims?.[0];
  if (!gain || width === undefined) return;
  if (width !== gain.reduce((a, b) => a * b, 1)) {
    throw new Refusal(`the head reads a ${width}-wide projection of the ${gain.reduce((a, b) => a * b, 1)}-wide final norm (OPT's project_out), which attribute does not carry the parts through`);
  }
}

/** For parallel blocks, the two branch outputs of each block in order [attn_l, mlp_l], l = 1..L. Throws Refusal. */
function readBranches(index: GraphIndex, structure: DecoderStructure): string[][] {
  const { residuals } = structure;
  return residuals.slice(1).map((r, l) => {
    const previous = residuals[l];
    const add = index.producer.get(throughPassThrough(index, r));
    if (add?.op_type !== 'Add') throw new Refusal(`block ${l + 1}'s residual is not an Add`);
    const [a, b] = addedBranches(index, add, previous, l);
    const attends = (x: string) => reaches(index, x, previous, (n) => ATTENTION_OPS.has(n.op_type));
    if (attends(a) === attends(b)) throw new Refusal(`block ${l + 1}'s two branches cannot be told apart as attention and MLP`);
    return attends(a) ? [a, b] : [b, a];
  });
}

/**
 * The two branches a parallel block's residual Add brings in: `previous + (a + b)` (GPT-NeoX), or
 * `(previous + a) + b` (Cohere's `residual + attn + mlp` as torch traces it). Throws Refusal otherwise.
 */
function addedBranches(index: GraphIndex, add: Node, previous: string, l: number): [string, string] {
  const unwrap = (name: string) => index.producer.get(throughPassThrough(index, name));
  // The residual may be read through Casts (a traced norm's float32 cast).
  const other = add.input.find((i) => !sameTensor(index, i, previous));
  if (add.input.some((i) => sameTensor(index, i, previous))) {
    const sum = other ? unwrap(other) : undefined;
    if (sum?.op_type === 'Add' && index.dynamicInputs(sum).length === 2) return [sum.input[0], sum.input[1]];
  } else {
    for (const [k, input] of add.input.entries()) {
      const inner = unwrap(input);
      if (inner?.op_type !== 'Add' || !inner.input.some((i) => sameTensor(index, i, previous))) continue;
      const first = inner.input.find((i) => !sameTensor(index, i, previous));
      if (first && add.input.length === 2) return [first, add.input[1 - k]];
    }
  }
  throw new Refusal(`block ${l + 1} does not add its attention and MLP before the residual`);
}

/** The tensor a chain of pass-through ops (casts, reshapes) starts from. */
function throughPassThrough(index: GraphIndex, name: string): string {
  for (let n = index.producer.get(name); n && PASS_THROUGH.has(n.op_type); n = index.producer.get(name)) name = index.dynamicInputs(n)[0];
  return name;
}

/** Whether two tensors are the same up to pass-through ops (the residual walk may name either side of a Cast). */
function sameTensor(index: GraphIndex, a: string, b: string): boolean {
  return a === b || throughPassThrough(index, a) === throughPassThrough(index, b);
}

/** Whether some node matching `match` lies on a path from `stop` (excluded) back from `from`. */
function reaches(index: GraphIndex, from: string, stop: string, match: (n: Node) => boolean): boolean {
  const seen = new Set<string>([stop]);
  const stack = [from];
  while (stack.length) {
    const t = stack.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    const node = index.producer.get(t);
    if (!node) continue;
    if (match(node)) return true;
    stack.push(...index.dynamicInputs(node));
  }
  return false;
}

interface OutProjection { product: StoredProduct; rows: number; width: number; bias?: string; biasFactor: number; scale: number }

// Ops of a norm: met between the output projection and the residual, they make the attention's
// write a norm of the heads' sum (Gemma 2's and OLMo2's post-attention norms), not linear in it.
const NORM_OPS = new Set(['LayerNormalization', 'SimplifiedLayerNormalization', 'RMSNormalization', 'SkipSimplifiedLayerNormalization', 'SkipLayerNormalization', 'ReduceMean', 'Sqrt', 'Reciprocal']);

/** Whether a norm's op lies between `from` and the nearest matrix products (or attention ops) behind it. */
function normBehind(index: GraphIndex, from: string): boolean {
  const seen = new Set<Node>();
  const stack = [from];
  while (stack.length) {
    const node = index.producer.get(stack.pop()!);
    if (!node || seen.has(node) || node.op_type === 'MatMul' || node.op_type === 'Gemm' || ATTENTION_OPS.has(node.op_type)) continue;
    seen.add(node);
    if (NORM_OPS.has(node.op_type)) return true;
    stack.push(...index.dynamicInputs(node));
  }
  return false;
}

/**
 * Each block's attention output projection, walked back from what the attention adds into the
 * residual (`attention[l]`): optional scalar scale (Granite's residual multiplier), optional bias
 * Add, then a MatMul or Gemm by a stored weight. Throws Refusal, naming a post-attention norm.
 */
function readOutProjections(index: GraphIndex, attention: string[]): OutProjection[] {
  return attention.map((start, l) => {
    let bias: string | undefined;
    let biasFactor = 1, scale = 1;
    let t = start;
    for (let node = index.producer.get(t); node; node = index.producer.get(t)) {
      const constant = constantInput(index, node);
      // Only a Mul's or Div's constant is read (a projection's weight may be stored outside the graph).
      const scalar = constant && (node.op_type === 'Mul' || node.op_type === 'Div') ? scalarConstant(index, constant) : undefined;
      if (PASS_THROUGH.has(node.op_type)) { t = index.dynamicInputs(node)[0]; continue; }
      if (node.op_type === 'Add' && constant && !bias) { bias = constant; biasFactor = scale; t = index.dynamicInputs(node)[0]; continue; }
      if ((node.op_type === 'Mul' || (node.op_type === 'Div' && node.input[1] === constant)) && scalar !== undefined) {
        // A scalar scale is linear: it multiplies every head's share (and a bias behind it).
        scale *= node.op_type === 'Mul' ? scalar : 1 / scalar;
        t = index.dynamicInputs(node)[0];
        continue;
      }
      const product = storedProductAt(index, t);
      if (typeof product === 'string') throw new Refusal(`block ${l + 1}'s attention output projection: ${product}`);
      if (!product || !product.dims || (bias && product.bias)) break;
      if (product.roundsInput && !product.roundInput) {
        throw new Refusal(`block ${l + 1}'s attention output projection ${product.roundsInput}, which the graph does not show, so its heads' shares would not add up to what it writes`);
      }
      const [rows, width] = product.dims;
      if (product.bias) { bias = product.bias; biasFactor = product.biasFactor * scale; }
      return { product, rows, width, bias, biasFactor, scale: scale * product.scale };
    }
    if (normBehind(index, t)) throw new Refusal(`block ${l + 1}'s attention output goes through a norm before the residual (a post-attention norm), and a norm of the heads' sum is not the sum of the heads' parts`);
    throw new Refusal(`block ${l + 1}'s attention does not end in an output projection by a stored weight`);
  });
}

/** What each block's attention adds into the residual: the mid-block Add's other input, or the parallel attention branch. */
function attentionWrites(index: GraphIndex, structure: DecoderStructure, branches: string[][]): string[] {
  if (branches.length > 0) return branches.map(([attention]) => attention);
  return (structure.mids ?? []).map((mid, l) => {
    // The residual walk may name a traced norm's Cast of the sum: the Add is behind it.
    const add = index.producer.get(throughPassThrough(index, mid));
    if (add?.op_type !== 'Add') throw new Refusal(`block ${l + 1}'s mid-block residual is not an Add`);
    const other = add.input.find((i) => !sameTensor(index, i, structure.residuals[l]));
    if (!other) throw new Refusal(`block ${l + 1}'s attention output is not an input of its residual Add`);
    return other;
  });
}

/**
 * The outputs (ATTRIBUTION_IO) that direct logit attribution reads, for a graph whose lens structure
 * is `structure` (`parallel`: blocks add attention and MLP in one residual Add).
 */
export function attributionOutputs(index: GraphIndex, structure: DecoderStructure, parallel: boolean): AttributionOutputs {
  let norm: FinalNorm, head: Head, branches: string[][];
  try {
    norm = readFinalNorm(index, structure);
    head = readHead(index, structure);
    checkHeadReadsNorm(index, norm, head);
    branches = parallel ? readBranches(index, structure) : [];
  } catch (error) {
    if (error instanceof Refusal) return { refused: error.message };
    throw error;
  }
  const nodes: Node[] = [];
  const initializers: Tensor[] = [];
  const node = (op: string, inputs: string[], output: string | string[], attribute: Node['attribute'] = []) => {
    const outputs = typeof output === 'string' ? [output] : output;
    nodes.push({ name: `lens/attribution/${outputs[0]}`, op_type: op, input: inputs, output: outputs, attribute, domain: '' });
    return outputs[0];
  };
  const floats = (name: string, values: number[]) => {
    initializers.push({ name, dims: [values.length], data_type: DataType.FLOAT, raw_data: new Uint8Array(Float32Array.from(values).buffer) });
    return name;
  };
  const ints = (name: string, values: number[]) => {
    initializers.push({ name, dims: [values.length], data_type: DataType.INT64, raw_data: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer) });
    return name;
  };
  const toFloat = (input: string, output: string) => node('Cast', [input], output, [{ name: 'to', type: AttrType.INT, i: DataType.FLOAT }]);
  const axis = (i: number) => [{ name: 'axis', type: AttrType.INT, i }];
  const ids = ATTRIBUTION_IO.targetIds;

  const emit: Emitter = { node, floats, ints };
  // The head's columns for the targets, [d, T], as the float matrix it multiplies by.
  const columns = head.product.block(emit, 'lens/attribution/unembed_', ids);
  node('Transpose', [columns], ATTRIBUTION_IO.unembedRows, [{ name: 'perm', type: AttrType.INTS, ints: [1, 0] }]);
  node('Identity', [floats('lens/attribution/head_rounds', [head.roundsInput ? 1 : 0])], ATTRIBUTION_IO.headRounds);
  if (head.bias) {
    const flat = node('Reshape', [head.bias, ints('lens/attribution/flat', [-1])], 'lens/attribution/bias_flat');
    const picked = toFloat(node('Gather', [flat, ids], 'lens/attribution/bias_rows', axis(0)), 'lens/attribution/bias_float');
    node('Mul', [picked, floats('lens/attribution/bias_factor', [head.biasFactor])], ATTRIBUTION_IO.headBias);
  } else {
    // No bias: zeros, one per target.
    node('Mul', [toFloat(ids, 'lens/attribution/ids_float'), floats('lens/attribution/zero', [0])], ATTRIBUTION_IO.headBias);
  }
  node('Identity', [floats('lens/attribution/head_scale', [head.scale])], ATTRIBUTION_IO.headScale);
  node('Identity', [floats('lens/attribution/head_softcap', [head.softcap ?? 0])], ATTRIBUTION_IO.headSoftcap);
  toFloat(norm.gain, ATTRIBUTION_IO.normGain);
  if (norm.bias) toFloat(norm.bias, ATTRIBUTION_IO.normBias);
  node('Identity', [floats('lens/attribution/norm_shape', [norm.epsilon, norm.centred ? 1 : 0])], ATTRIBUTION_IO.normShape);

  const inputs: ValueInfo[] = [{ name: ids, type: { tensor_type: { elem_type: DataType.INT64, shape: { dim: [{ dim_param: 'lens_targets' }] } } } }];
  const outputNames: string[] = [ATTRIBUTION_IO.unembedRows, ATTRIBUTION_IO.headRounds, ATTRIBUTION_IO.headBias, ATTRIBUTION_IO.headScale, ATTRIBUTION_IO.headSoftcap, ATTRIBUTION_IO.normGain, ...(norm.bias ? [ATTRIBUTION_IO.normBias] : []), ATTRIBUTION_IO.normShape];
  if (branches.length > 0) {
    const positions = ATTRIBUTION_IO.branchPositions;
    inputs.push({ name: positions, type: { tensor_type: { elem_type: DataType.INT64, shape: { dim: [{ dim_param: 'lens_branch_positions' }] } } } });
    const picked = branches.flatMap((pair, l) => pair.map((b, k) => toFloat(node('Gather', [b, positions], `lens/attribution/branch_${l + 1}_${k}`, axis(1)), `lens/attribution/branch_${l + 1}_${k}_float`)));
    node('Concat', picked, ATTRIBUTION_IO.branches, axis(1));
    outputNames.push(ATTRIBUTION_IO.branches);
  }
  // Per-head parts, where every attention ends in a plain output projection (else attribute has no --heads).
  let projections: OutProjection[] | undefined;
  let headsRefused: string | undefined;
  try {
    projections = readOutProjections(index, attentionWrites(index, structure, branches));
  } catch (error) {
    if (!(error instanceof Refusal)) throw error;
    headsRefused = error.message;
  }
  if (projections && projections.length > 0) {
    const positions = ATTRIBUTION_IO.headPositions, rowCount = ATTRIBUTION_IO.headRowCount;
    const int64Input = (name: string, dim: string): ValueInfo => ({ name, type: { tensor_type: { elem_type: DataType.INT64, shape: { dim: [{ dim_param: dim }] } } } });
    inputs.push(int64Input(positions, 'lens_head_positions'), int64Input(rowCount, 'lens_head_row_count'));
    const inputsPicked: string[] = [], weights: string[] = [], biases: string[] = [];
    projections.forEach((proj, l) => {
      const name = (what: string) => `lens/attribution/head_${l + 1}_${what}`;
      // Batch 1: row t of z as [B·T, K] is position t.
      const rows = node('Reshape', [proj.product.input, ints(name('shape'), [-1, proj.rows])], name('z_rows'));
      // quantize_dynamic's projection multiplies the quantized z (one scale for all rows): its heads' shares are those of z̃.
      const rounded = proj.product.roundInput ? proj.product.roundInput(emit, name(''), rows) : rows;
      inputsPicked.push(toFloat(node('Gather', [rounded, positions], name('z'), axis(0)), name('z_float')));
      // [K', N]: all K rows when asked (rowCount), none otherwise.
      const floatWeights = proj.product.block(emit, name('w_'), undefined, rowCount);
      weights.push(proj.scale === 1 ? floatWeights : node('Mul', [floatWeights, floats(name('scale'), [proj.scale])], name('w_scaled')));
      const bias = proj.bias
        ? node('Mul', [toFloat(node('Reshape', [proj.bias, ints(name('bias_shape'), [1, -1])], name('bias_row')), name('bias_float')), floats(name('bias_factor'), [proj.biasFactor])], name('bias'))
        : node('Reshape', [floats(name('no_bias'), new Array(proj.width).fill(0)), ints(name('bias_shape'), [1, -1])], name('bias'));
      biases.push(bias);
    });
    node('Concat', inputsPicked, ATTRIBUTION_IO.headInputs, axis(0));
    node('Concat', weights, ATTRIBUTION_IO.headWeights, axis(0));
    node('Concat', biases, ATTRIBUTION_IO.headBiases, axis(0));
    outputNames.push(ATTRIBUTION_IO.headInputs, ATTRIBUTION_IO.headWeights, ATTRIBUTION_IO.headBiases);
  }
  const outputs = outputNames.map((name) => ({ name, type: { tensor_type: { elem_type: DataType.FLOAT } } }));
  return { nodes, initializers, inputs, outputs, ...(headsRefused ? { headsRefused } : {}) };
}
