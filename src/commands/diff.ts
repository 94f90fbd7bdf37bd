// lens diff: logit(A) − logit(B) per layer, as a chart with its zero line, and a table.
import { renderDiffChart } from '../render/chart.js';
import { perRecord, renderingCommand } from './analyze.js';

/** Yields each prompt's records with their rendered charts. */
export const diff = renderingCommand(perRecord(renderDiffChart));
