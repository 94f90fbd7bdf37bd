// lens topk: the top-k tokens of every layer.
import { renderTopk } from '../render/topk.js';
import { renderingCommand } from './analyze.js';

/** The notebook's three prompts. */
export const TOPK_DEFAULT_PROMPTS = ['Paris is capital of', 'Alan Turing was a', 'The most famous sports in USA is'];

/** Yields each prompt's record with its rendered table. */
export const topk = renderingCommand((record, c) => renderTopk(record, c));
