// What the lens finds in a decoder graph, for `lens inspect`: the final norm and head nodes,
// whether the head is the tied embedding, and the residual topology — all read by structure.
import { GraphIndex, topologicalOrder } from './graph.js';
import { addLensOutputs, GraphStructureError, inlineNoPastBranch, mergedDecoderIf, PASS_THROUGH_OPS, type TransposeCheck } from './lens-graph.js';
import { splitSkipNorms } from './fused-norms.js';
import { DataType, type Model, type Node, type Tensor } from './proto.js';

export interface GraphDescription {
  /** The node whose output is the final norm's (the head's input). */
  finalNorm: { node: string; op: string; kind: 'LayerNorm' | 'RMSNorm' };
  /** The unembedding node; `tiedTo` names the token embedding when the head is tied to it. */
  head: { node: string; op: string; tiedTo?: string; weight?: string; bias: boolean };
  /**
   * What the model does to the head's product on the way to its logits, in order (the lens does
   * it too): '÷ 4', '× 0.0625', 'softcap 30' (tanh(z / 30) · 30), '+ bias', or an op's name.
   */
  afterHead: string[];
  /** Parallel: attention and MLP read the same residual (h + attn(ln1 h) + mlp(ln2 h)); sequential: the MLP reads h + attn. */
  residual: 'sequential' | 'parallel';
  /** Whether the graph had onnxruntime's fused Skip*LayerNormalization nodes. */
  fusedNorms: boolean;
  /** Whether the graph was an Optimum merged decoder (If on use_cache_branch). */
  merged: boolean;
  /** onnxruntime's fused attention operators in the graph (GroupQueryAttention, …), if any. */
  fusedAttention: string[];
  /**
   * Whether an If other than a merged decoder's picks the attention's rotary caches (onnxruntime-genai's
   * Phi-3 LongRoPE: short or long caches by sequence length); onnxruntime evaluates it as the model does.
   */
  rotaryCacheSwitch: boolean;
  /** Whether the head scores the last position only (the lens applies it at every position read). */
  prunedHead: boolean;
  /** What the model does to the token embedding before block 1 ("+ positions", "× 5.657", "LayerNorm", …). */
  atEmbedding: string[];
  logits: string;
}

const LAYER_NORM_OPS = new Set(['LayerNormalization', 'SkipLayerNormalization']);
const ATTENTION_OPS = new Set(['GroupQueryAttention', 'MultiHeadAttention', 'Attention', 'RotaryEmbedding', 'PackedMultiHeadAttention']);
const RMS_NORM_OPS = new Set(['SimplifiedLayerNormalization', 'SkipSimplifiedLayerNormalization', 'RMSNormalization']);

