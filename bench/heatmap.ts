// The heatmap of a 32-token prompt, and its floor, each in its own process (prints JSON timings):
//   node heatmap.js lens DIR   — the CLI's path: one lens run for every position, the records, the grid
//   node heatmap.js floor DIR  — transformers.js's bare forward of the same prompt, plus one onnxruntime
//                                MatMul [(L+1)·T, d] × [d, V] (the unembedding of every layer at every position)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

/** 32 GPT-2 tokens: every word is one token. */
export const HEATMAP_PROMPT = 'The quick brown fox jumps over the lazy dog The quick brown fox jumps over the lazy dog The quick brown fox jumps over the lazy dog and then it ran home';
export const HEATMAP_TOKENS = 32;
const REPS = Number(process.env.BENCH_REPS ?? 5);

const [mode, dir] = process.argv.slice(2);
const times: number[] = [];

if (mode === 'lens') {
  const { analyzePrompts } = await import('../src/commands/analyze.js');
  const { parseIndexSpec } = await import('../src/lens/spec.js');
  const { renderHeatmap } = await import('../src/render/heatmap.js');
  const { palette } = await import('../src/render/style.js');
  const options = {
    model: dir, dtype: 'fp32' as const, raw: false, positions: parseIndexSpec(':', { step: false }), k: 5, offline: true,
    targets: [], env: process.env, warn: () => {}, batch: true,
  };
  // Like per_prompt: the time between consecutive heatmaps of a batch, the first (warm-up) left out.
  let last = performance.now();
  let positions = 0;
  for await (const result of analyzePrompts(Array.from({ length: REPS + 1 }, () => HEATMAP_PROMPT), options)) {
    renderHeatmap(result.records, 'prob', palette(false), false, { width: 100 });
    const now = performance.now();
    times.push(now - last);
    last = now;
    positions = result.records.length;
  }
  if (positions !== HEATMAP_TOKENS) throw new Error(`the bench prompt is ${positions} tokens, not ${HEATMAP_TOKENS}`);
  process.stdout.write(JSON.stringify({ heatmap: times.slice(1), positions, maxRssKb: process.resourceUsage().maxRSS }));
} else if (mode === 'floor') {
  const { AutoModelForCausalLM, AutoTokenizer, env } = await import('@huggingface/transformers');
  const ort = await import('onnxruntime-node');
  const { DataType, encodeModel } = await import('../src/onnx/proto.js');
  env.allowRemoteModels = false;
  env.localModelPath = '';
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, number>;
  const layers = config.n_layer, d = config.n_embd, V = config.vocab_size;
  const tokenizer = await AutoTokenizer.from_pretrained(dir);
  const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype: 'fp32' });
  const inputs = tokenizer(HEATMAP_PROMPT);
  const T = Number((inputs.input_ids as { dims: number[] }).dims[1]);
  if (T !== HEATMAP_TOKENS) throw new Error(`the bench prompt is ${T} tokens, not ${HEATMAP_TOKENS}`);
  // The unembedding as one MatMul with a constant weight (random values: only the time matters).
  const rows = (layers + 1) * T;
  const weight = new Float32Array(d * V);
  for (let i = 0; i < weight.length; i++) weight[i] = ((i * 2654435761) % 1000) / 1e4 - 0.05;
  const info = (name: string, dims: number[]) => ({ name, type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: dims.map((dim_value) => ({ dim_value })) } } } });
  const bytes = encodeModel({
    ir_version: 8, opset_import: [{ domain: '', version: 14 }],
    graph: {
      name: 'unembed', node: [{ op_type: 'MatMul', input: ['x', 'w'], output: ['y'], attribute: [] }],
      initializer: [{ name: 'w', dims: [d, V], data_type: DataType.FLOAT, raw_data: new Uint8Array(weight.buffer) }],
      input: [info('x', [rows, d])], output: [info('y', [rows, V])], value_info: [],
    },
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
  process.stdout.write(JSON.stringify({ forward: forwards.slice(1), matmul: matmuls.slice(1), rows, d, V, maxRssKb: process.resourceUsage().maxRSS }));
} else {
  throw new Error('usage: node heatmap.js lens|floor DIR');
}
