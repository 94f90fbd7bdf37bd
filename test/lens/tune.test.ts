// lens tune's gradient against central finite differences of a loss written here independently
// (float64: translator, final norm, head, softcap, log-softmax, KL), and its optimizer against
// torch's own SGD + clip_grad_norm_ + linear schedule (python3-torch), step by step.
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accumulateTranslatorGradient, klAndLogitGradient, learningRateAt, finalDistribution, projectThroughHead, sgdStep, type TuneHead } from '../../src/lens/tune.js';
import { normalSampler } from '../fixtures/gpt2.js';
import { assertClose, scratchDir } from '../helpers.js';
import { runTorchScript } from '../tuned/torch-python.js';

const d = 5, V = 7;

/** KL(final ‖ lens) of one position, computed from scratch in float64. */
function referenceLoss(head: TuneHead, h: Float32Array, w: Float64Array, b: Float64Array, finalLogits: Float32Array): { kl: number; lensLogits: Float64Array } {
  const x = Array.from({ length: d }, (_, o) => h[o] + b[o] + h.reduce((sum, hi, i) => sum + w[o * d + i] * hi, 0));
  const mean = head.centred ? x.reduce((a, c) => a + c, 0) / d : 0;
  const rms = Math.sqrt(x.reduce((a, c) => a + (c - mean) ** 2, 0) / d + head.epsilon);
  const y = x.map((c, j) => ((c - mean) / rms) * head.gain[j] + head.bias[j]);
  const lensLogits = Float64Array.from({ length: V }, (_, v) => {
    const z = head.headScale * y.reduce((sum, yj, j) => sum + head.unembed[v * d + j] * yj, 0) + 0.25 * v;
    return head.softcap ? head.softcap * Math.tanh(z / head.softcap) : z;
  });
  const logp = (logits: ArrayLike<number>) => {
    const m = Math.max(...Array.from(logits));
    const z = Math.log(Array.from(logits).reduce((a, c) => a + Math.exp(c - m), 0)) + m;
    return Array.from(logits, (c) => c - z);
  };
  const lp = logp(lensLogits), fp = logp(finalLogits);
  return { kl: fp.reduce((sum, f, v) => sum + Math.exp(f) * (f - lp[v]), 0), lensLogits };
}

for (const variant of [{ centred: true }, { centred: false }, { centred: true, softcap: 3 }]) {
  test(`translator gradient equals finite differences of KL(final ‖ lens): ${JSON.stringify(variant)}`, () => {
    const sample = normalSampler(11);
    const head: TuneHead = { unembed: sample(V * d, 1), headScale: 1.3, softcap: variant.softcap, gain: sample(d, 0.3, 1), bias: sample(d, 0.2), epsilon: 1e-5, centred: variant.centred };
    const h = sample(d, 1), finalLogits = sample(V, 2);
    const w = Float64Array.from(sample(d * d, 0.3)), b = Float64Array.from(sample(d, 0.3));
    const weight = 0.5;
    const { kl, lensLogits } = referenceLoss(head, h, w, b, finalLogits);
    const gradZ = new Float64Array(V);
    assertClose(klAndLogitGradient(lensLogits, finalDistribution(finalLogits), weight, head.softcap, gradZ), kl, 1e-12, 'KL');
    const [gradY] = projectThroughHead(head, [gradZ], d);
    const gradW = new Float64Array(d * d), gradB = new Float64Array(d);
    accumulateTranslatorGradient(head, h, w, b, gradY, gradW, gradB);
    const eps = 1e-6;
    const numeric = (params: Float64Array, i: number) => {
      const keep = params[i];
      params[i] = keep + eps;
      const up = referenceLoss(head, h, w, b, finalLogits).kl;
      params[i] = keep - eps;
      const down = referenceLoss(head, h, w, b, finalLogits).kl;
      params[i] = keep;
      return (weight * (up - down)) / (2 * eps);
    };
    assertClose(gradW, Array.from(w, (_, i) => numeric(w, i)), 1e-7, 'dW');
    assertClose(gradB, Array.from(b, (_, i) => numeric(b, i)), 1e-7, 'db');
    assert.ok(Math.max(...Array.from(gradW, Math.abs)) > 1e-3, 'a gradient that is not trivially zero');
  });
}

test('optimizer steps equal torch SGD (Nesterov 0.9, weight decay 1e-3, lr 0.1 decaying linearly) with clip_grad_norm_(1.0)', (t) => {
  const sample = normalSampler(5);
  const steps = 4;
  const params = [sample(6, 1), sample(3, 1)];
  // Large gradients (clipped) and small ones (not), in turn.
  const grads = Array.from({ length: steps }, (_, k) => [sample(6, k % 2 ? 0.05 : 3), sample(3, k % 2 ? 0.05 : 3)]);
  const script = `
import json, sys, torch
from torch.optim.lr_scheduler import LambdaLR
spec = json.load(open(sys.argv[1]))
ps = [torch.nn.Parameter(torch.tensor(p, dtype=torch.float32)) for p in spec['params']]
opt = torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
n = spec['steps']
sched = LambdaLR(opt, lambda s: max(0.0, (n - s) / n))
out = []
for gs in spec['grads']:
    for p, g in zip(ps, gs):
        p.grad = torch.tensor(g, dtype=torch.float32)
    torch.nn.utils.clip_grad_norm_(ps, 1.0)
    opt.step(); sched.step()
    out.append([p.detach().tolist() for p in ps])
print(json.dumps(out))
`;
  const dir = scratchDir('sgd');
  const specPath = `${dir}/spec.json`;
  writeFileSync(specPath, JSON.stringify({ steps, params: params.map((p) => Array.from(p)), grads: grads.map((gs) => gs.map((g) => Array.from(g))) }));
  const out = runTorchScript(t, script, dir, [specPath]);
  if (out === false) return;
  const expected = JSON.parse(out) as number[][][];
  const momentum = params.map((p) => new Float32Array(p.length));
  for (let k = 0; k < steps; k++) {
    sgdStep(params, grads[k].map((g) => Float64Array.from(g)), momentum, learningRateAt(k, steps));
    params.forEach((p, i) => assertClose(p, expected[k][i], 1e-6, `step ${k} group ${i}`));
  }
});
