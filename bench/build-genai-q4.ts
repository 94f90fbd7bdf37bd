// Writes a benchmark model of a large shape as onnxruntime-genai's builder writes its int4 CPU
// models (builders/base.py): SimplifiedLayerNormalization then SkipSimplifiedLayerNormalization
// carrying the residual, MatMulNBits (4 bits, block 32, accuracy level 4) for every linear and the
// head, GroupQueryAttention with rotary inside from cos/sin caches, per-head q/k RMSNorm for Qwen3,
// SiLU as Sigmoid · x, a float32 embedding table, weights in external data. The quantized tensors
// are written directly (random packed nibbles and scales), never through a float32 copy, so an
// 8B shape takes its q4 size on disk and little memory to write.
// argv: directory, shape as JSON ({family, layers, d, heads, kvHeads, headDim, ffn, vocab, nPositions, ropeTheta, tied, qkNorm}),
// and "aligned" (tensors at 4096-byte offsets, as onnxruntime's writer with align_offset) or
// "unaligned" (back to back, as onnx.save_model writes them).
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { DataType, encodeModel, type Model, type Tensor, type ValueInfo } from '../src/onnx/proto.js';
import { GraphBuilder } from '../test/fixtures/onnx-builder.js';
import { sentencePieceTokenizer } from '../test/fixtures/sentencepiece.js';

export interface GenaiShape {
  family: 'llama' | 'qwen3'; layers: number; d: number; heads: number; kvHeads: number; headDim: number; ffn: number;
  vocab: number; nPositions: number; ropeTheta: number; tied: boolean; qkNorm: boolean;
}

const BLOCK = 32;

/** xorshift32: fast deterministic bytes, so a multi-gigabyte model writes at disk speed. */
function fillRandom(bytes: Uint8Array, state: { s: number }): void {
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
  let s = state.s;
  for (let i = 0; i < words.length; i++) { s ^= s << 13; s ^= s >>> 17; s ^= s << 5; words[i] = s >>> 0; }
  state.s = s;
}

