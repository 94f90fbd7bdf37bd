// onnxruntime's transformer optimizer and the genai model builder fold each residual Add
// into the norm after it (SkipLayerNormalization / SkipSimplifiedLayerNormalization,
// com.microsoft), so the residual stream is only an optional 4th output — absent on the
// final norm. Splitting those nodes back into Add + norm makes every residual a tensor the
// lens can read; onnxruntime fuses them again when it loads the session.
import { AttrType, type Graph, type Node } from './proto.js';

const SKIP_NORMS: Record<string, { norm: string; biasInput: number; hasBeta: boolean }> = {
  SkipLayerNormalization: { norm: 'LayerNormalization', biasInput: 4, hasBeta: true },
  SkipSimplifiedLayerNormalization: { norm: 'SimplifiedLayerNormalization', biasInput: 3, hasBeta: false },
};

/** Whether the graph has any fused residual norm. */
export function hasSkipNorms(graph: Graph): boolean {
  return graph.node.some((n) => n.op_type in SKIP_NORMS);
}

/**
 * Replaces each Skip*LayerNormalization by Add(input, skip[, bias]) → (Simplified)LayerNormalization;
 * the sum keeps the node's output 3 name when it has one. Returns the graph unchanged if there are none.
 */
export function splitSkipNorms(graph: Graph): Graph {
  if (!hasSkipNorms(graph)) return graph;
  const nodes: Node[] = [];
  for (const node of graph.node) {
    const kind = SKIP_NORMS[node.op_type];
    if (!kind) { nodes.push(node); continue; }
    const base = node.name || node.output[0];
    const [input, skip, gamma] = node.input;
    const beta = kind.hasBeta ? node.input[3] : undefined;
    const bias = node.input[kind.biasInput];
    const sum = node.output[3] || `${node.output[0]}/lens_residual`;
    const plain = (name: string, op: string, inputs: string[], outputs: string[], attribute: Node['attribute'] = []): Node => ({ name: `${base}/${name}`, op_type: op, input: inputs, output: outputs, attribute, domain: '' });
    if (bias) {
      const partial = `${sum}/lens_partial`;
      nodes.push(plain('add_skip', 'Add', [input, skip], [partial]), plain('add_bias', 'Add', [partial, bias], [sum]));
    } else {
      nodes.push(plain('add_skip', 'Add', [input, skip], [sum]));
    }
    const epsilon = node.attribute.find((a) => a.name === 'epsilon');
    const attrs: Node['attribute'] = [{ name: 'axis', type: AttrType.INT, i: -1 }, ...(epsilon ? [epsilon] : [])];
    if (kind.hasBeta) {
      // LayerNormalization's outputs are [Y, mean, inv_std_dev], as the fused node's first three.
      const outputs = node.output.slice(0, 3);
      while (outputs.length > 1 && !outputs[outputs.length - 1]) outputs.pop();
      nodes.push(plain('norm', kind.norm, beta ? [sum, gamma, beta] : [sum, gamma], outputs, attrs));
    } else {
      // SimplifiedLayerNormalization's outputs are [Y, inv_std_var]; the fused node's mean (output 1) is never written.
      const outputs = node.output[2] ? [node.output[0], node.output[2]] : [node.output[0]];
      nodes.push(plain('norm', kind.norm, [sum, gamma], outputs, [...attrs, { name: 'stash_type', type: AttrType.INT, i: 1 }]));
    }
  }
  return { ...graph, node: nodes };
}
