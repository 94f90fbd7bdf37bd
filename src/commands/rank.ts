// lens rank: the rank of the gold token per layer, as a chart (log scale, rank 1 on top).
import { renderRankChart } from '../render/chart.js';
import { renderingCommand } from './analyze.js';

/** Yields each prompt's record with its rendered chart. */
export const rank = renderingCommand(renderRankChart);
