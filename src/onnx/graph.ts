// Structural queries over an ONNX graph: who produces and who consumes each tensor,
// which tensors are constant, and which depend on which. Names are only handles here.
import type { Graph, Node } from './proto.js';

/** An index of one (flat) graph. */
export class GraphIndex {
  readonly producer = new Map<string, Node>();
  readonly consumers = new Map<string, Node[]>();
  readonly initializers = new Set<string>();
  /** Tensors computed from graph inputs (everything else is a weight or a constant). */
  readonly dynamic = new Set<string>();

  constructor(readonly graph: Graph) {
    for (const t of graph.initializer) this.initializers.add(t.name);
    for (const node of graph.node) {
      for (const out of node.output) if (out) this.producer.set(out, node);
      for (const inp of node.input) {
        if (!inp) continue;
        const list = this.consumers.get(inp);
        if (list) list.push(node);
        else this.consumers.set(inp, [node]);
      }
    }
    for (const v of graph.input) if (!this.initializers.has(v.name)) this.dynamic.add(v.name);
    for (const node of topologicalOrder(graph.node)) {
      if (node.input.some((i) => this.dynamic.has(i))) for (const o of node.output) this.dynamic.add(o);
    }
  }

  /** The dynamic inputs of a node, in order. */
  dynamicInputs(node: Node): string[] {
    return node.input.filter((i) => this.dynamic.has(i));
  }

  /** Whether `ancestor` is on some path into `tensor` (through dynamic tensors only). */
  dependsOn(tensor: string, ancestor: string): boolean {
    const seen = new Set<string>();
    const stack = [tensor];
    while (stack.length) {
      const t = stack.pop()!;
      if (t === ancestor) return true;
      if (seen.has(t)) continue;
      seen.add(t);
      const node = this.producer.get(t);
      if (node) for (const i of this.dynamicInputs(node)) stack.push(i);
    }
    return false;
  }

  /** All tensors reachable backwards from `tensors` (including them). */
  ancestors(tensors: string[]): Set<string> {
    const seen = new Set<string>();
    const stack = [...tensors];
    while (stack.length) {
      const t = stack.pop()!;
      if (seen.has(t)) continue;
      seen.add(t);
      const node = this.producer.get(t);
      if (node) for (const i of [...node.input, ...outerReads(node)]) if (i) stack.push(i);
    }
    return seen;
  }

  /** All tensors reachable forwards from `tensor` (including it). */
  descendants(tensor: string): Set<string> {
    const seen = new Set<string>();
    const stack = [tensor];
    while (stack.length) {
      const t = stack.pop()!;
      if (seen.has(t)) continue;
      seen.add(t);
      for (const node of this.consumers.get(t) ?? []) for (const o of node.output) if (o) stack.push(o);
    }
    return seen;
  }
}

/** Names a node's subgraphs (Scan or Loop bodies, If branches) read from the enclosing graph. */
export function outerReads(node: Node): string[] {
  const reads: string[] = [];
  for (const a of node.attribute) {
    for (const g of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) {
      const local = new Set([...g.input.map((v) => v.name), ...g.initializer.map((t) => t.name), ...g.node.flatMap((n) => n.output)]);
      for (const n of g.node) for (const i of [...n.input, ...outerReads(n)]) if (i && !local.has(i)) reads.push(i);
      for (const o of g.output) if (!local.has(o.name)) reads.push(o.name);
    }
  }
  return reads;
}

/** Nodes sorted so that every producer comes before its consumers (Kahn's algorithm; stable). Throws on a cycle. */
export function topologicalOrder(nodes: Node[]): Node[] {
  const producerIndex = new Map<string, number>();
  nodes.forEach((n, i) => n.output.forEach((o) => o && producerIndex.set(o, i)));
  const waiting = nodes.map(() => 0);
  const dependents: number[][] = nodes.map(() => []);
  nodes.forEach((n, i) => {
    for (const inp of new Set(n.input)) {
      const p = producerIndex.get(inp);
      if (p !== undefined && p !== i) { waiting[i]++; dependents[p].push(i); }
    }
  });
  const ready = nodes.map((_, i) => i).filter((i) => waiting[i] === 0);
  const order: Node[] = [];
  for (let k = 0; k < ready.length; k++) {
    const i = ready[k];
    order.push(nodes[i]);
    for (const j of dependents[i]) if (--waiting[j] === 0) ready.push(j);
  }
  if (order.length !== nodes.length) throw new Error('the ONNX graph has a cycle');
  return order;
}

/** Keeps only the nodes, initializers and inputs that the given outputs need. */
export function pruneGraph(graph: Graph): Graph {
  const index = new GraphIndex(graph);
  const needed = index.ancestors(graph.output.map((o) => o.name));
  return {
    ...graph,
    node: graph.node.filter((n) => n.output.some((o) => needed.has(o))),
    initializer: graph.initializer.filter((t) => needed.has(t.name)),
    input: graph.input.filter((v) => needed.has(v.name)),
    value_info: [],
  };
}
