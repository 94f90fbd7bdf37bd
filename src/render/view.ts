// What the human views are given besides a record: colours, the rows to show, where the targets came from.
import type { ChalkInstance } from 'chalk';
import type { LayerRecord, TargetOrigin } from '../lens/record.js';
import { thinLayers } from '../lens/spec.js';

/** How a view is drawn: `layers` the layers `--layers` keeps (undefined: all). */
export interface View { c: ChalkInstance; color: boolean; layers?: number[]; targetOrigin?: TargetOrigin }

/** The entries of a record a view shows: every site of the kept layers. */
export function visibleLayers(layers: LayerRecord[], view: Pick<View, 'layers'>): LayerRecord[] {
  return thinLayers(layers, view.layers);
}

/** A row label: `L03` after block 3, `L03a` after its attention only; digits as many as the final layer needs (at least 2). */
export function siteLabel(entry: Pick<LayerRecord, 'layer' | 'site'>, finalLayer: number): string {
  return `L${String(entry.layer).padStart(Math.max(2, String(finalLayer).length), '0')}${entry.site === 'attn' ? 'a' : ''}`;
}

/** The legend line saying where the targets came from; empty when they were given. */
export function targetOriginNote(origin: TargetOrigin | undefined): string {
  switch (origin) {
    case 'seed': return 'targets: the default (no prompt given)';
    case 'lens-top1': return "targets: the lens's own top-1 tokens at this position (final layer's first, then the latest layers')";
    case 'lens-top2': return "targets: the final layer's top 2 at this position";
    default: return '';
  }
}
