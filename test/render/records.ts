// Hand-written records for the renderer tests.
import type { LensRecord, TargetEntry } from '../../src/lens/record.js';
import type { HtmlView } from '../../src/render/html.js';

/** A single-token target entry. */
export function target(text: string, id: number, prob: number, logit: number, rank: number): TargetEntry {
  return { text, id, prob, logit, rank, logprob: Math.log(prob), pieces: [{ id, text, prob, logit, rank }], first_top1: null, first_top10: null };
}

/** A prompt's records: `tops[position][row]` = [top-1 token, prob, entropy, kl]; rows may carry sites. */
export function heatRecords(prompt: string, tokens: string[], tops: [string, number, number, number][][], sites?: ('block' | 'attn')[], layers?: number[]): LensRecord[] {
  return tops.map((rows, position) => ({
    model: 'tiny', mode: 'norm', prompt, position,
    tokens: tokens.map((text, id) => ({ id, text })),
    layers: rows.map(([token, prob, entropy, kl], i) => ({
      layer: layers ? layers[i] : i, site: sites ? sites[i] : 'block',
      top: [{ id: 7, token, prob, logit: 1 }, { id: 8, token: ' b', prob: prob / 2, logit: 0.5 }],
      entropy, kl_to_final: kl,
      targets: [target(' football', 4346, 0.01, -1, 12)],
    })),
  }) as LensRecord);
}

/** One record with two targets over three layers: [prob, logit, rank] per target and layer. */
export function chartRecord(prompt = 'The sport is'): LensRecord {
  const layer = (l: number, a: [number, number, number], b: [number, number, number]) => ({
    layer: l, site: 'block' as const, entropy: 1, kl_to_final: 0.5, top: [{ id: 1, token: ' the', prob: 0.5, logit: 1 }],
    targets: [target(' football', 4346, ...a), target(' <b>&', 99, ...b)],
  });
  return {
    model: 'tiny', mode: 'norm', prompt, position: 2,
    tokens: [{ id: 464, text: 'The' }, { id: 6332, text: ' sport' }, { id: 318, text: ' is' }],
    layers: [layer(0, [0.001, -2, 1000], [0.01, 0.5, 40]), layer(1, [0.25, 3, 2], [0.125, 2.25, 3]), layer(2, [0.75, 5, 1], [0.0625, 1, 4])],
  };
}

const hostile = '<script>alert(1)</script> & "q"';

/** Views of two prompts: a heatmap, a prob chart and a topk table. */
export function sampleViews(): HtmlView[] {
  const records = heatRecords('Paris is capital', ['Paris', ' is', ' capital'], [
    [[' the', 0.5, 2.5, 1.25], ['\n', 0.125, 10.5, 0.5], [' France', 1, 0, 0]],
    [[' a', 0.25, 3, 2], [' Schwarzenegger', 0.375, 1.5, 0.25], [' capital', 0.75, 0.75, 0]],
    [[' of', 0.0625, 4, 3.5], [' <&>', 0.875, 0.5, 1], [' of', 0.96875, 0.25, 0]],
  ]);
  return [
    { kind: 'heatmap', records, by: 'prob' },
    { kind: 'prob', record: chartRecord(hostile) },
    { kind: 'topk', record: chartRecord(hostile) },
  ];
}
