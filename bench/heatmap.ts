// The heatmap of a 32-token prompt, and its floor, each in its own process (prints JSON timings):
//   node heatmap.js lens DIR [DTYPE]   — the CLI's path: one lens run for every position, the records, the grid
//   node heatmap.js floor DIR [DTYPE]  — transformers.js's bare forward of the same prompt, plus one onnxruntime
//                                        product of every layer's rows at every position [(L+1)·T, d] by the
//                                        model's own head: its op (MatMul, or MatMulNBits for a q4 head) and
//                                        weight shapes, random values
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Dtype } from '../src/model/paths.js';

/** 32 tokens: every word is one token, of GPT-2's vocabulary and of the SentencePiece fixture's (after its <s>). */
const HEATMAP_PROMPTS = [
  'The quick brown fox jumps over the lazy dog The quick brown fox jumps over the lazy dog The quick brown fox jumps over the lazy dog and then it ran home',
  'The cat sat on the mat in Paris the capital of France The most famous sports in USA is the cat on the mat in Paris the capital of France is',
];
export const HEATMAP_TOKENS = 32;
const REPS = Number(process.env.BENCH_REPS ?? 5);

const [mode, dir, dtype = 'fp32'] = process.argv.slice(2) as [string, string, Dtype?];
const times: number[] = [];

/** The first bench prompt that is HEATMAP_TOKENS tokens for this model's tokenizer, as text and input tensors. Throws if none is. */
async function heatmapPrompt() {
  const { AutoTokenizer, env } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  env.localModelPath = '';
  const tokenizer = await AutoTokenizer.from_pretrained(dir);
  for (const text of HEATMAP_PROMPTS) {
    const inputs = tokenizer(text);
    if (Number((inputs.input_ids as { dims: number[] }).dims[1]) === HEATMAP_TOKENS) return { text, inputs };
  }
  throw new Error(`no bench prompt is ${HEATMAP_TOKENS} tokens for ${dir}`);
}

