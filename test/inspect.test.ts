// `lens inspect` on every family fixture, and the one-line refusals of what is not a pre-norm decoder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildDecoderModel, DECODER_FORMS, makeDecoderWeights, tinyConfig, tinyConfigFor, writeDecoderFixture, type Family } from './fixtures/llama.js';
import { SP_VOCAB_SIZE } from './fixtures/sentencepiece.js';
import { writeTorchFixture, torchSkip } from './fixtures/torch-export.js';
import { assertOneLineError, fixture, runCli, scratchDir } from './helpers.js';

const root = scratchDir('inspect');
const env = { LENS_CACHE: join(root, 'cache'), HF_HUB_OFFLINE: '1', NO_COLOR: '1' };

const EXPECTED: [Family, string, Record<string, unknown>][] = [
  ['llama', 'flat', { family: 'LlamaForCausalLM', norm: 'RMSNorm', tied: false, residual: 'sequential', kvHeads: 2, merged: false, fused: false }],
  ['qwen2', 'ort-fused', { family: 'Qwen2ForCausalLM', norm: 'RMSNorm', tied: true, residual: 'sequential', kvHeads: 2, merged: false, fused: true }],
  ['gemma', 'merged', { family: 'GemmaForCausalLM', norm: 'RMSNorm (1 + w)', tied: true, residual: 'sequential', kvHeads: 2, merged: true, fused: false }],
  ['gpt_neox', 'flat', { family: 'GPTNeoXForCausalLM', norm: 'LayerNorm', tied: false, residual: 'parallel', kvHeads: undefined, merged: false, fused: false }],
  ['qwen2', 'genai-gqa', { family: 'Qwen2ForCausalLM', norm: 'RMSNorm', tied: true, residual: 'sequential', kvHeads: 2, merged: false, fused: true }],
  ['llama', 'ort-mha-rotary', { family: 'LlamaForCausalLM', norm: 'RMSNorm', tied: false, residual: 'sequential', kvHeads: 4, merged: false, fused: true }],
  ['llama', 'logits-to-keep', { family: 'LlamaForCausalLM', norm: 'RMSNorm', tied: false, residual: 'sequential', kvHeads: 2, merged: false, fused: false }],
  ['gpt_neo', 'merged', { family: 'GPTNeoForCausalLM', norm: 'LayerNorm', tied: true, residual: 'sequential', kvHeads: undefined, merged: true, fused: false }],
];

for (const [family, form, want] of EXPECTED) {
  test(`inspect names what it found: ${family} ${form}`, async () => {
    const dir = join(root, `${family}-${form}`);
    const config = tinyConfigFor(family, form);
    writeDecoderFixture(dir, config, form);
    const json = await runCli(['inspect', '-m', dir, '--json'], { env });
    assert.equal(json.code, 0, json.stderr);
    const r = JSON.parse(json.stdout);
    assert.deepEqual(
      { family: r.family, norm: r.finalNorm.kind, tied: r.head.tied, residual: r.residual, kvHeads: r.kvHeads, merged: r.graph.merged, fused: r.graph.fusedNorms },
      want,
    );
    assert.notEqual(r.finalNorm.op, 'Slice', 'the norm, not the positions slice before the head');
    const attention: Record<string, string[]> = { 'genai-gqa': ['GroupQueryAttention'], 'ort-mha-rotary': ['MultiHeadAttention', 'RotaryEmbedding'] };
    assert.deepEqual(r.graph.fusedAttention, attention[form] ?? []);
    assert.equal(r.layers, 3);
    assert.equal(r.width, config.d);
    assert.equal(r.contextLength, 64);
    assert.equal(r.cache.ready, false);
    const text = await runCli(['inspect', '-m', dir], { env });
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`^family +${family} \\(${want.family}\\)$`, 'm'));
    assert.match(text.stdout, /^final norm +.*node /m);
    assert.match(text.stdout, new RegExp(`^residual +${want.residual}`, 'm'));
    assert.match(text.stdout, /^cache +.*\(built on the first run\)$/m);
  });
}

