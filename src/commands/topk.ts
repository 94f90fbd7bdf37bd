// lens topk: the top-k tokens of every layer.
import { renderTopk } from '../render/topk.js';
import { perRecord, renderingCommand } from './analyze.js';

/** Yields each prompt's records with their rendered tables. */
export const topk = renderingCommand(perRecord(renderTopk));
