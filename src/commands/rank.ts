// lens rank: the rank of the gold token per layer, as a chart (log scale, rank 1 on top).
import { renderRankChart } from '../render/chart.js';
import { perRecord, renderingCommand } from './analyze.js';

/** Yields each prompt's records with their rendered charts. */
export const rank = renderingCommand(perRecord(renderRankChart));