/** Describes a decoder graph. Throws GraphStructureError as the rewrite does, and when no output is logits. */
export function describeDecoder(model: Model, layers: number, vocabSize: number, isTransposeOf?: TransposeCheck): GraphDescription {
  // A headless export (LlamaModel, GPT2Model) outputs hidden states [B, T, d], not logits [B, T, V].
  const lastDims = model.graph.output.map((o) => Number(o.type?.tensor_type?.shape?.dim?.at(-1)?.dim_value ?? 0));
  if (!lastDims.includes(vocabSize)) {
    throw new GraphStructureError(`no output has the vocabulary (${vocabSize}) as its last dimension, so there is no LM head to read the lens through`);
  }
  const merged = mergedDecoderIf(model.graph) !== undefined;
  const inlined = inlineNoPastBranch(model.graph);
  const fusedNorms = inlined.node.some((n) => n.op_type.startsWith('Skip') && n.op_type.endsWith('LayerNormalization'));
  const fusedAttention = [...new Set(inlined.node.map((n) => n.op_type).filter((op) => ATTENTION_OPS.has(op)))].sort();
  const { structure, tiedEmbedding } = addLensOutputs(model, layers, isTransposeOf);
  const inlinedConsumers = new GraphIndex(inlined).consumers;
  const rotaryCacheSwitch = inlined.node.some((n) => n.op_type === 'If' && n.output.some((o) => inlinedConsumers.get(o)?.some((c) => ATTENTION_OPS.has(c.op_type))));
  const graph = splitSkipNorms(inlined);
  const index = new GraphIndex(graph);
  const { residuals, finalNormOutput, unembed, logits } = structure;
  // Named as in the file: a split Skip*LayerNormalization by its own node; past the Slice newer
  // exports put before the head (logits_to_keep).
  const inlinedIndex = new GraphIndex(inlined);
  let normNode = inlinedIndex.producer.get(finalNormOutput) ?? index.producer.get(finalNormOutput)!;
  while (normNode.op_type === 'Slice' && inlinedIndex.producer.has(normNode.input[0])) normNode = inlinedIndex.producer.get(normNode.input[0])!;
  // A decomposed LayerNorm subtracts the mean between the last residual and the norm's output; RMSNorm does not.
  const after = index.descendants(residuals[residuals.length - 1]);
  const between = [...index.ancestors([finalNormOutput])].filter((t) => after.has(t));
  const subtracts = between.some((t) => index.producer.get(t)?.op_type === 'Sub');
  const kind = LAYER_NORM_OPS.has(normNode.op_type) ? 'LayerNorm' : RMS_NORM_OPS.has(normNode.op_type) ? 'RMSNorm' : subtracts ? 'LayerNorm' : 'RMSNorm';
  const weight = unembed.input.find((i, k) => k > 0 && i && !index.dynamic.has(i));
  return {
    finalNorm: { node: nodeName(normNode), op: normNode.op_type, kind },
    head: { node: nodeName(unembed), op: unembed.op_type, tiedTo: tiedEmbedding ?? sharedHeadWeight(index, weight), weight, bias: headHasBias(index, unembed, logits) },
    afterHead: afterHead(index, unembed, logits),
    // Blocks without a residual between attention and MLP run them in parallel, whether they add
    // them in one Add or two chained ones (Cohere).
    residual: structure.mids ? 'sequential' : 'parallel',
    fusedNorms, merged, fusedAttention, rotaryCacheSwitch, logits,
    prunedHead: structure.positionSelects.length > 0 && structure.positionSelects.some((n) => n.op_type === 'Gather'),
    atEmbedding: opsAtEmbedding(index, residuals[0]),
  };
}


/**
 * The head's weight when the token embedding looks its rows up in it (onnxruntime-genai's
 * shared_embeddings: GatherBlockQuantized over the head's 4-bit weight reshaped to [V, d/2], or a
 * Gather from the float head transposed); else undefined.
 */
function sharedHeadWeight(index: GraphIndex, headWeight: string | undefined): string | undefined {
  const lookup = index.consumers.get('input_ids')?.find((n) => n.op_type.startsWith('Gather'));
  let table = lookup?.input[0];
  const moves = (n: Node) => PASS_THROUGH_OPS.has(n.op_type) || n.op_type === 'Transpose';
  for (let n = table ? index.producer.get(table) : undefined; n && moves(n); n = index.producer.get(table!)) table = n.input[0];
  return headWeight !== undefined && table === headWeight ? headWeight : undefined;
}

/** The steps between the token embedding's lookup and the residual stream r_0, in graph order. */
function opsAtEmbedding(index: GraphIndex, r0: string): string[] {
  let lookup = index.consumers.get('input_ids')?.find((n) => n.op_type.startsWith('Gather'))?.output[0];
  if (!lookup) return [];
  const dequantize = index.consumers.get(lookup)?.find((n) => n.op_type === 'DequantizeLinear');
  if (dequantize) lookup = dequantize.output[0];
  const after = index.descendants(lookup);
  const before = index.ancestors([r0]);
  const between = topologicalOrder(index.graph.node).filter((n) => n.output.some((o) => after.has(o)) && before.has(n.output[0]) && n.output[0] !== lookup);
  const ops = new Set(between.map((n) => n.op_type));
  const steps: string[] = [];
  let normed = false;
  for (const node of between) {
    const constant = constantOperand(index, node);
    if (node.op_type === 'LayerNormalization' || node.op_type === 'SimplifiedLayerNormalization' || (node.op_type === 'ReduceMean' && !normed)) {
      if (!normed) steps.push(node.op_type === 'SimplifiedLayerNormalization' || (node.op_type === 'ReduceMean' && !ops.has('Sub')) ? 'RMSNorm' : 'LayerNorm');
      normed = true;
    } else if (node.op_type === 'Add' && node.input.filter((i) => index.dynamic.has(i)).length === 2 && node.input.some((i) => index.producer.get(i)?.op_type.startsWith('Gather') && !after.has(i))) {
      steps.push('+ positions');
    } else if (!normed && node.op_type === 'Mul' && constant !== undefined) steps.push(`× ${shown(constant)}`);
    else if (!normed && node.op_type === 'Div' && constant !== undefined) steps.push(`÷ ${shown(constant)}`);
  }
  return steps;
}

