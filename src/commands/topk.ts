// lens topk: the top-k tokens of every layer.
import { renderTopk } from '../render/topk.js';
import { renderingCommand } from './analyze.js';

/** Yields each prompt's record with its rendered table. */
export const topk = renderingCommand((record, c) => renderTopk(record, c));
