// What the lens finds in a decoder graph, for `lens inspect`: the final norm and head nodes,
// whether the head is the tied embedding, and the residual topology — all read by structure.
import { GraphIndex, topologicalOrder } from './graph.js';
import { addLensOutputs, GraphStructureError, inlineNoPastBranch, type TransposeCheck } from './lens-graph.js';
import { splitSkipNorms } from './fused-norms.js';
import { DataType, type Model, type Node } from './proto.js';

export interface GraphDescription {
  /** The node whose output is the final norm's (the head's input). */
  finalNorm: { node: string; op: string; kind: 'LayerNorm' | 'RMSNorm' };
  /** The unembedding node; `tiedTo` names the token embedding when the head is tied to it. */
  head: { node: string; op: string; tiedTo?: string; weight?: string; bias: boolean };
  /** Parallel: one residual addition per block (h + attn(ln1 h) + mlp(ln2 h)); sequential: two. */
  residual: 'sequential' | 'parallel';
  /** Whether the graph had onnxruntime's fused Skip*LayerNormalization nodes. */
  fusedNorms: boolean;
  /** Whether the graph was an Optimum merged decoder (If on use_cache_branch). */
  merged: boolean;
  /** onnxruntime's fused attention operators in the graph (GroupQueryAttention, …), if any. */
  fusedAttention: string[];
  /** What the model does to the head's product before the logits, in order ("+ bias", "÷ 8", "softcap 30", …). */
  afterHead: string[];
  /** Whether the head scores the last position only (the lens applies it at every position read). */
  prunedHead: boolean;
  /** What the model does to the token embedding before block 1 ("+ positions", "× 5.657", "LayerNorm", …). */
  atEmbedding: string[];
  /** Graph inputs besides the ids, mask, positions and key/value cache (state a prompt starts at zero). */
  stateInputs: string[];
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
  const merged = model.graph.node.some((n) => n.op_type === 'If' && n.attribute.some((a) => a.g));
  const inlined = inlineNoPastBranch(model.graph);
  const fusedNorms = inlined.node.some((n) => n.op_type.startsWith('Skip') && n.op_type.endsWith('LayerNormalization'));
  const fusedAttention = [...new Set(inlined.node.map((n) => n.op_type).filter((op) => ATTENTION_OPS.has(op)))].sort();
  const { structure, tiedEmbedding } = addLensOutputs(model, layers, isTransposeOf);
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
  const firstBlock = index.producer.get(residuals[1]);
  const parallel = firstBlock?.op_type === 'Add' && firstBlock.input.includes(residuals[0]);
  const weight = unembed.input.find((i, k) => k > 0 && i && !index.dynamic.has(i));
  return {
    finalNorm: { node: nodeName(normNode), op: normNode.op_type, kind },
    head: { node: nodeName(unembed), op: unembed.op_type, tiedTo: tiedEmbedding, weight, bias: headHasBias(index, unembed, logits) },
    residual: parallel ? 'parallel' : 'sequential',
    fusedNorms, merged, fusedAttention, logits,
    afterHead: opsAfterHead(index, unembed, logits),
    prunedHead: structure.positionSelects.length > 0 && structure.positionSelects.some((n) => n.op_type === 'Gather'),
    atEmbedding: opsAtEmbedding(index, residuals[0]),
    stateInputs: graph.input.map((v) => v.name).filter((name) => index.dynamic.has(name) && !STANDARD_INPUTS.test(name)),
  };
}

const STANDARD_INPUTS = /^(input_ids|attention_mask|position_ids|use_cache_branch|past_key_values\.\d+\.(key|value)|past_key_values\.\d+|past\.\d+\.(key|value)|cache_position|num_logits_to_keep|logits_to_keep)$/;

