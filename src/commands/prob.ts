// lens prob: P(target) per layer, as a chart.
import { renderProbChart } from '../render/chart.js';
import { renderingCommand } from './analyze.js';

/** Yields each prompt's record with its rendered chart. */
export const prob = renderingCommand(renderProbChart);
