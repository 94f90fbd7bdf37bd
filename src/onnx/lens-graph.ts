// The graph rewrite behind the lens: find a pre-norm decoder's residual stream, final norm
// and unembedding by structure, then add outputs that put every layer's residual, at the
// requested positions, through the model's own final norm and head in one stacked pass.
import { attributionOutputs } from './attribution-graph.js';
import { splitSkipNorms } from './fused-norms.js';
import { GraphIndex, pruneGraph, topologicalOrder } from './graph.js';
import { AttrType, DataType, type Graph, type Model, type Node, type Tensor } from './proto.js';

/** The graph could not be read as a decoder the lens supports; the message says what is missing. */
export class GraphStructureError extends Error {}

/** Names of the inputs and outputs the rewrite adds. */
export const LENS_IO = {
  /** INT64 [P]: token positions to read (non-negative). */
  positions: 'lens_positions',
  /**
   * INT64 [Q]: positions at which to read the mid-block residuals m_1..m_L (after attention, before
   * the MLP); Q = 0 (an empty tensor) leaves them out at no cost. Absent from graphs without them.
   */
  midPositions: 'lens_mid_positions',
  /** BOOL [R]: true where a row goes through the final norm before the unembedding. */
  normMask: 'lens_norm_mask',
  /**
   * [B, R, V]: lens logits, site-major in computation order: r_0 (P rows), m_1 (Q rows), r_1 (P rows),
   * …, m_L, r_L; R = (L+1)·P + L·Q.
   */
  logits: 'lens_logits',
  /** [B, R, d]: the residual stream at those sites and positions, rows as in `logits`. */
  hidden: 'lens_hidden',
  /**
   * FLOAT [T, d, d] (empty: [0, 1, 1]): tuned-lens translators W (out × in, as nn.Linear stores them)
   * for the first T sites of the stack: site s's rows h become h + Wₛh + bₛ before the head. T = 0
   * (empty) leaves every row as it is.
   */
  translatorWeight: 'lens_translator_weight',
  /** FLOAT [T, 1, d] (empty: [0, 1, 1]): the translators' biases. */
  translatorBias: 'lens_translator_bias',
} as const;

const MATMUL_OPS = new Set(['MatMul', 'Gemm', 'MatMulInteger', 'MatMulNBits', 'MatMulBnb4', 'FusedMatMul', 'QLinearMatMul']);
/** Ops that move or re-type a tensor without computing on it. */
export const PASS_THROUGH_OPS = new Set(['Reshape', 'Flatten', 'Identity', 'Cast', 'Squeeze', 'Unsqueeze', 'DynamicQuantizeLinear', 'QuantizeLinear', 'DequantizeLinear']);

// Ops whose result for one row depends on the other rows of the tensor (one scale per tensor).
const PER_TENSOR_OPS = new Set(['DynamicQuantizeLinear']);

/** The element type of the residual stream: that of the head's float weights (float16 in an fp16 export), else float. */
function residualType(index: GraphIndex, head: Node[]): number {
  const floats = new Set<number>([DataType.FLOAT, DataType.FLOAT16]);
  for (const n of head) {
    for (const i of n.input) {
      const t = index.graph.initializer.find((x) => x.name === i);
      if (t && floats.has(t.data_type)) return t.data_type;
    }
  }
  return DataType.FLOAT;
}

export interface DecoderStructure {
  /** r_0..r_L: the embeddings and the residual stream after each block, [L+1] tensor names. */
  residuals: string[];
  /**
   * m_1..m_L: the residual after each block's attention, before its MLP, [L] tensor names; undefined
   * when the blocks have no such point, and then `noMidReason` says why.
   */
  mids?: string[];
  noMidReason?: string;
  /**
   * The residuals and mids (of `residuals`, `mids`) the walk reached through a Reshape: a block that
   * runs its MLP on the flattened [B·T, d] tokens (OPT) adds 2-D tensors into the stream, read as
   * [B, T, d] by reshaping them to r_0's shape.
   */
  flattened: Set<string>;
  /** The final norm's output: the input of the first matrix product by a weight after it (the unembedding, or OPT's project_out). */
  finalNormOutput: string;
  /** The node that multiplies by the unembedding matrix. */
  unembed: Node;
  /** The model's logits output. */
  logits: string;
  /** Nodes between the final norm and the head that pick positions (a pruned head); left out of the lens's clone. */
  positionSelects: Node[];
}

