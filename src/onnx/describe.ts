// What the lens finds in a decoder graph, for `lens inspect`: the final norm and head nodes,
// whether the head is the tied embedding, and the residual topology — all read by structure.
import { GraphIndex } from './graph.js';
import { addLensOutputs, GraphStructureError, inlineNoPastBranch, type TransposeCheck } from './lens-graph.js';
import { splitSkipNorms } from './fused-norms.js';
import type { Model, Node } from './proto.js';

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
  };
}

function nodeName(node: Node): string {
  return node.name || node.output[0];
}

/** Whether a constant is added between the unembedding and the logits (a biased head, as GPT-J's). */
function headHasBias(index: GraphIndex, unembed: Node, logits: string): boolean {
  const gemmBias = unembed.op_type === 'Gemm' && !!unembed.input[2];
  if (gemmBias) return true;
  // By output name: a merged decoder's unembedding comes from another inlining of the branch than `index`'s nodes.
  for (let t = logits, node = index.producer.get(t); node && node.output[0] !== unembed.output[0]; t = index.dynamicInputs(node)[0], node = index.producer.get(t)) {
    if (node.op_type === 'Add' && node.input.some((i) => i && !index.dynamic.has(i))) return true;
  }
  return false;
}
