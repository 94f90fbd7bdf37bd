import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loaderModelType, readArchitecture } from '../../src/model/architecture.js';
import { UserError } from '../../src/errors.js';

test('each family is read through its own config field names', () => {
  const gpt2 = readArchitecture({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_layer: 12, n_embd: 768, n_head: 12, n_positions: 1024, vocab_size: 50257 }, 'c');
  assert.deepEqual([gpt2.layers, gpt2.width, gpt2.heads, gpt2.contextLength, gpt2.vocabSize, gpt2.tiedInConfig], [12, 768, 12, 1024, 50257, true]);
  assert.equal(gpt2.family?.norm, 'LayerNorm');
  const smol = readArchitecture({ model_type: 'llama', architectures: ['LlamaForCausalLM'], num_hidden_layers: 30, hidden_size: 576, num_attention_heads: 9, num_key_value_heads: 3, max_position_embeddings: 8192, vocab_size: 49152, tie_word_embeddings: true }, 'c');
  assert.deepEqual([smol.layers, smol.width, smol.heads, smol.kvHeads, smol.contextLength, smol.tiedInConfig], [30, 576, 9, 3, 8192, true]);
  assert.equal(smol.family?.norm, 'RMSNorm');
  const neo = readArchitecture({ model_type: 'gpt_neo', num_layers: 12, hidden_size: 768, num_heads: 12, max_position_embeddings: 2048, vocab_size: 50257 }, 'c');
  assert.deepEqual([neo.layers, neo.width, neo.heads, neo.contextLength], [12, 768, 12, 2048]);
  const neox = readArchitecture({ model_type: 'gpt_neox', num_hidden_layers: 6, hidden_size: 512, vocab_size: 50304, tie_word_embeddings: false }, 'c');
  assert.equal(neox.family?.residual, 'parallel');
  assert.equal(neox.family?.head.module, 'embed_out');
  const gemma = readArchitecture({ model_type: 'gemma', num_hidden_layers: 18, vocab_size: 256000 }, 'c');
  assert.equal(gemma.family?.norm, 'RMSNorm (1 + w)');
  assert.equal(gemma.family?.embeddingScale, 'sqrt(d)');
  assert.equal(gemma.contextLength, Infinity);
  const bloom = readArchitecture({ model_type: 'bloom', architectures: ['BloomForCausalLM'], n_layer: 24, hidden_size: 1024, n_head: 16, vocab_size: 250880 }, 'c');
  assert.deepEqual([bloom.layers, bloom.width, bloom.heads, bloom.tiedInConfig, bloom.family?.embeddingNorm], [24, 1024, 16, true, 'LayerNorm']);
  const opt = readArchitecture({ model_type: 'opt', architectures: ['OPTForCausalLM'], num_hidden_layers: 12, hidden_size: 768, ffn_dim: 3072, num_attention_heads: 12, max_position_embeddings: 2048, do_layer_norm_before: true, word_embed_proj_dim: 768, vocab_size: 50272 }, 'c');
  assert.deepEqual([opt.layers, opt.width, opt.heads, opt.contextLength, opt.tiedInConfig, opt.family?.residual], [12, 768, 12, 2048, true, 'sequential']);
  const phi = readArchitecture({ model_type: 'phi', architectures: ['PhiForCausalLM'], num_hidden_layers: 32, hidden_size: 2560, num_attention_heads: 32, partial_rotary_factor: 0.4, vocab_size: 51200, tie_word_embeddings: false }, 'c');
  assert.deepEqual([phi.family?.residual, phi.family?.head.bias, phi.tiedInConfig], ['parallel', true, false]);
  const lfm2 = readArchitecture({ model_type: 'lfm2', architectures: ['Lfm2ForCausalLM'], num_hidden_layers: 16, hidden_size: 1024, num_attention_heads: 16, num_key_value_heads: 8, vocab_size: 65536 }, 'c');
  assert.deepEqual([lfm2.layers, lfm2.kvHeads, lfm2.family?.norm], [16, 8, 'RMSNorm']);
  assert.match(lfm2.family?.stateInputs ?? '', /past_conv/);
  // A family lens does not list is still read through the common names (its graph decides).
  const other = readArchitecture({ model_type: 'newfamily', num_hidden_layers: 4, vocab_size: 100 }, 'c');
  assert.equal(other.family, undefined);
  assert.equal(other.layers, 4);
});

test('what is not a pre-norm decoder is refused in one line naming what it is', () => {
  const refused = (config: Record<string, unknown>, pattern: RegExp) =>
    assert.throws(() => readArchitecture(config, 'x/config.json'), (e: unknown) => e instanceof UserError && pattern.test(e.message) && !e.message.includes('\n'));
  refused({ model_type: 'bert', architectures: ['BertForMaskedLM'], num_hidden_layers: 12, vocab_size: 30522 }, /encoder \(bert\)/);
  refused({ model_type: 'custom', architectures: ['CustomForSequenceClassification'], num_hidden_layers: 2, vocab_size: 10 }, /encoder/);
  refused({ model_type: 't5', is_encoder_decoder: true, num_layers: 6, vocab_size: 32128 }, /encoder-decoder \(t5\)/);
  refused({ model_type: 'openai-gpt', n_layer: 12, vocab_size: 40478 }, /post-norm decoder/);
  refused({ model_type: 'opt', do_layer_norm_before: false, num_hidden_layers: 24, vocab_size: 50272 }, /post-norm decoder \(opt\)/);
  refused({ model_type: 'bloom', apply_residual_connection_post_layernorm: true, n_layer: 2, vocab_size: 10 }, /BLOOM whose blocks add each branch to its normed input/);
  refused({ model_type: 'gpt2', architectures: ['GPT2Model'], n_layer: 2, vocab_size: 10 }, /without an LM head \(GPT2Model\)/);
  refused({ model_type: 'gpt2' }, /number of layers/);
});

test('a model type transformers.js lacks is loaded as the known one that names its layers the same way', () => {
  assert.equal(loaderModelType({ n_layer: 2 }), 'gpt2');
  assert.equal(loaderModelType({ num_layers: 2 }), 'gpt_neo');
  assert.equal(loaderModelType({ num_hidden_layers: 2, num_key_value_heads: 2 }), 'llama');
  assert.equal(loaderModelType({ num_hidden_layers: 2 }), 'gpt_neox');
});
