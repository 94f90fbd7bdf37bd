// The tuned lens by the float64 reference, shared by the tests that check lens's tuned lens:
// h + W h + b on the reference's residuals for layers 0..L−1, then its final norm and head; and
// tuned lenses made and saved by the real torch, as tuned-lens saves them.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { loadLensModel } from '../../src/model/runtime.js';
import type { Dtype } from '../../src/model/paths.js';
import { readTunedLensDir } from '../../src/tuned/lens-dir.js';
import type { ReferenceResult } from '../reference/gpt2.js';
import { assertClose, cleanEnv, scratchDir } from '../helpers.js';
import { runTorchScript } from './torch-python.js';

/** The tolerance of lens's float32 tuned lens against the float64 reference. */
export const TUNED_TOL = 1e-4;
const env = cleanEnv({ LENS_CACHE: scratchDir('tuned-reference-cache') });

/** A tuned lens directory and its translators' values [L] of [W (out × in, flattened), b]. */
export interface LensValues { dir: string; layers: [number[], number[]][] }

/** A lens for makeLenses to make: width d, layer count, the dtype torch saves it in, the seed of its values. */
export interface LensSpec { d: number; layers: number; dtype: 'float32' | 'float16'; seed: number }

/**
 * Python: for each spec, a TunedLens-shaped ModuleList of nn.Linear(d, d) saved by torch.save as
 * tuned-lens saves it (params.pt and config.json in OUT/<i>), and its values as torch holds them.
 */
const MAKE_LENSES = `
import json, sys, torch
out, specs = sys.argv[1], json.loads(sys.argv[2])
values = []
for i, s in enumerate(specs):
    d, layers = s['d'], s['layers']
    torch.manual_seed(s['seed'])
    lens = torch.nn.ModuleList([torch.nn.Linear(d, d) for _ in range(layers)]).to(getattr(torch, s['dtype']))
    torch.save(lens.state_dict(), f'{out}/{i}/params.pt')
    json.dump({'base_model_name_or_path': 'fixture', 'd_model': d, 'num_hidden_layers': layers, 'bias': True,
               'base_model_revision': None, 'unemebd_hash': 'ignored', 'lens_type': 'linear_tuned_lens'}, open(f'{out}/{i}/config.json', 'w'))
    values.append([[m.weight.float().flatten().tolist(), m.bias.float().tolist()] for m in lens])
print(json.dumps(values))
`;

/** Tuned lens directories made by torch in one Python process, one per spec; false when torch is missing (the test is then skipped). */
export function makeLenses(t: TestContext, specs: LensSpec[]): LensValues[] | false {
  const root = scratchDir('tuned-lens');
  const dirs = specs.map((_, i) => join(root, String(i)));
  for (const dir of dirs) mkdirSync(dir);
  const out = runTorchScript(t, MAKE_LENSES, root, [root, JSON.stringify(specs)]);
  if (out === false) return false;
  const values = JSON.parse(out) as [number[], number[]][][];
  return dirs.map((dir, i) => ({ dir, layers: values[i] }));
}

/** One tuned lens directory made by torch (see makeLenses), or false when torch is missing. */
export function makeLens(t: TestContext, d: number, layers: number, dtype: 'float32' | 'float16', seed = 3): LensValues | false {
  const made = makeLenses(t, [{ d, layers, dtype, seed }]);
  return made && made[0];
}

/** The reference tuned lens at one position, [L+1][V]: unembed(norm(h + W h + b)) for layers < L, the plain head for L. */
export function referenceTuned(ref: ReferenceResult, lens: LensValues, position: number): Float64Array[] {
  return ref.residual.map((layer, l) => {
    const h = layer[position];
    if (l === ref.residual.length - 1) return ref.unembed(ref.finalNorm(h));
    const [w, b] = lens.layers[l];
    const d = h.length;
    const translated = Float64Array.from(h, (v, o) => {
      let sum = v + b[o];
      for (let i = 0; i < d; i++) sum += w[o * d + i] * h[i];
      return sum;
    });
    return ref.unembed(ref.finalNorm(translated));
  });
}

/**
 * Loads the model once (as `dtype`, fp32 unless given) and runs each tuned lens at three positions
 * of `ids` (or of what the callback encodes with the model's tokenizer), comparing every layer's
 * logits with the reference within `tol` (TUNED_TOL unless given). Resolves to the largest difference.
 */
export async function assertTunedMatches(modelDir: string, lenses: LensValues[], ids: number[] | ((encode: (s: string) => number[]) => number[]), ref: (ids: number[]) => ReferenceResult, options: { dtype?: Dtype; tol?: number } = {}): Promise<number> {
  const model = await loadLensModel(modelDir, { dtype: options.dtype ?? 'fp32', offline: true, env });
  const tol = options.tol ?? TUNED_TOL;
  let worst = 0;
  try {
    const tokens = typeof ids === 'function' ? ids((s) => model.encodePrompt(s)) : ids;
    const positions = [tokens.length - 1, 0, 2];
    const reference = ref(tokens);
    const V = model.vocabSize, P = positions.length;
    const logit = await model.run(tokens, positions, 'norm');
    for (const lens of lenses) {
      const { translators } = readTunedLensDir(lens.dir);
      const run = await model.run(tokens, positions, 'tuned', { translators });
      assert.equal(run.sites.length, model.layers + 1);
      positions.forEach((position, p) => {
        const expected = referenceTuned(reference, lens, position);
        expected.forEach((logits, l) => {
          const row = l * P + p;
          worst = Math.max(worst, assertClose(run.logits.subarray(row * V, (row + 1) * V), logits, tol, `tuned L${l} pos ${position}`));
        });
      });
      // The translators matter: the logit lens differs from the tuned lens below the last layer.
      assert.ok(Math.abs(logit.logits[0] - run.logits[0]) > 1e-3, 'the translators change layer 0');
    }
  } finally {
    await model.dispose();
  }
  return worst;
}
