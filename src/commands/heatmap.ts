// lens heatmap: a prompt's every position at once, as a layer × position grid of top-1 tokens.
import type { HeatBy } from '../render/grid.js';
import { renderHeatmap } from '../render/heatmap.js';
import { visibleLayers } from '../render/view.js';
import { renderingCommand, type Command } from './analyze.js';

/** The heatmap command coloured by `by`, wrapped to `width` columns; yields each prompt's records with its grid. */
export function heatmapCommand(options: { by: HeatBy; width: number }): Command {
  return renderingCommand((result, view) => renderHeatmap(
    result.records.map((record) => ({ ...record, layers: visibleLayers(record.layers, view) })),
    options.by, view.c, view.color, { width: options.width },
  ));
}