/**
 * The If of an Optimum-style merged decoder: the one whose branches compute the graph's outputs (the
 * logits and the cache). Other Ifs stay where they are, e.g. the one onnxruntime-genai's builder
 * writes to pick Phi-3 LongRoPE's short or long rotary caches, whose outputs feed the attention.
 */
export function mergedDecoderIf(graph: Graph): Node | undefined {
  const outputs = new Set(graph.output.map((o) => o.name));
  // An output may be re-typed on its way out (a Cast of the logits).
  for (const n of graph.node) if (n.op_type === 'Cast' && outputs.has(n.output[0])) outputs.add(n.input[0]);
  return graph.node.find((n) => n.op_type === 'If' && n.attribute.some((a) => a.g) && n.output.some((o) => outputs.has(o)));
}

/** Replaces an Optimum-style merged decoder (one If on use_cache_branch) by its no-past branch. */
export function inlineNoPastBranch(graph: Graph): Graph {
  const ifNode = mergedDecoderIf(graph);
  if (!ifNode) return graph;
  // Outer values a branch can read: graph inputs and what outer nodes make of them (an fp16
  // export casts each past_key_values input in the outer graph, and only the past branch reads the casts).
  const outerValues = new Set([...graph.input.map((v) => v.name), ...graph.node.filter((n) => n !== ifNode).flatMap((n) => n.output)]);
  const branches = ifNode.attribute.filter((a) => a.g).map((a) => a.g!);
  // The branch without past reads the fewest of them.
  const inputsRead = (g: Graph) => new Set(g.node.flatMap((n) => n.input).filter((i) => outerValues.has(i))).size;
  const branch = branches.reduce((best, g) => (inputsRead(g) < inputsRead(best) ? g : best));
  const rename = new Map(branch.output.map((o, i) => [o.name, ifNode.output[i]]));
  const renamed = (name: string) => rename.get(name) ?? name;
  const branchNodes = branch.node.map((n) => ({ ...n, input: n.input.map(renamed), output: n.output.map(renamed) }));
  return {
    ...graph,
    node: graph.node.flatMap((n) => (n === ifNode ? branchNodes : [n])),
    initializer: [...graph.initializer, ...(branch.initializer ?? [])],
  };
}

function declaredLastDim(graph: Graph, name: string): number {
  const dims = graph.output.find((o) => o.name === name)?.type?.tensor_type?.shape?.dim ?? [];
  return Number(dims.at(-1)?.dim_value ?? 0);
}

/** Finds the residual stream, final norm and unembedding of a flat pre-norm decoder graph. Throws GraphStructureError. */
export function findDecoderStructure(graph: Graph, layers: number, index = new GraphIndex(graph)): DecoderStructure {
  if (graph.output.length === 0) throw new GraphStructureError('the graph has no outputs');
  // The logits are the output with the widest last dimension (the vocabulary).
  const logits = graph.output.map((o) => o.name).reduce((a, b) => (declaredLastDim(graph, b) > declaredLastDim(graph, a) ? b : a));

  // The unembedding: the first matrix product met walking back from the logits that multiplies by a weight.
  const unembed = breadthFirstBack(index, logits, (n) => MATMUL_OPS.has(n.op_type) && n.input.some((i) => i && !index.dynamic.has(i)));
  if (!unembed) throw new GraphStructureError('no unembedding (a MatMul or Gemm by a weight) feeds the logits');
  let finalNormOutput = index.dynamicInputs(unembed)[0];
  if (!finalNormOutput) throw new GraphStructureError('the unembedding has no activation input');
  const positionSelects: Node[] = [];
  // Between the final norm and the unembedding: moves, casts, position picks (a head pruned to the
  // last position), and products by a weight (OPT's project_out).
  const byWeight = (n: Node) => MATMUL_OPS.has(n.op_type) && index.dynamicInputs(n).length === 1;
  for (let node = index.producer.get(finalNormOutput); node; node = index.producer.get(finalNormOutput)) {
    if (selectsPositions(index, node)) positionSelects.push(node);
    else if (!PASS_THROUGH_OPS.has(node.op_type) && !byWeight(node)) break;
    finalNormOutput = index.dynamicInputs(node)[0];
  }

  // The last residual addition: the first Add met walking back from the norm whose one input feeds the other.
  const residualAdd = (n: Node) => n.op_type === 'Add' && previousResidual(index, n) !== undefined;
  const lastAdd = breadthFirstBack(index, finalNormOutput, residualAdd);
  if (!lastAdd) throw new GraphStructureError('no residual addition feeds the final norm');
  // The last residual as the final norm reads it: back in [B, T, d] where the block flattened it.
  const flattened = new Set<string>();
  const normInputs = index.ancestors([finalNormOutput]);
  let last = lastAdd.output[0];
  for (let next = reshapeOf(index, last, normInputs); next; next = reshapeOf(index, last, normInputs)) last = next;
  if (last !== lastAdd.output[0]) flattened.add(last);
  const chain = [last];
  for (let node: Node | undefined = lastAdd; node && node.op_type === 'Add'; node = index.producer.get(throughMoves(index, chain[0]))) {
    const prev = previousResidual(index, node);
    if (prev === undefined) break;
    if (throughMoves(index, prev) !== throughCasts(index, prev)) flattened.add(prev);
    chain.unshift(prev);
  }
  const adds = chain.length - 1;
  if (layers <= 0 || adds % layers !== 0 || adds === 0) {
    throw new GraphStructureError(`found ${adds} residual additions before the final norm, which does not fit ${layers} layers`);
  }
  const perBlock = adds / layers;
  const residuals = Array.from({ length: layers + 1 }, (_, l) => chain[l * perBlock]);
  if (flattened.has(residuals[0])) throw new GraphStructureError('the embeddings reach the first block flattened to [tokens, width]');
  return { residuals, ...findMids(chain, layers), flattened, finalNormOutput, unembed, logits, positionSelects };
}