test('inspect on GPT-2 reports a tied head and the cache entry once a run built it', async () => {
  const { dir } = fixture('opset14-flat');
  const cacheEnv = { ...env, LENS_CACHE: join(root, 'gpt2-cache') };
  assert.equal((await runCli(['topk', '-m', dir, 'Hello'], { env: cacheEnv })).code, 0);
  const r = JSON.parse((await runCli(['inspect', '-m', dir, '--json'], { env: cacheEnv })).stdout);
  assert.equal(r.family, 'GPT2LMHeadModel');
  assert.equal(r.head.tied, true);
  assert.equal(r.finalNorm.kind, 'LayerNorm');
  assert.equal(r.cache.ready, true);
});

/** A complete model directory whose config.json says what it is. */
function fakeModel(name: string, config: Record<string, unknown>): string {
  const dir = join(root, name);
  writeDecoderFixture(dir, tinyConfig('llama'), 'flat');
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

const REFUSALS: [string, Record<string, unknown>, RegExp][] = [
  ['bert', { model_type: 'bert', architectures: ['BertForMaskedLM'], num_hidden_layers: 2, vocab_size: 382 }, /describes an encoder \(bert\), not a decoder with an LM head/],
  ['t5', { model_type: 't5', architectures: ['T5ForConditionalGeneration'], is_encoder_decoder: true, num_layers: 2, vocab_size: 382 }, /describes an encoder-decoder \(t5\)/],
  ['gpt1', { model_type: 'openai-gpt', architectures: ['OpenAIGPTLMHeadModel'], n_layer: 3, vocab_size: 382 }, /describes a post-norm decoder \(openai-gpt\)/],
  ['headless', { model_type: 'llama', architectures: ['LlamaModel'], num_hidden_layers: 3, vocab_size: 382 }, /without an LM head \(LlamaModel\)/],
];

for (const [name, config, pattern] of REFUSALS) {
  test(`what is not a pre-norm decoder is refused in one line: ${name}`, async () => {
    const dir = fakeModel(name, config);
    for (const command of [['inspect'], ['topk', 'Hello']]) {
      assertOneLineError(await runCli([...command, '-m', dir], { env }), 1, pattern);
    }
  });
}

test('a headless export (hidden states out, no logits) is refused in one line', async () => {
  const model = buildDecoderModel(makeDecoderWeights(tinyConfig('llama')), DECODER_FORMS.flat);
  // As LlamaModel exports: the final norm's output is the graph output last_hidden_state [B, T, d].
  const head = model.graph.node.find((n) => n.name?.startsWith('/lm_head/MatMul'))!;
  model.graph.node = model.graph.node.filter((n) => n !== head).map((n) => ({ ...n, output: n.output.map((o) => (o === head.input[0] ? 'last_hidden_state' : o)) }));
  const dims = [{ dim_param: 'batch_size' }, { dim_param: 'sequence_length' }, { dim_value: 32 }];
  model.graph.output[0] = { name: 'last_hidden_state', type: { tensor_type: { elem_type: 1, shape: { dim: dims } } } };
  const dir = join(root, 'no-head');
  writeDecoderFixture(dir, tinyConfig('llama'), 'flat', model);
  assertOneLineError(await runCli(['inspect', '-m', dir], { env }), 1, new RegExp(`is not a decoder lens can read: no output has the vocabulary \\(${SP_VOCAB_SIZE}\\)`));
  // A run refuses it too, in one line.
  assertOneLineError(await runCli(['topk', '-m', dir, 'Hello'], { env }), 1, /is not a decoder lens can read/);
});

test('a family not in the table but shaped like a pre-norm decoder is read by structure', async () => {
  const dir = join(root, 'mystery');
  writeDecoderFixture(dir, tinyConfig('llama'), 'flat');
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'mystery', architectures: ['MysteryForCausalLM'], num_hidden_layers: 3, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: SP_VOCAB_SIZE }));
  const r = JSON.parse((await runCli(['inspect', '-m', dir, '--json'], { env })).stdout);
  assert.equal(r.family, undefined);
  assert.equal(r.finalNorm.kind, 'RMSNorm'); // told from the graph: no mean subtracted
  assert.equal(r.residual, 'sequential');
  const text = await runCli(['inspect', '-m', dir], { env });
  assert.match(text.stdout, /^family +mystery \(not in lens's table: read by structure\)$/m);
  const run = await runCli(['topk', '-m', dir, '--json', 'The cat\nsat'], { env });
  assert.equal(run.code, 0, run.stderr);
  const record = JSON.parse(run.stdout);
  // The BOS the tokenizer adds is position 0; ▁ reads as a space and <0x0A> as a newline.
  assert.deepEqual(record.tokens.map((t: { text: string }) => t.text), ['<s>', ' The', ' cat', '\n', 's', 'a', 't']);
  assert.equal(record.layers.length, 4);
});

