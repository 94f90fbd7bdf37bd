// The Space folder names tried for a model without --tuned-lens (hand-written expectations).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tunedLensNameCandidates } from '../../src/tuned/lens-names.js';

test('lens names: the repo id, the family\'s original org, the bare name; mirrors\' suffixes dropped', () => {
  assert.deepEqual(tunedLensNameCandidates(['Xenova/gpt2', 'gpt2']), ['Xenova/gpt2', 'gpt2']);
  assert.deepEqual(tunedLensNameCandidates(['EleutherAI/pythia-160m-deduped']), ['EleutherAI/pythia-160m-deduped', 'pythia-160m-deduped']);
  assert.deepEqual(tunedLensNameCandidates(['onnx-community/pythia-70m-deduped-ONNX', undefined]),
    ['onnx-community/pythia-70m-deduped-ONNX', 'EleutherAI/pythia-70m-deduped', 'pythia-70m-deduped']);
  assert.deepEqual(tunedLensNameCandidates(['Xenova/opt-125m']), ['Xenova/opt-125m', 'facebook/opt-125m', 'opt-125m']);
  assert.deepEqual(tunedLensNameCandidates(['onnx-community/Llama-2-7b-hf_onnx']), ['onnx-community/Llama-2-7b-hf_onnx', 'meta-llama/Llama-2-7b-hf', 'Llama-2-7b-hf']);
  // A directory gives its last part; config.json's _name_or_path adds its own names after it.
  assert.deepEqual(tunedLensNameCandidates(['./models/my-model', 'Xenova/gpt2-large']), ['my-model', 'Xenova/gpt2-large', 'gpt2-large']);
  assert.deepEqual(tunedLensNameCandidates(['/abs/path/x', '/another/abs/x']), ['x']);
});