/** A constant initializer or Constant node's integer values; undefined for anything computed. */
function constantInts(index: GraphIndex, name: string): number[] | undefined {
  const tensor = index.graph.initializer.find((t) => t.name === name)
    ?? index.producer.get(name)?.attribute.find((a) => a.name === 'value' && index.producer.get(name)?.op_type === 'Constant')?.t;
  if (!tensor || (tensor.data_type !== DataType.INT64 && tensor.data_type !== DataType.INT32)) return undefined;
  if (tensor.raw_data && tensor.raw_data.length > 0) {
    const view = new DataView(tensor.raw_data.buffer, tensor.raw_data.byteOffset, tensor.raw_data.byteLength);
    const size = tensor.data_type === DataType.INT64 ? 8 : 4;
    return Array.from({ length: tensor.raw_data.byteLength / size }, (_, i) => (size === 8 ? Number(view.getBigInt64(i * size, true)) : view.getInt32(i * size, true)));
  }
  return (tensor.data_type === DataType.INT64 ? tensor.int64_data : tensor.int32_data)?.map(Number);
}

/**
 * Whether a node between the final norm and the head picks sequence positions (axis 1) of
 * [B, T, d]: the genai builder's pruned head Gather(axis 1, -1) → Unsqueeze(1), or the
 * `hidden_states[:, -logits_to_keep:]` Slice of newer transformers. The lens's rows stand on
 * that axis, so the clone of the head leaves these out.
 */
function selectsPositions(index: GraphIndex, node: Node): boolean {
  if (node.op_type === 'Gather') return attributeInt(node, 'axis', 0) === 1 && constantInts(index, node.input[1]) !== undefined;
  if (node.op_type === 'Slice') {
    const axes = node.input[3] ? constantInts(index, node.input[3]) : [0];
    return axes?.length === 1 && (axes[0] === 1 || axes[0] === -2) && constantInts(index, node.input[1]) !== undefined && constantInts(index, node.input[2]) !== undefined;
  }
  if (node.op_type === 'Unsqueeze') {
    // Restores the axis a scalar-index Gather removed.
    const axes = node.input[1] ? constantInts(index, node.input[1]) : node.attribute.find((a) => a.name === 'axes')?.ints?.map(Number);
    const from = index.producer.get(index.dynamicInputs(node)[0] ?? '');
    return axes?.length === 1 && axes[0] === 1 && from?.op_type === 'Gather' && selectsPositions(index, from) && isScalarIndex(index, from.input[1]);
  }
  return false;
}

function isScalarIndex(index: GraphIndex, name: string): boolean {
  const tensor = index.graph.initializer.find((t) => t.name === name) ?? index.producer.get(name)?.attribute.find((a) => a.name === 'value')?.t;
  return tensor !== undefined && tensor.dims.length === 0;
}