// What each fixture applies around the blocks, from the way it was built (√32 = 5.657 for Gemma's
// embedding scale at d = 32): what inspect must name.
const AROUND_BLOCKS: [string, () => string, { afterHead: string[]; atEmbedding: string[]; prunedHead: boolean; bias: boolean }][] = [
  ['gemma merged', () => { const dir = join(root, 'around-gemma'); writeDecoderFixture(dir, tinyConfig('gemma'), 'merged'); return dir; }, { afterHead: [], atEmbedding: ['× 5.657'], prunedHead: false, bias: false }],
  ['gpt_neo merged', () => { const dir = join(root, 'around-neo'); writeDecoderFixture(dir, tinyConfig('gpt_neo'), 'merged'); return dir; }, { afterHead: [], atEmbedding: ['+ positions'], prunedHead: false, bias: false }],
  ['llama genai-gqa-pruned', () => { const dir = join(root, 'around-pruned'); writeDecoderFixture(dir, tinyConfigFor('llama', 'genai-gqa-pruned'), 'genai-gqa-pruned'); return dir; }, { afterHead: [], atEmbedding: [], prunedHead: true, bias: false }],
  ['gpt2 biased-head (merged)', () => fixture('biased-head').dir, { afterHead: ['+ bias'], atEmbedding: ['+ positions'], prunedHead: false, bias: true }],
  ['gpt2 opset14-flat', () => fixture('opset14-flat').dir, { afterHead: [], atEmbedding: ['+ positions'], prunedHead: false, bias: false }],
];

for (const [name, build, want] of AROUND_BLOCKS) {
  test(`inspect names what the model applies after the head and at the embedding: ${name}`, async () => {
    const dir = build();
    const json = await runCli(['inspect', '-m', dir, '--json'], { env });
    assert.equal(json.code, 0, json.stderr);
    const r = JSON.parse(json.stdout);
    assert.deepEqual({ afterHead: r.afterHead, atEmbedding: r.atEmbedding, prunedHead: r.prunedHead, bias: r.head.bias }, want);
    assert.deepEqual(r.stateInputs, []);
    const text = (await runCli(['inspect', '-m', dir], { env })).stdout;
    if (want.afterHead.length) assert.match(text, new RegExp(`^after head +${want.afterHead.join(', ').replace(/[+×÷]/g, '\\$&')} \\(the lens applies them to every layer\\)$`, 'm'));
    else assert.doesNotMatch(text, /^after head/m);
    if (want.prunedHead) assert.match(text, /scores its last position only/);
  });
}

// What the model does after its head, as torch.onnx.export writes it: named by what it computes.
const AFTER_HEAD: [Family, string, string[]][] = [
  ['llama', 'sequential', []],
  ['granite', 'sequential', ['÷ 4']],
  ['gemma2', 'sequential', ['softcap 30']],
  ['cohere', 'parallel', ['× 0.25']],
];

for (const [family, residual, afterHead] of AFTER_HEAD) {
  test(`inspect names the ops after the head: ${family}`, { skip: torchSkip() }, async () => {
    const dir = join(root, `torch-${family}`);
    writeTorchFixture(dir, tinyConfig(family), 'torch-past');
    const r = JSON.parse((await runCli(['inspect', '-m', dir, '--json'], { env })).stdout);
    assert.deepEqual({ residual: r.residual, afterHead: r.afterHead }, { residual, afterHead });
    const text = await runCli(['inspect', '-m', dir], { env });
    if (afterHead.length) assert.match(text.stdout, new RegExp(`^after head +${afterHead.join(', ')} \\(the lens applies them to every layer\\)$`, 'm'));
    else assert.doesNotMatch(text.stdout, /^after head/m);
  });
}
