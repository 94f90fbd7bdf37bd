// Hand-written records for the renderer tests.
import type { LensRecord } from '../../src/lens/record.js';

/** A prompt's records: `tops[position][row]` = [top-1 token, prob, entropy, kl]; rows may carry sites. */
export function heatRecords(prompt: string, tokens: string[], tops: [string, number, number, number][][], sites?: ('block' | 'attn')[], layers?: number[]): LensRecord[] {
  return tops.map((rows, position) => ({
    model: 'tiny', mode: 'norm', prompt, position,
    tokens: tokens.map((text, id) => ({ id, text })),
    layers: rows.map(([token, prob, entropy, kl], i) => ({
      layer: layers ? layers[i] : i, ...(sites ? { site: sites[i] } : {}),
      top: [{ id: 7, token, prob, logit: 1 }, { id: 8, token: ' b', prob: prob / 2, logit: 0.5 }],
      entropy, kl_to_final: kl,
      targets: [{ text: ' football', id: 4346, prob: 0.01, logit: -1, rank: 12 }],
    })),
  }) as LensRecord);
}