/**
 * The mid-block residuals of a residual chain r_0, …, r_L with its intermediate sums: a sequential
 * block (GPT-2) adds twice, r + attn(r) = m, then m + mlp(m) (the chain is only followed through an
 * Add whose branch reads the other input, so the MLP here reads m). Parallel attention and MLP
 * (GPT-J, GPT-NeoX: r + (attn(r) + mlp(r))) add once per block and have no such point.
 */
function findMids(chain: string[], layers: number): { mids?: string[]; noMidReason?: string } {
  const perBlock = (chain.length - 1) / layers;
  if (perBlock === 1) return { noMidReason: 'its attention and MLP run in parallel on the same residual, so there is no residual between them' };
  if (perBlock !== 2) return { noMidReason: `its blocks have ${perBlock} residual additions, not attention then MLP` };
  return { mids: Array.from({ length: layers }, (_, l) => chain[2 * l + 1]) };
}

/**
 * The tensor a Cast chain starts from. A traced RMSNorm's `hidden_states.to(torch.float32)` is a
 * Cast of the residual that the trace then uses for the residual itself (the cast returns the
 * same tensor), so a block's Add reads the previous Add's sum through a Cast.
 */
function throughCasts(index: GraphIndex, name: string): string {
  for (let node = index.producer.get(name); node?.op_type === 'Cast' || node?.op_type === 'Identity'; node = index.producer.get(name)) {
    name = index.dynamicInputs(node)[0];
  }
  return name;
}

/** The tensor a chain of Casts and Reshapes starts from (a residual Add's input, back to the previous Add's sum). */
function throughMoves(index: GraphIndex, name: string): string {
  for (let node = index.producer.get(name); node && ['Cast', 'Identity', 'Reshape'].includes(node.op_type); node = index.producer.get(name)) {
    name = index.dynamicInputs(node)[0];
  }
  return name;
}

/** The output of a Reshape of `name` that leads to one of `toward`, if any. */
function reshapeOf(index: GraphIndex, name: string, toward: Set<string>): string | undefined {
  return index.consumers.get(name)?.find((n) => n.op_type === 'Reshape' && n.input[0] === name && toward.has(n.output[0]))?.output[0];
}

/**
 * For a residual Add (r + f(r)), the input r; undefined if neither input feeds the other. For
 * parallel branches added one after the other, (r + attn(n(r))) + mlp(n(r)) (Cohere), the outer
 * Add's inputs don't feed each other: its r is the inner Add's, which the other branch also reads,
 * and the inner sum is no residual of its own.
 */
function previousResidual(index: GraphIndex, add: Node): string | undefined {
  const [a, b] = add.input;
  if (!index.dynamic.has(a) || !index.dynamic.has(b) || a === b) return undefined;
  if (index.dependsOn(b, a)) return a;
  if (index.dependsOn(a, b)) return b;
  for (const [sum, branch] of [[a, b], [b, a]]) {
    const inner = index.producer.get(sum);
    const r = inner?.op_type === 'Add' ? previousResidual(index, inner) : undefined;
    if (r !== undefined && index.dependsOn(branch, r)) return r;
  }
  return undefined;
}

function breadthFirstBack(index: GraphIndex, from: string, match: (n: Node) => boolean): Node | undefined {
  const seen = new Set<string>();
  const queue = [from];
  for (let k = 0; k < queue.length; k++) {
    const node = index.producer.get(queue[k]);
    if (!node || seen.has(node.output[0])) continue;
    seen.add(node.output[0]);
    if (match(node)) return node;
    queue.push(...index.dynamicInputs(node));
  }
  return undefined;
}

/** Whether initializer `a` holds exactly the transpose of initializer `b` (both 2-D). */
export type TransposeCheck = (a: Tensor, b: Tensor) => boolean;

function attributeInt(node: Node, name: string, fallback: number): number {
  return Number(node.attribute.find((a) => a.name === name)?.i ?? fallback);
}

/** Whether the logits are the unembedding's product itself, up to reshapes and casts (no bias, scale or cap after it). */
function logitsAreProduct(index: GraphIndex, unembed: Node, logits: string): boolean {
  let name = logits;
  for (let node = index.producer.get(name); node !== unembed; node = index.producer.get(name)) {
    if (!node || !PASS_THROUGH_OPS.has(node.op_type)) return false;
    name = index.dynamicInputs(node)[0];
  }
  return true;
}