/** The value of a constant float scalar (an initializer or a Constant node); undefined otherwise. */
function constantScalar(index: GraphIndex, name: string): number | undefined {
  const producer = index.producer.get(name);
  const tensor = index.graph.initializer.find((t) => t.name === name) ?? (producer?.op_type === 'Constant' ? producer.attribute.find((a) => a.name === 'value')?.t : undefined);
  if (!tensor || tensor.dims.reduce((a, b) => a * Number(b), 1) !== 1) return undefined;
  if (tensor.data_type === DataType.FLOAT) {
    if (tensor.float_data?.length) return tensor.float_data[0];
    if (tensor.raw_data?.byteLength === 4) return new DataView(tensor.raw_data.buffer, tensor.raw_data.byteOffset, 4).getFloat32(0, true);
  }
  if (tensor.data_type === DataType.FLOAT16 && tensor.raw_data?.byteLength === 2) return float16(new DataView(tensor.raw_data.buffer, tensor.raw_data.byteOffset, 2).getUint16(0, true));
  return undefined;
}

function float16(bits: number): number {
  const exponent = (bits >> 10) & 0x1f, fraction = bits & 0x3ff, sign = bits & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

const number = (v: number) => String(Number(v.toPrecision(4)));

/** The steps from the head's product to the logits, named: bias, scale, division, softcap (÷ c, tanh, × c). */
function opsAfterHead(index: GraphIndex, unembed: Node, logits: string): string[] {
  const chain: Node[] = [];
  for (let t = logits, node = index.producer.get(t); node && node.output[0] !== unembed.output[0]; t = index.dynamicInputs(node)[0], node = index.producer.get(t)) chain.unshift(node);
  const steps: string[] = [];
  if (unembed.op_type === 'Gemm' && unembed.input[2]) steps.push('+ bias');
  for (let k = 0; k < chain.length; k++) {
    const node = chain[k];
    const constant = node.input.map((i) => (index.dynamic.has(i) ? undefined : constantScalar(index, i))).find((v) => v !== undefined);
    if (node.op_type === 'Div' && constant !== undefined && chain[k + 1]?.op_type === 'Tanh' && chain[k + 2]?.op_type === 'Mul') {
      steps.push(`softcap ${number(constant)}`);
      k += 2;
    } else if (node.op_type === 'Add' && node.input.some((i) => i && !index.dynamic.has(i))) steps.push('+ bias');
    else if (node.op_type === 'Div' && constant !== undefined) steps.push(`÷ ${number(constant)}`);
    else if (node.op_type === 'Mul' && constant !== undefined) steps.push(`× ${number(constant)}`);
    else if (node.op_type === 'Tanh') steps.push('tanh');
    else if (node.op_type === 'Where') steps.push('mask');
    else if (!['Reshape', 'Identity', 'Cast', 'Squeeze', 'Unsqueeze', 'Flatten'].includes(node.op_type)) steps.push(node.op_type);
  }
  return steps;
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
    const constant = node.input.map((i, k) => (k > 0 && !index.dynamic.has(i) ? constantScalar(index, i) : undefined)).find((v) => v !== undefined);
    if (node.op_type === 'LayerNormalization' || node.op_type === 'SimplifiedLayerNormalization' || (node.op_type === 'ReduceMean' && !normed)) {
      if (!normed) steps.push(node.op_type === 'SimplifiedLayerNormalization' || (node.op_type === 'ReduceMean' && !ops.has('Sub')) ? 'RMSNorm' : 'LayerNorm');
      normed = true;
    } else if (node.op_type === 'Add' && node.input.filter((i) => index.dynamic.has(i)).length === 2 && node.input.some((i) => index.producer.get(i)?.op_type.startsWith('Gather') && !after.has(i))) {
      steps.push('+ positions');
    } else if (!normed && node.op_type === 'Mul' && constant !== undefined) steps.push(`× ${number(constant)}`);
    else if (!normed && node.op_type === 'Div' && constant !== undefined) steps.push(`÷ ${number(constant)}`);
  }
  return steps;
}

function nodeName(node: Node): string {
  return node.name || node.output[0];
}

/** Whether a constant is added between the unembedding and the logits (a biased head, as GPT-J's). */
function headHasBias(index: GraphIndex, unembed: Node, logits: string): boolean {
  const gemmBias = unembed.op_type === 'Gemm' && !!unembed.input[2];
  if (gemmBias) return true;
  for (let t = logits, node = index.producer.get(t); node && node.output[0] !== unembed.output[0]; t = index.dynamicInputs(node)[0], node = index.producer.get(t)) {
    if (node.op_type === 'Add' && node.input.some((i) => i && !index.dynamic.has(i))) return true;
  }
  return false;
}
