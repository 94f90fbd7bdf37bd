// lens attribute on the families that reached lens through torch.onnx exports: sandwich norms
// (Gemma 2: the parts are what the post-branch norms give), residual multipliers and logits
// scaling (Granite), parallel blocks (Cohere), branch-only norms (OLMo2), Phi-3's fused projections.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { tinyConfig, type Family } from '../fixtures/llama.js';
import { lnFamilyModel, stateDictOf, type LnFamily } from '../fixtures/ln-families.js';
import { SP_VOCAB_SIZE } from '../fixtures/sentencepiece.js';
import { torchAvailable, writeTorchFixture, writeTorchModel, torchSkip } from '../fixtures/torch-export.js';
import { referenceLnForward } from '../reference/layernorm-families.js';
import { referenceDecoderForward } from '../reference/llama.js';
import { assertOneLineError, runCli, scratchDir } from '../helpers.js';
import { assertMatchesReference, attributionRecords, env, PROMPT } from './attribution-check.js';

const root = scratchDir('attribution-family-fixtures');
// Families whose attention write passes through a norm after the output projection.
const POST_NORMED: Family[] = ['gemma2', 'olmo2'];
const torchMissing = torchAvailable();
const skip = torchSkip();

for (const family of ['gemma2', 'granite', 'cohere', 'olmo2', 'phi3'] as Family[]) {
  test(`attribute matches the float64 reference on a torch.onnx export: ${family}`, { skip }, async () => {
    assert.equal(torchMissing, undefined, torchMissing);
    const dir = join(root, `torch-${family}`);
    const weights = writeTorchFixture(dir, tinyConfig(family), 'torch-past');
    const ids = (await attributionRecords(dir, [{ id: 7 }], '-1'))[0].tokens.map((tok) => tok.id);
    const ref = referenceDecoderForward(weights, ids);
    for (const record of await attributionRecords(dir, [{ id: 7 }], '1,-1')) assertMatchesReference(record, ref, `${family} pos ${record.position}`);
    const [pair] = await attributionRecords(dir, [{ id: 7 }, { id: 11 }], '-1');
    assertMatchesReference(pair, ref, `${family} pair`);
    if (POST_NORMED.includes(family)) {
      // The write of a post-attention norm is not linear in the heads' sum: --heads is refused, naming why.
      assertOneLineError(await runCli(['attribute', '-m', dir, '--offline', '--heads', PROMPT], { env }), 1, /--heads on .*: block 1's attention output goes through a norm before the residual \(a post-attention norm\)/);
    } else {
      const [heads] = await attributionRecords(dir, [{ id: 7 }], '-1', 'fp32', true);
      assertMatchesReference(heads, ref, `${family} --heads`);
    }
  });
}

// LayerNorm families: Phi-2's parallel block and biased head, OPT, BLOOM's embedding LayerNorm
// (part of `embed`: the residual stream starts after it).
for (const family of ['phi', 'opt', 'bloom'] as LnFamily[]) {
  test(`attribute matches the float64 reference on a torch.onnx export: ${family}`, { skip }, async () => {
    assert.equal(torchMissing, undefined, torchMissing);
    const dir = join(root, `torch-${family}`);
    const hub = lnFamilyModel(family);
    writeTorchModel(dir, hub.config, stateDictOf(hub), SP_VOCAB_SIZE, 'torch-past');
    const ids = (await attributionRecords(dir, [{ id: 7 }], '-1'))[0].tokens.map((tok) => tok.id);
    const ref = referenceLnForward(hub, ids);
    for (const record of await attributionRecords(dir, [{ id: 7 }, { id: 11 }], '1,-1', 'fp32', true)) assertMatchesReference(record, ref, `${family} --heads pos ${record.position}`);
    const [single] = await attributionRecords(dir, [{ id: 7 }], '-1');
    assertMatchesReference(single, ref, family);
  });
}

test('attribute on OPT with project_out (a projection between the final norm and the head) is refused in one line naming it', { skip }, async () => {
  assert.equal(torchMissing, undefined, torchMissing);
  const dir = join(root, 'torch-opt-proj');
  const hub = lnFamilyModel('opt-proj');
  writeTorchModel(dir, hub.config, stateDictOf(hub), SP_VOCAB_SIZE, 'torch-past');
  assertOneLineError(await runCli(['attribute', '-m', dir, '--offline', '--target-id', '7', PROMPT], { env }), 1, /cannot read the final norm and head .*: the head reads a \d+-wide projection of the \d+-wide final norm \(OPT's project_out\)/);
});
