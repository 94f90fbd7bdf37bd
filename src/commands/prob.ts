// lens prob: P(target) per layer, as a chart.
import { renderProbChart } from '../render/chart.js';
import { renderingCommand } from './analyze.js';

/** The notebook's prompt and target, the defaults of prob and rank. */
export const CHART_DEFAULT_PROMPTS = ['The most famous sports in USA is'];
export const CHART_DEFAULT_TARGET = ' football';

/** Yields each prompt's record with its rendered chart. */
export const prob = renderingCommand(renderProbChart);