function nodeName(node: Node): string {
  return node.name || node.output[0];
}

/** Whether a constant is added between the unembedding and the logits (a biased head, as GPT-J's). */
function headHasBias(index: GraphIndex, unembed: Node, logits: string): boolean {
  const gemmBias = unembed.op_type === 'Gemm' && !!unembed.input[2];
  return gemmBias || pathToLogits(index, unembed, logits).some((n) => n.op_type === 'Add' && n.input.some((i) => i && !index.dynamic.has(i)));
}

/** The nodes from the unembedding (exclusive) to the logits, in order, along the product's path. */
function pathToLogits(index: GraphIndex, unembed: Node, logits: string): Node[] {
  const path: Node[] = [];
  for (let t = logits, node = index.producer.get(t); node && node.output[0] !== unembed.output[0]; t = index.dynamicInputs(node)[0], node = index.producer.get(t)) path.unshift(node);
  return path;
}

const shown = (v: number) => String(Number(v.toPrecision(4)));

/** A scalar float constant: a one-element initializer or Constant node output; undefined otherwise. */
function scalarConstant(index: GraphIndex, name: string): number | undefined {
  const constant = index.producer.get(name);
  const tensor: Tensor | undefined = constant?.op_type === 'Constant'
    ? constant.attribute.find((a) => a.name === 'value')?.t
    : index.graph.initializer.find((t) => t.name === name);
  if (!tensor || tensor.dims.reduce((n, d) => n * Number(d), 1) !== 1) return constant?.attribute.find((a) => a.name === 'value_float')?.f;
  if (tensor.float_data?.length) return tensor.float_data[0];
  if (tensor.double_data?.length) return tensor.double_data[0];
  const raw = tensor.raw_data;
  if (!raw) return undefined;
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  if (tensor.data_type === DataType.FLOAT && raw.byteLength === 4) return view.getFloat32(0, true);
  if (tensor.data_type === DataType.DOUBLE && raw.byteLength === 8) return view.getFloat64(0, true);
  return undefined;
}

/** The node's constant scalar operand (the one input not computed from the graph's inputs), if any. */
function constantOperand(index: GraphIndex, node: Node | undefined): number | undefined {
  const constant = node?.input.filter((i) => i && !index.dynamic.has(i)) ?? [];
  return constant.length === 1 ? scalarConstant(index, constant[0]) : undefined;
}

/** GraphDescription.afterHead: the ops between the unembedding and the logits, by what they compute. */
function afterHead(index: GraphIndex, unembed: Node, logits: string): string[] {
  const path = pathToLogits(index, unembed, logits).filter((n) => !PASS_THROUGH_OPS.has(n.op_type));
  const steps: string[] = [];
  for (let k = 0; k < path.length; k++) {
    const node = path[k], c = constantOperand(index, node);
    const cap = node.op_type === 'Div' && path[k + 1]?.op_type === 'Tanh' && path[k + 2]?.op_type === 'Mul' ? constantOperand(index, path[k + 2]) : undefined;
    if (c !== undefined && cap === c) {
      steps.push(`softcap ${shown(c)}`);
      k += 2;
    } else if (c !== undefined && (node.op_type === 'Div' || node.op_type === 'Mul')) {
      steps.push(`${node.op_type === 'Div' ? '÷' : '×'} ${shown(c)}`);
    } else if (node.op_type === 'Add' && node.input.some((i) => i && !index.dynamic.has(i))) {
      steps.push('+ bias');
    } else {
      steps.push(node.op_type);
    }
  }
  return steps;
}