if (mode === 'lens') {
  const { analyzePrompts, LOGITS_BUDGET } = await import('../src/commands/analyze.js');
  const { parseIndexSpec } = await import('../src/lens/spec.js');
  const { renderHeatmap } = await import('../src/render/heatmap.js');
  const { palette } = await import('../src/render/style.js');
  const { text } = await heatmapPrompt();
  const options = {
    model: dir, dtype, raw: false, positions: parseIndexSpec(':', { step: false }), k: 5, offline: true,
    targets: [], env: process.env, warn: () => {}, batch: true,
  };
  // Like per_prompt: the time between consecutive heatmaps of a batch, the first (warm-up) left out.
  let last = performance.now();
  let positions = 0, sites = 0, vocab = 0;
  for await (const result of analyzePrompts(Array.from({ length: REPS + 1 }, () => text), options)) {
    renderHeatmap(result.records, 'prob', palette(false), false, { width: 100 });
    const now = performance.now();
    times.push(now - last);
    last = now;
    positions = result.records.length;
    sites = result.records[0].layers.length;
  }
  if (positions !== HEATMAP_TOKENS) throw new Error(`the bench prompt is ${positions} tokens, not ${HEATMAP_TOKENS}`);
  vocab = Number(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).vocab_size);
  // How many forwards the logits budget splits the positions into (analyze.ts's chunking).
  const forwards = Math.ceil(positions / Math.max(1, Math.floor(LOGITS_BUDGET / (sites * vocab))));
  process.stdout.write(JSON.stringify({ heatmap: times.slice(1), positions, forwards, maxRssKb: process.resourceUsage().maxRSS }));
} else if (mode === 'floor') {
  const { AutoModelForCausalLM, env } = await import('@huggingface/transformers');
  const ort = await import('onnxruntime-node');
  const { DataType, encodeModel, decodeModel } = await import('../src/onnx/proto.js');
  const { findDecoderStructure, inlineNoPastBranch } = await import('../src/onnx/lens-graph.js');
  const { splitSkipNorms } = await import('../src/onnx/fused-norms.js');
  const { readArchitecture } = await import('../src/model/architecture.js');
  const { onnxFileFor } = await import('../src/model/paths.js');
  env.allowRemoteModels = false;
  env.localModelPath = '';
  const arch = readArchitecture(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')), dir);
  const { layers, vocabSize: V } = arch;
  const d = arch.width!;
  const { inputs } = await heatmapPrompt();
  const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype: dtype as 'fp32' });
  const T = HEATMAP_TOKENS;
  const rows = (layers + 1) * T;

  // The model's own head, found as the lens finds it; only its op and weight shapes are kept.
  const source = decodeModel(readFileSync(join(dir, onnxFileFor(dtype))));
  const unembed = findDecoderStructure(splitSkipNorms(inlineNoPastBranch(source.graph)), layers).unembed;
  const info = (name: string, dims: number[]) => ({ name, type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: dims.map((dim_value) => ({ dim_value })) } } } });
  const head = unembed.op_type === 'MatMulNBits'
    // MatMulNBits [rows, K] by its packed 4-bit weights: the same op, attributes and weight shapes (random bytes).
    ? (() => {
      const initializers = unembed.input.slice(1).map((name, i) => {
        if (!name) return undefined;
        const t = source.graph.initializer.find((x) => x.name === name)!;
        const dims = t.dims.map(Number);
        const bytesPer = t.data_type === DataType.UINT8 ? 1 : t.data_type === DataType.FLOAT16 ? 2 : 4;
        const raw = new Uint8Array(dims.reduce((a, b) => a * b, 1) * bytesPer);
        if (t.data_type === DataType.FLOAT) {
          // Scales and biases: small finite floats (random bytes would make NaNs and infinities).
          const view = new Float32Array(raw.buffer);
          for (let j = 0; j < view.length; j++) view[j] = 0.001 + ((j * 2654435761) % 1000) / 1e6;
        } else {
          for (let j = 0; j < raw.length; j++) raw[j] = (j * 2654435761) >>> 24;
        }
        return { name: `w${i + 1}`, dims, data_type: t.data_type, raw_data: raw };
      });
      return {
        op: `MatMulNBits (${unembed.attribute.map((a) => `${a.name} ${a.i}`).join(', ')})`,
        node: { ...unembed, name: 'head', input: ['x', ...initializers.map((t) => t?.name ?? '')], output: ['y'] },
        initializers: initializers.filter((t) => t !== undefined),
        opset: [{ domain: '', version: 21 }, { domain: 'com.microsoft', version: 1 }],
      };
    })()
    // Any float head: one MatMul with a constant weight [d, V].
    : (() => {
      const weight = new Float32Array(d * V);
      for (let i = 0; i < weight.length; i++) weight[i] = ((i * 2654435761) % 1000) / 1e4 - 0.05;
      return {
        op: 'MatMul', node: { op_type: 'MatMul', input: ['x', 'w'], output: ['y'], attribute: [] },
        initializers: [{ name: 'w', dims: [d, V], data_type: DataType.FLOAT, raw_data: new Uint8Array(weight.buffer) }],
        opset: [{ domain: '', version: 14 }],
      };
    })();
  const bytes = encodeModel({
    ir_version: 8, opset_import: head.opset,
    graph: { name: 'unembed', node: [head.node], initializer: head.initializers, input: [info('x', [rows, d])], output: [info('y', [rows, V])], value_info: [] },
  });
  const session = await ort.InferenceSession.create(bytes);
  const x = new ort.Tensor('float32', Float32Array.from({ length: rows * d }, (_, i) => Math.sin(i)), [rows, d]);
  const forward = () => (model as unknown as { forward(i: unknown): Promise<unknown> }).forward(inputs);
  const forwards: number[] = [], matmuls: number[] = [];
  for (let rep = 0; rep <= REPS; rep++) {
    let s = performance.now();
    await forward();
    forwards.push(performance.now() - s);
    s = performance.now();
    await session.run({ x });
    matmuls.push(performance.now() - s);
  }
  await model.dispose();
  await session.release();
  process.stdout.write(JSON.stringify({ forward: forwards.slice(1), matmul: matmuls.slice(1), rows, d, V, op: head.op, maxRssKb: process.resourceUsage().maxRSS }));
} else {
  throw new Error('usage: node heatmap.js lens|floor DIR [DTYPE]');
}
