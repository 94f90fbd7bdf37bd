// lens prob: P(target) per layer, as a chart.
import { renderProbChart } from '../render/chart.js';
import { perRecord, renderingCommand } from './analyze.js';

/** Yields each prompt's records with their rendered charts. */
export const prob = renderingCommand(perRecord(renderProbChart));
