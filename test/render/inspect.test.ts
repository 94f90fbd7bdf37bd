// `lens inspect` as text: the exact rows for hand-made inspections, one of a model with state
// inputs (LFM2's past_conv.N), whose row once appeared twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Inspection } from '../../src/model/inspect.js';
import { renderInspection } from '../../src/render/inspect.js';

const LFM2_LIKE: Inspection = {
  model: 'tiny/lfm2', directory: '/m', onnx: '/m/onnx/model.onnx', dtype: 'fp32',
  modelType: 'lfm2', family: 'Lfm2ForCausalLM', layers: 2, width: 16, heads: 4, kvHeads: 2, contextLength: 128, vocabSize: 96,
  finalNorm: { node: '/model/norm', op: 'SimplifiedLayerNormalization', kind: 'RMSNorm' },
  head: { node: '/lm_head/MatMul', op: 'MatMul', tiedTo: 'model.embed_tokens.weight', bias: false, tied: true },
  afterHead: [], residual: 'sequential', prunedHead: false, atEmbedding: [],
  stateInputs: ['past_conv.0', 'past_conv.2'],
  graph: { merged: false, fusedNorms: false, fusedAttention: [], rotaryCacheSwitch: false },
  cache: { entry: '/c/lens/0123', ready: false },
};

test('a model with state inputs gets one "state inputs" row, between residual and cache', () => {
  // Labels are padded to the longest present, "state inputs" (12 characters), then two spaces.
  const expected = [
    'model         tiny/lfm2',
    'onnx          /m/onnx/model.onnx (fp32)',
    'family        lfm2 (Lfm2ForCausalLM)',
    'layers        2',
    'width         16 (4 heads, 2 KV heads)',
    'context       128 tokens',
    'vocabulary    96',
    'final norm    RMSNorm, node /model/norm (SimplifiedLayerNormalization)',
    'head          tied to the token embedding model.embed_tokens.weight, node /lm_head/MatMul (MatMul)',
    'residual      sequential: attention, then MLP',
    "state inputs  past_conv.0, past_conv.2 (beside the KV cache; zeros at a prompt's start)",
    'cache         /c/lens/0123 (built on the first run)',
  ].join('\n');
  assert.equal(renderInspection(LFM2_LIKE), expected);
});

test('without state inputs there is no such row, and the labels pad to "vocabulary"', () => {
  const plain: Inspection = { ...LFM2_LIKE, stateInputs: [], cache: { entry: '/c/lens/0123', ready: true } };
  const expected = [
    'model       tiny/lfm2',
    'onnx        /m/onnx/model.onnx (fp32)',
    'family      lfm2 (Lfm2ForCausalLM)',
    'layers      2',
    'width       16 (4 heads, 2 KV heads)',
    'context     128 tokens',
    'vocabulary  96',
    'final norm  RMSNorm, node /model/norm (SimplifiedLayerNormalization)',
    'head        tied to the token embedding model.embed_tokens.weight, node /lm_head/MatMul (MatMul)',
    'residual    sequential: attention, then MLP',
    'cache       /c/lens/0123 (ready)',
  ].join('\n');
  assert.equal(renderInspection(plain), expected);
});