/**
 * The token embedding E [V, d] that the unembedding multiplies by, when the head is tied:
 * Gemm(x, E, transB=1), MatMul(x, Transpose(E)), or MatMul(x, Wᵀ) with Wᵀ a stored transpose of E,
 * with nothing but reshapes between the product and the logits.
 * Undefined for any other head (quantized, biased, untied), which is then cloned as it is.
 */
function tiedEmbedding(index: GraphIndex, unembed: Node, logits: string, isTransposeOf?: TransposeCheck): string | undefined {
  const weight = unembed.input[1];
  if (!weight || index.dynamic.has(weight) || !index.dynamic.has(unembed.input[0])) return undefined;
  // A bias added after MatMul(x, Eᵀ) (torch's nn.Linear with bias on 3-D input) would be lost by E · hᵀ.
  if (!logitsAreProduct(index, unembed, logits)) return undefined;
  // float32 only: E·hᵀ sums in another order than the head, which float16 rounding would make visible.
  const initializer = (name: string) => index.graph.initializer.find((t) => t.name === name && t.data_type === DataType.FLOAT);
  if (unembed.op_type === 'Gemm') {
    const plain = attributeInt(unembed, 'transA', 0) === 0 && attributeInt(unembed, 'transB', 0) === 1 && !unembed.input[2];
    const alphaOne = (unembed.attribute.find((a) => a.name === 'alpha')?.f ?? 1) === 1;
    return plain && alphaOne && initializer(weight)?.dims.length === 2 ? weight : undefined;
  }
  if (unembed.op_type !== 'MatMul') return undefined;
  const producer = index.producer.get(weight);
  if (producer?.op_type === 'Transpose') {
    const perm = producer.attribute.find((a) => a.name === 'perm')?.ints ?? [1, 0];
    const source = initializer(producer.input[0]);
    return source?.dims.length === 2 && perm.map(Number).join() === '1,0' ? source.name : undefined;
  }
  const w = initializer(weight);
  if (!w || w.dims.length !== 2 || !isTransposeOf) return undefined;
  const [d, V] = w.dims.map(Number);
  return index.graph.initializer
    .filter((t) => t.dims.length === 2 && Number(t.dims[0]) === V && Number(t.dims[1]) === d && t.data_type === w.data_type)
    .find((t) => isTransposeOf(w, t))?.name;
}

/** Inputs by which an export computes the logits of the last N positions only; transformers.js feeds 0 (all). */
const LOGITS_TO_KEEP_INPUTS = new Set(['num_logits_to_keep']);
// Ops that can pick positions out of the head's input.
const SELECTING_OPS = new Set(['Slice', 'Gather', 'GatherElements', 'GatherND', 'Compress']);

/**
 * Whether the model's logits hold every position of the sequence: no op of the head picks rows
 * out of the residual (an export that computes the last position only), or the positions kept
 * are an input that transformers.js sets to all of them.
 */
function logitsAtEveryPosition(graph: Graph, index: GraphIndex, head: Node[], rLast: string): boolean {
  if (graph.input.some((v) => LOGITS_TO_KEEP_INPUTS.has(v.name))) return true;
  // The activations flowing from r_L, not the shape bookkeeping computed from its Shape.
  const flow = new Set([rLast]);
  for (const n of head) {
    if (n.op_type === 'Shape' || n.op_type === 'Size' || !n.input.some((i) => flow.has(i))) continue;
    if (SELECTING_OPS.has(n.op_type) && flow.has(n.input[0])) return false;
    for (const o of n.output) if (o && index.dynamic.has(o)) flow.add(o);
  }
  return true;
}

function int64Initializer(name: string, values: number[]): Tensor {
  const data = BigInt64Array.from(values.map(BigInt));
  return { name, dims: [values.length], data_type: DataType.INT64, raw_data: new Uint8Array(data.buffer) };
}

/**
 * Rewrites a decoder so that it outputs the lens (LENS_IO) instead of the logits and the KV cache.
 * Merged (If) decoders are flattened to their no-past branch. Throws GraphStructureError.
 */