export function writeGenaiQ4(dir: string, shape: GenaiShape, aligned: boolean): void {
  const { layers, d, heads, kvHeads, headDim: hd, ffn, vocab, nPositions } = shape;
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  const onnxName = 'model_q4.onnx', dataName = `${onnxName}_data`;
  const fd = openSync(join(dir, 'onnx', dataName), 'w');
  let offset = 0;
  const random = { s: 0x9e3779b9 };
  const initializers: Tensor[] = [];
  const CHUNK = 1 << 24;
  /** Appends a tensor's bytes, produced chunk by chunk by `fill`, to the data file. */
  const external = (name: string, dims: number[], dataType: number, bytes: number, fill: (chunk: Uint8Array, at: number) => void) => {
    if (aligned) offset = Math.ceil(offset / 4096) * 4096;
    const start = offset;
    for (let at = 0; at < bytes; at += CHUNK) {
      const chunk = new Uint8Array(Math.min(CHUNK, bytes - at));
      fill(chunk, at);
      writeSync(fd, chunk, 0, chunk.length, offset);
      offset += chunk.length;
    }
    initializers.push({ name, dims, data_type: dataType, data_location: 1, external_data: [{ key: 'location', value: dataName }, { key: 'offset', value: String(start) }, { key: 'length', value: String(bytes) }] });
    return name;
  };
  const floats = (name: string, dims: number[], value: (i: number) => number) => external(name, dims, DataType.FLOAT, dims.reduce((a, b) => a * b, 1) * 4, (chunk, at) => {
    const view = new Float32Array(chunk.buffer, chunk.byteOffset, chunk.byteLength >> 2);
    for (let i = 0; i < view.length; i++) view[i] = value((at >> 2) + i);
  });
  /** Uniform in [-a, a] (std a/√3) from the random bytes, a chunk at a time. */
  const noiseFloats = (name: string, dims: number[], std: number) => external(name, dims, DataType.FLOAT, dims.reduce((a, b) => a * b, 1) * 4, (chunk) => {
    fillRandom(chunk, random);
    const words = new Uint32Array(chunk.buffer, chunk.byteOffset, chunk.byteLength >> 2);
    const view = new Float32Array(chunk.buffer, chunk.byteOffset, chunk.byteLength >> 2);
    const a = std * Math.sqrt(3);
    for (let i = 0; i < words.length; i++) view[i] = (words[i] / 4294967296 * 2 - 1) * a;
  });

  const g = new GraphBuilder();
  /** MatMulNBits of x [.., K] by a random 4-bit B [K, N]: packed [N, K/32, 16], one scale per block, zero point 8. */
  const linear = (scope: string, x: string, K: number, N: number) => {
    const blocks = K / BLOCK;
    const packed = external(`${scope}.weight_Q4`, [N, blocks, BLOCK / 2], DataType.UINT8, N * blocks * (BLOCK / 2), (chunk) => fillRandom(chunk, random));
    // Nibbles are uniform in 0..15 (std 4.6 around 8): scale so each weight has std ≈ 1/√K.
    const scale = 1 / (4.6 * Math.sqrt(K));
    const scales = floats(`${scope}.weight_scales`, [N * blocks], () => scale);
    const y = g.op1(scope, 'MatMulNBits', [x, packed, scales], { K, N, bits: 4, block_size: BLOCK, accuracy_level: 4 });
    g.nodes[g.nodes.length - 1].domain = 'com.microsoft';
    return y;
  };
  const ones = (name: string, n: number) => floats(name, [n], () => 1);
  const contrib = () => { g.nodes[g.nodes.length - 1].domain = 'com.microsoft'; };

  const embed = noiseFloats('model.embed_tokens.weight', [vocab, d], 1);
  const half = hd / 2;
  const cosCache = floats('cos_cache', [nPositions, half], (i) => Math.cos(Math.floor(i / half) / shape.ropeTheta ** ((2 * (i % half)) / hd)));
  const sinCache = floats('sin_cache', [nPositions, half], (i) => Math.sin(Math.floor(i / half) / shape.ropeTheta ** ((2 * (i % half)) / hd)));

  // attention_mask → seqlens_k (sum − 1, int32) and total_sequence_length (int32), as the builder derives them.
  const R = '/model/attn_mask_reformat';
  const seqlensK = g.op1(R, 'Cast', [g.op1(R, 'Sub', [g.op1(R, 'ReduceSum', ['attention_mask', g.ints(R, [1])], { keepdims: 0 }), g.ints(R, [1], true)])], { to: DataType.INT32 });
  const totalLength = g.op1(R, 'Cast', [g.op1(R, 'Gather', [g.op1(R, 'Shape', ['attention_mask']), g.ints(R, [1], true)], { axis: 0 })], { to: DataType.INT32 });

  let residual = g.op1('/model/embed_tokens', 'Gather', [embed, 'input_ids']);
  let normed = g.op1('/model/layers.0/input_layernorm', 'SimplifiedLayerNormalization', [residual, ones('model.layers.0.input_layernorm.weight', d)], { axis: -1, epsilon: { float: 1e-5 }, stash_type: 1 });
  let pendingBranch: string | undefined;
  const skipNorm = (scope: string, branch: string, weight: string, keepSum: boolean) => {
    const outs = g.op(scope, 'SkipSimplifiedLayerNormalization', [branch, residual, weight], { epsilon: { float: 1e-5 } }, keepSum ? 4 : 1);
    contrib();
    if (keepSum) { g.nodes[g.nodes.length - 1].output = [outs[0], '', '', outs[3]]; residual = outs[3]; }
    return outs[0];
  };
  const headNorm = (scope: string, x: string, n: number, weight: string) => {
    // Qwen3's per-head RMSNorm: [B, S, n·hd] → [B, S, n, hd], normalised over hd, back.
    const shaped = g.op1(scope, 'Reshape', [x, g.ints(scope, [0, 0, n, hd])]);
    const norm = g.op1(scope, 'SimplifiedLayerNormalization', [shaped, weight], { axis: -1, epsilon: { float: 1e-6 }, stash_type: 1 });
    return g.op1(scope, 'Reshape', [norm, g.ints(scope, [0, 0, n * hd])]);
  };
  const presents: string[] = [];
  for (let l = 0; l < layers; l++) {
    const H = `/model/layers.${l}`, A = `${H}/attn`;
    if (pendingBranch) normed = skipNorm(`${H}/input_layernorm`, pendingBranch, ones(`model.layers.${l}.input_layernorm.weight`, d), true);
    let q = linear(`${A}/q_proj`, normed, d, heads * hd);
    let k = linear(`${A}/k_proj`, normed, d, kvHeads * hd);
    const v = linear(`${A}/v_proj`, normed, d, kvHeads * hd);
    if (shape.qkNorm) {
      q = headNorm(`${A}/q_norm`, q, heads, ones(`model.layers.${l}.self_attn.q_norm.weight`, hd));
      k = headNorm(`${A}/k_norm`, k, kvHeads, ones(`model.layers.${l}.self_attn.k_norm.weight`, hd));
    }
    const [attn, presentK, presentV] = g.op(`${A}/GroupQueryAttention`, 'GroupQueryAttention',
      [q, k, v, `past_key_values.${l}.key`, `past_key_values.${l}.value`, seqlensK, totalLength, cosCache, sinCache],
      { num_heads: heads, kv_num_heads: kvHeads, do_rotary: 1, rotary_interleaved: 0, scale: { float: 1 / Math.sqrt(hd) } }, 3);
    contrib();
    presents.push(presentK, presentV);
    const o = linear(`${A}/o_proj`, attn, heads * hd, d);
    const mlpIn = skipNorm(`${H}/post_attention_layernorm`, o, ones(`model.layers.${l}.post_attention_layernorm.weight`, d), true);
    const gate = linear(`${H}/mlp/gate_proj`, mlpIn, d, ffn);
    const act = g.op1(`${H}/mlp/act_fn`, 'Mul', [gate, g.op1(`${H}/mlp/act_fn`, 'Sigmoid', [gate])]);
    const up = linear(`${H}/mlp/up_proj`, mlpIn, d, ffn);
    pendingBranch = linear(`${H}/mlp/down_proj`, g.op1(`${H}/mlp`, 'Mul', [act, up]), ffn, d);
  }
  // The final norm's sum is not an output (the builder leaves output 3 off the last one).
  const finalNormed = skipNorm('/model/norm', pendingBranch!, ones('model.norm.weight', d), false);
  const logits = linear('/lm_head', finalNormed, d, vocab);
  closeSync(fd);

  const info = (name: string, type: number, dims: (number | string)[]): ValueInfo => ({ name, type: { tensor_type: { elem_type: type, shape: { dim: dims.map((x) => (typeof x === 'number' ? { dim_value: x } : { dim_param: x })) } } } });
  const rename = new Map([[logits, 'logits'], ...presents.map((p, i): [string, string] => [p, `present.${i >> 1}.${i % 2 ? 'value' : 'key'}`])]);
  for (const node of g.nodes) node.output = node.output.map((o) => rename.get(o) ?? o);
  const model: Model = {
    ir_version: 8, producer_name: 'onnxruntime-genai', producer_version: '0.8.0',
    opset_import: [{ domain: '', version: 21 }, { domain: 'com.microsoft', version: 1 }],
    graph: {
      name: 'main_graph', node: g.nodes, initializer: initializers, value_info: [],
      input: [
        info('input_ids', DataType.INT64, ['batch_size', 'sequence_length']),
        info('attention_mask', DataType.INT64, ['batch_size', 'total_sequence_length']),
        ...Array.from({ length: layers }, (_, l) => ['key', 'value'].map((kv) => info(`past_key_values.${l}.${kv}`, DataType.FLOAT, ['batch_size', kvHeads, 'past_sequence_length', hd]))).flat(),
      ],
      output: [
        info('logits', DataType.FLOAT, ['batch_size', 'sequence_length', vocab]),
        ...Array.from({ length: layers }, (_, l) => ['key', 'value'].map((kv) => info(`present.${l}.${kv}`, DataType.FLOAT, ['batch_size', kvHeads, 'total_sequence_length', hd]))).flat(),
      ],
    },
  };
  writeFileSync(join(dir, 'onnx', onnxName), encodeModel(model));
  const modelType = shape.family;
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    model_type: modelType, architectures: [modelType === 'qwen3' ? 'Qwen3ForCausalLM' : 'LlamaForCausalLM'],
    vocab_size: vocab, hidden_size: d, num_hidden_layers: layers, num_attention_heads: heads, num_key_value_heads: kvHeads, head_dim: hd,
    intermediate_size: ffn, max_position_embeddings: nPositions, rope_theta: shape.ropeTheta, rms_norm_eps: 1e-5, hidden_act: 'silu',
    tie_word_embeddings: shape.tied, bos_token_id: 1, eos_token_id: 2, torch_dtype: 'bfloat16',
    'transformers.js_config': { use_external_data_format: { [onnxName]: 1 } },
  }, null, 2));
  const tok = sentencePieceTokenizer(vocab);
  writeFileSync(join(dir, 'tokenizer.json'), tok.tokenizerJson);
  writeFileSync(join(dir, 'tokenizer_config.json'), tok.tokenizerConfigJson);
}
