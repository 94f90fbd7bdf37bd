// The lens on the LayerNorm and hybrid families as torch.onnx.export writes them (Phi-2, OPT with
// and without project_in/out, BLOOM, GPT-NeoX, LFM2; test/fixtures/torch/modeling_ln.py), past and
// Optimum-merged: every site, both modes, every mid-block site of sequential blocks, against the
// independent float64 reference, and the last layer against the model's own logits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { inspectModel } from '../../src/model/inspect.js';
import { loadLensModel } from '../../src/model/runtime.js';
import { lnFamilyModel, stateDictOf, type LnFamily } from '../fixtures/ln-families.js';
import { TORCH_FORMS, torchAvailable, writeTorchModel, torchSkip } from '../fixtures/torch-export.js';
import { SP_VOCAB, SP_VOCAB_SIZE } from '../fixtures/sentencepiece.js';
import { referenceLnForward } from '../reference/layernorm-families.js';
import { cleanEnv, scratchDir } from '../helpers.js';
import { assertLensMatches, ownLogits } from './lens-check.js';

const TOL = 1e-4;
const PROMPT = 'The most famous sports in USA is';
const env = cleanEnv({ LENS_CACHE: scratchDir('parity-torch-ln-cache') });
const root = scratchDir('torch-ln-fixtures');
const missing = torchAvailable();
// Under CI a missing exporter is a failure, not a skip.
const skip = torchSkip();

// What `lens inspect` must name in each family's export.
const FOUND: Record<LnFamily, { family: string; norm: string; residual: string; tied: boolean; bias: boolean; embeddingNorm?: string; stateInputs: string[] }> = {
  phi: { family: 'PhiForCausalLM', norm: 'LayerNorm', residual: 'parallel', tied: false, bias: true, stateInputs: [] },
  opt: { family: 'OPTForCausalLM', norm: 'LayerNorm', residual: 'sequential', tied: true, bias: false, stateInputs: [] },
  'opt-proj': { family: 'OPTForCausalLM', norm: 'LayerNorm', residual: 'sequential', tied: true, bias: false, stateInputs: [] },
  bloom: { family: 'BloomForCausalLM', norm: 'LayerNorm', residual: 'sequential', tied: true, bias: false, embeddingNorm: 'LayerNorm', stateInputs: [] },
  gpt_neox: { family: 'GPTNeoXForCausalLM', norm: 'LayerNorm', residual: 'parallel', tied: false, bias: false, stateInputs: [] },
  lfm2: { family: 'Lfm2ForCausalLM', norm: 'RMSNorm', residual: 'sequential', tied: true, bias: false, stateInputs: ['past_conv.0', 'past_conv.2'] },
};

const FAMILIES: LnFamily[] = (process.env.LENS_TEST_LN_FAMILIES?.split(',') as LnFamily[] | undefined) ?? ['phi', 'opt', 'opt-proj', 'bloom', 'gpt_neox', 'lfm2'];

for (const family of FAMILIES) {
  for (const form of TORCH_FORMS) {
    test(`lens matches the reference on a torch.onnx export: ${family} ${form}`, { skip }, async (t) => {
      assert.equal(missing, undefined, missing);
      const dir = join(root, `${family}-${form}`);
      const hub = lnFamilyModel(family);
      writeTorchModel(dir, hub.config, stateDictOf(hub), SP_VOCAB_SIZE, form);
      const r = await inspectModel(dir, { dtype: 'fp32', offline: true, env });
      const want = FOUND[family];
      assert.deepEqual(
        { family: r.family, norm: r.finalNorm.kind, residual: r.residual, tied: r.head.tied, bias: r.head.bias, embeddingNorm: r.embeddingNorm, stateInputs: r.stateInputs },
        { ...want, embeddingNorm: want.embeddingNorm },
      );
      const model = await loadLensModel(dir, { dtype: 'fp32', offline: true, env });
      try {
        const ids = model.encodePrompt(PROMPT);
        assert.deepEqual(ids.slice(0, 2), [SP_VOCAB['<s>'], SP_VOCAB['▁The']]);
        const positions = [ids.length - 1, 0, 3];
        const ref = referenceLnForward(hub, ids);
        const own = await ownLogits(join(dir, 'onnx', 'model.onnx'), ids);
        const worst = await assertLensMatches(model, ids, positions, ref, own, Number(hub.config.hidden_size), TOL);
        t.diagnostic(`largest difference ${worst.toExponential(2)}`);
      } finally {
        await model.dispose();
      }
    });
  }
}