export function addLensOutputs(model: Model, layers: number, isTransposeOf?: TransposeCheck): { model: Model; structure: DecoderStructure; tiedEmbedding?: string; headsRefused?: string; attributionRefused?: string } {
  const graph = splitSkipNorms(inlineNoPastBranch(model.graph));
  const index = new GraphIndex(graph);
  const structure = findDecoderStructure(graph, layers, index);
  const { residuals, finalNormOutput, logits } = structure;
  const rLast = residuals[residuals.length - 1];
  const nodes: Node[] = [];
  const node = (op: string, inputs: string[], output: string, attrs: Node['attribute'] = []) => {
    nodes.push({ name: `lens/${output}`, op_type: op, input: inputs, output: [output], attribute: attrs, domain: '' });
    return output;
  };
  const axis = (value: number) => [{ name: 'axis', type: AttrType.INT, i: value }];

  // Sites in computation order; the mid-block ones gather at their own positions, none unless asked.
  const mids = structure.mids ?? [];
  const tokenShape = structure.flattened.size > 0 ? node('Shape', [residuals[0]], 'lens/token_shape') : '';
  const unflattened = (name: string, label: string) => (structure.flattened.has(name) ? node('Reshape', [name, tokenShape], `lens/unflattened_${label}`) : name);
  const gathered = residuals.flatMap((r, l) => [
    ...(l > 0 && mids.length > 0 ? [node('Gather', [unflattened(mids[l - 1], `mid_${l}`), LENS_IO.midPositions], `lens/mid_residual_${l}`, axis(1))] : []),
    node('Gather', [unflattened(r, `${l}`), LENS_IO.positions], `lens/residual_${l}`, axis(1)),
  ]);
  const stack = node('Concat', gathered, 'lens/stack', axis(1));
  // The residual is float16 in an fp16 export; the hidden output is float either way.
  node('Cast', [stack], LENS_IO.hidden, [{ name: 'to', type: AttrType.INT, i: DataType.FLOAT }]);
  const maskShape = int64Initializer('lens/mask_shape', [1, -1, 1]);
  const rowShape = int64Initializer('lens/row_shape', [0, 0, 1, -1]);
  const unrowShape = int64Initializer('lens/unrow_shape', [0, 0, -1]);
  const zero = int64Initializer('lens/zero', [0]);

  // Clone the head (final norm and unembedding, with their shape bookkeeping) onto the stack;
  // with a tied embedding, only the norm, and the unembedding is done as E · hᵀ below.
  const embedding = tiedEmbedding(index, structure.unembed, logits, isTransposeOf);
  // With a tied embedding the head is cloned up to the unembedding's input (the norm, and any
  // projection after it), before the reshapes that feed a Gemm its 2-D input.
  let unembedInput = index.dynamicInputs(structure.unembed)[0];
  for (let n = index.producer.get(unembedInput); n && PASS_THROUGH_OPS.has(n.op_type) && n.output[0] !== finalNormOutput; n = index.producer.get(unembedInput)) {
    unembedInput = index.dynamicInputs(n)[0];
  }
  const region = index.descendants(rLast);
  const needed = index.ancestors([embedding ? unembedInput : logits]);
  const head = topologicalOrder(graph.node).filter((n) => !n.output.includes(rLast) && n.output.some((o) => region.has(o) && needed.has(o)));
  const headInput = addTranslators(node, stack, residualType(index, head));
  /** Clones the head onto `input`; rows where `mask` is false skip the norm (the --raw lens on r_0..r_{L-1}). */
  const cloneHead = (into: Node[], input: string, mask: string, prefix: string) => {
    const substitute = new Map([[rLast, input]]);
    for (const original of head) {
      if (structure.positionSelects.includes(original)) {
        substitute.set(original.output[0], substitute.get(index.dynamicInputs(original)[0]) ?? index.dynamicInputs(original)[0]);
        continue;
      }
      const output = original.output.map((o) => (o ? `${prefix}${o}` : o));
      into.push({ ...original, name: `${prefix}${original.name ?? output[0]}`, input: original.input.map((i) => substitute.get(i) ?? i), output });
      original.output.forEach((o, k) => o && substitute.set(o, output[k]));
      if (original.output.includes(finalNormOutput)) {
        const selected = `${prefix}head_input`;
        into.push({ name: selected, op_type: 'Where', input: [mask, substitute.get(finalNormOutput)!, input], output: [selected], attribute: [], domain: '' });
        substitute.set(finalNormOutput, selected);
      }
    }
    return substitute;
  };
  const logitsType = graph.output.find((o) => o.name === logits)?.type?.tensor_type?.elem_type ?? DataType.FLOAT;
  if (head.some((n) => PER_TENSOR_OPS.has(n.op_type))) {
    // A head that quantizes its input dynamically (one scale per tensor) would let the stacked rows
    // share a scale: each row goes through the head alone instead, in a Scan over the rows. The
    // model's own head quantizes the whole sequence with one scale, so a row alone is not what the
    // model outputs: the last layer is taken from the model's own logits where it has them at every
    // position, and only r_0..r_{L-1} (and the mid-block sites) go through the Scan.
    const ownLast = logitsAtEveryPosition(graph, index, head, rLast);
    const perm = [{ name: 'perm', type: AttrType.INTS, ints: [1, 0, 2] }];
    // With the model's own logits for the last site, the Scan takes the other sites' rows only.
    const minusLastRows = ownLast ? node('Neg', [node('Shape', [LENS_IO.positions], 'lens/positions_count')], 'lens/minus_positions_count') : '';
    const scanned = ownLast ? node('Slice', [headInput, 'lens/t_zero', minusLastRows, 'lens/t_one'], 'lens/stack_before_last') : headInput;
    const scannedMask = ownLast ? node('Slice', [LENS_IO.normMask, zero.name, minusLastRows], 'lens/norm_mask_before_last') : LENS_IO.normMask;
    const rows = node('Reshape', [node('Transpose', [scanned], 'lens/stack_t', perm), rowShape.name], 'lens/rows'); // [R', B, 1, d]
    const body: Node[] = [];
    const rowLogits = cloneHead(body, 'lens/row', 'lens/row_norm', 'lens/row/').get(logits)!;
    const typed = (name: string, elem_type: number) => ({ name, type: { tensor_type: { elem_type } } });
    const bodyGraph: Graph = {
      name: 'lens/row_head', node: body, initializer: [], value_info: [],
      input: [typed('lens/row', residualType(index, head)), typed('lens/row_norm', DataType.BOOL)],
      output: [typed(rowLogits, logitsType)],
    };
    nodes.push({
      name: 'lens/rows_head', op_type: 'Scan', input: [rows, scannedMask], output: ['lens/rows_logits'], domain: '',
      attribute: [{ name: 'body', type: AttrType.GRAPH, g: bodyGraph }, { name: 'num_scan_inputs', type: AttrType.INT, i: 2 }],
    });
    const unrowed = node('Reshape', ['lens/rows_logits', unrowShape.name], 'lens/rows_logits_3d'); // [R', B, V]
    if (ownLast) {
      const before = node('Transpose', [unrowed], 'lens/logits_before_last', perm);
      node('Concat', [before, node('Gather', [logits, LENS_IO.positions], 'lens/own_logits', axis(1))], LENS_IO.logits, axis(1));
    } else {
      node('Transpose', [unrowed], LENS_IO.logits, perm);
    }
  } else {
    const mask = node('Reshape', [LENS_IO.normMask, maskShape.name], 'lens/norm_mask_3d');
    const substitute = cloneHead(nodes, headInput, mask, 'lens/');
    if (embedding) {
      // Streaming E [V, d] against the few stacked rows is one pass over the matrix, and needs
      // no packed copy of it (packing W_U [d, V] is what makes a plain MatMul slow here).
      const perm = [{ name: 'perm', type: AttrType.INTS, ints: [0, 2, 1] }];
      const rowsT = node('Transpose', [substitute.get(unembedInput)!], 'lens/head_input_t', perm);
      const logitsT = node('MatMul', [embedding, rowsT], 'lens/logits_t');
      node('Transpose', [logitsT], LENS_IO.logits, perm);
    } else {
      node('Identity', [substitute.get(logits)!], LENS_IO.logits);
    }
  }

  // Direct logit attribution's outputs (none when the head or norm is not something it can read).
  const attribution = attributionOutputs(index, structure, structure.mids === undefined);
  const extra = 'refused' in attribution ? { nodes: [], initializers: [], inputs: [], outputs: [] } : attribution;

  const rewritten: Graph = {
    ...graph,
    node: [...graph.node, ...nodes, ...extra.nodes],
    initializer: [...graph.initializer, maskShape, rowShape, unrowShape, zero, ...TRANSLATOR_CONSTANTS, ...extra.initializers],
    input: [
      ...graph.input,
      { name: LENS_IO.positions, type: { tensor_type: { elem_type: DataType.INT64, shape: { dim: [{ dim_param: 'lens_positions' }] } } } },
      ...(mids.length > 0 ? [{ name: LENS_IO.midPositions, type: { tensor_type: { elem_type: DataType.INT64, shape: { dim: [{ dim_param: 'lens_mid_positions' }] } } } }] : []),
      { name: LENS_IO.normMask, type: { tensor_type: { elem_type: DataType.BOOL, shape: { dim: [{ dim_param: 'lens_rows' }] } } } },
      { name: LENS_IO.translatorWeight, type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: [{ dim_param: 'lens_translators' }, { dim_param: 'lens_translator_in' }, { dim_param: 'lens_translator_out' }] } } } },
      { name: LENS_IO.translatorBias, type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: [{ dim_param: 'lens_translators' }, { dim_value: 1 }, { dim_param: 'lens_translator_out' }] } } } },
      ...extra.inputs,
    ],
    output: [
      { name: LENS_IO.logits, type: { tensor_type: { elem_type: logitsType } } },
      { name: LENS_IO.hidden, type: { tensor_type: { elem_type: DataType.FLOAT } } },
      ...extra.outputs,
    ],
  };
  return { model: { ...model, graph: pruneGraph(rewritten) }, structure, tiedEmbedding: embedding, ...('refused' in attribution ? { attributionRefused: attribution.refused } : attribution.headsRefused ? { headsRefused: attribution.headsRefused } : {}) };
}

