// lens eval against the float64 reference: windows of the model's context, every predicted token's
// KL(final ‖ layer), cross-entropy and entropy, for the logit lens and a tuned lens made by torch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { referenceForward } from '../reference/gpt2.js';
import { entropy, kl, logProbs } from '../reference/stats.js';
import { assertClose, cleanEnv, fixture, runCli, scratchDir, TINY } from '../helpers.js';
import { runTorchScript } from './torch-python.js';

const TOL = 1e-4;
// "The most famous sports in USA is" in GPT-2's vocabulary; with a context of 4 it is read as the
// windows [The most famous sports] and [in USA is], predicting " most famous sports" and " USA is".
const IDS = [464, 749, 5863, 5701, 287, 4916, 318];
const PREDICTED_BYTES = ' most'.length + ' famous'.length + ' sports'.length + ' USA'.length + ' is'.length; // ASCII: 26

test('lens eval: per-layer means over a text read in context windows match the float64 reference, logit and tuned lens', async (t) => {
  const lensDir = scratchDir('eval-lens');
  const out = runTorchScript(t, `
import json, sys, torch
torch.manual_seed(9)
lens = torch.nn.ModuleList([torch.nn.Linear(${TINY.d}, ${TINY.d}) for _ in range(${TINY.layers})])
torch.save(lens.state_dict(), sys.argv[1] + '/params.pt')
json.dump({'base_model_name_or_path': 'x', 'd_model': ${TINY.d}, 'num_hidden_layers': ${TINY.layers}, 'bias': True, 'lens_type': 'linear_tuned_lens'}, open(sys.argv[1] + '/config.json', 'w'))
print(json.dumps([[m.weight.flatten().tolist(), m.bias.tolist()] for m in lens]))`, lensDir, [lensDir]);
  if (out === false) return;
  const translators = JSON.parse(out) as [number[], number[]][];
  const { dir, weights } = fixture('opset17-flat', { ...TINY, nPositions: 4 });
  const data = join(scratchDir('eval-data'), 'text.txt');
  writeFileSync(data, 'The most famous sports in USA is');

  // The reference: each window on its own, every position but the window's last.
  const sums = { logit: [] as number[][], tuned: [] as number[][] };
  let count = 0;
  for (const window of [IDS.slice(0, 4), IDS.slice(4)]) {
    const ref = referenceForward(weights, window);
    for (let p = 0; p < window.length - 1; p++) {
      const head = (h: Float64Array) => ref.unembed(ref.finalNorm(h));
      const logit = ref.residual.map((layer) => head(layer[p]));
      const tuned = ref.residual.map((layer, l) => {
        if (l === TINY.layers) return logit[l];
        const [w, b] = translators[l], h = layer[p];
        return head(Float64Array.from(h, (v, o) => { let s = v + b[o]; for (let i = 0; i < h.length; i++) s += w[o * h.length + i] * h[i]; return s; }));
      });
      for (const [name, rows] of [['logit', logit], ['tuned', tuned]] as const) {
        rows.forEach((x, l) => {
          sums[name][l] ??= [0, 0, 0];
          sums[name][l][0] += kl(rows[TINY.layers], x);
          sums[name][l][1] += -logProbs(x)[window[p + 1]];
          sums[name][l][2] += entropy(x);
        });
      }
      count++;
    }
  }
  assert.equal(count, 5);
  const run = await runCli(['eval', '-m', dir, '--data', data, '--tuned-lens', lensDir, '--json', '--offline'], { env: cleanEnv({ LENS_CACHE: scratchDir('eval-cache') }) });
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout);
  assert.equal(result.tokens, 5);
  assert.equal(result.bytes, PREDICTED_BYTES);
  assertClose(result.bitsPerByte, 5 / PREDICTED_BYTES / Math.LN2, 1e-12, 'bits per byte factor');
  for (const name of ['logit', 'tuned'] as const) {
    assert.equal(result[name].length, TINY.layers + 1);
    result[name].forEach((layer: { layer: number; kl: number; crossEntropy: number; entropy: number }, l: number) => {
      assert.equal(layer.layer, l);
      assertClose([layer.kl, layer.crossEntropy, layer.entropy], sums[name][l].map((s) => s / count), TOL, `${name} L${l}`);
    });
  }
  // The figures: the SVG's three panels hold both lenses' values at every layer, as the reference
  // computes them; the HTML page holds the same chart and the table; a path in the model directory is refused.
  const figures = scratchDir('eval-figures');
  const drawn = await runCli(['eval', '-m', dir, '--data', data, '--tuned-lens', lensDir, '--svg', join(figures, 'eval.svg'), '--html', join(figures, 'eval.html'), '--offline'], { env: cleanEnv({ LENS_CACHE: scratchDir('eval-cache-3') }) });
  assert.equal(drawn.code, 0, drawn.stderr);
  const svg = readFileSync(join(figures, 'eval.svg'), 'utf8');
  assert.match(svg, /^<\?xml version="1.0" encoding="UTF-8"\?>\n<svg /);
  const panels = svg.split('<g class="panel" ').slice(1);
  assert.deepEqual(panels.map((panel) => /^data-measure="(\w+)"/.exec(panel)![1]), ['kl', 'crossEntropy', 'entropy']);
  panels.forEach((panel, m) => {
    const series = panel.split('<g class="series" ').slice(1);
    assert.deepEqual(series.map((part) => /^data-series="([^"]+)"/.exec(part)![1]), ['logit lens', 'tuned lens']);
    series.forEach((part, j) => {
      const values = [...part.matchAll(/data-value="([^"]+)"/g)].map((match) => Number(match[1]));
      assertClose(values, sums[(['logit', 'tuned'] as const)[j]].map((s) => s[m] / count), TOL, `svg panel ${m} series ${j}`);
    });
  });
  const html = readFileSync(join(figures, 'eval.html'), 'utf8');
  assert.ok(html.includes(svg.slice(svg.indexOf('<svg'), svg.indexOf('</svg>'))), 'the page holds the chart');
  assert.equal([...html.matchAll(/<tr><th class="layer">L\d<\/th>/g)].length, TINY.layers + 1);
  const refused = await runCli(['eval', '-m', dir, '--data', data, '--svg', join(dir, 'eval.svg'), '--offline'], { env: cleanEnv({ LENS_CACHE: scratchDir('eval-cache-4') }) });
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /--svg .* is inside /);

  // The human table: one row per layer, both lenses.
  const table = await runCli(['eval', '-m', dir, '--data', data, '--tuned-lens', lensDir, '--max-tokens', '3', '--offline'], { env: cleanEnv({ LENS_CACHE: scratchDir('eval-cache-2') }) });
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /2 tokens predicted/);
  assert.match(table.stdout, /KL\(final‖layer\) logit +KL\(final‖layer\) tuned/);
  assert.equal(table.stdout.trim().split('\n').filter((line) => /^L\d\d /.test(line)).length, TINY.layers + 1);
});