// Constants of the translator nodes: slice bounds over a shape and over the site axis.
const TRANSLATOR_CONSTANTS = [
  int64Initializer('lens/t_zero', [0]), int64Initializer('lens/t_one', [1]), int64Initializer('lens/t_two', [2]),
  int64Initializer('lens/t_three', [3]), int64Initializer('lens/t_minus_one', [-1]), int64Initializer('lens/t_end', [Number.MAX_SAFE_INTEGER]),
];

/**
 * Adds the tuned lens's translators between the stacked residual rows [B=1, R, d] (site-major, P =
 * |lens_positions| rows per site) and the head: the first T sites, T from lens_translator_weight
 * [T, d, d], become h + Wₛh + bₛ in float32; the other sites pass through. Returns the name of the
 * head's input in the residual's own type. With T = 0 (the logit lens) it costs a few copies of R×d.
 */
function addTranslators(node: (op: string, inputs: string[], output: string, attrs?: Node['attribute']) => string, stack: string, residual: number): string {
  const c = (name: string) => `lens/t_${name}`;
  const stackShape = node('Shape', [stack], 'lens/t/stack_shape');
  const width = node('Slice', [stackShape, c('two'), c('three')], 'lens/t/width');
  const perSite = node('Shape', [LENS_IO.positions], 'lens/t/per_site');
  const axis0 = [{ name: 'axis', type: AttrType.INT, i: 0 }];
  const siteShape = node('Concat', [c('minus_one'), perSite, width], 'lens/t/site_shape', axis0);
  const sites = node('Reshape', [LENS_IO.hidden, siteShape], 'lens/t/sites'); // [S, P, d], float32 (the hidden output's cast)
  const count = node('Slice', [node('Shape', [LENS_IO.translatorWeight], 'lens/t/weight_shape'), c('zero'), c('one')], 'lens/t/count');
  const tuned = node('Slice', [sites, c('zero'), count, c('zero')], 'lens/t/tuned'); // [T, P, d]
  const untouched = node('Slice', [sites, count, c('end'), c('zero')], 'lens/t/untouched'); // [S−T, P, d]
  // Reshaped to the stack's width, so that the logit lens's empty [0, 1, 1] fits whatever d is.
  const weight = node('Reshape', [LENS_IO.translatorWeight, node('Concat', [count, width, width], 'lens/t/weight_dims', axis0)], 'lens/t/weight');
  const bias = node('Reshape', [LENS_IO.translatorBias, node('Concat', [count, c('one'), width], 'lens/t/bias_dims', axis0)], 'lens/t/bias');
  // W·hᵀ, with only the few rows transposed (never the d×d matrices), then back to rows.
  const perm = [{ name: 'perm', type: AttrType.INTS, ints: [0, 2, 1] }];
  const product = node('MatMul', [weight, node('Transpose', [tuned], 'lens/t/tuned_t', perm)], 'lens/t/product_t'); // [T, d, P]
  const moved = node('Add', [node('Transpose', [product], 'lens/t/product', perm), bias], 'lens/t/shift');
  const translated = node('Add', [tuned, moved], 'lens/t/translated');
  const joined = node('Concat', [translated, untouched], 'lens/t/joined', axis0);
  const back = node('Reshape', [joined, stackShape], 'lens/t/stack_translated');
  return node('Cast', [back], 'lens/t/head_input', [{ name: 'to', type: AttrType.INT, i: residual }]);
}
