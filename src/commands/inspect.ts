// `lens inspect`: what lens found in a model, as text or one JSON object.
import type { ResolveOptions } from '../model/hub.js';
import { renderInspection } from '../render/inspect.js';

/** Inspects the model and returns what to print on stdout. Throws UserError. */
export async function inspect(spec: string, options: ResolveOptions, json: boolean): Promise<string> {
  // The model layer reads protobuf and the hub: load it only when the command runs.
  const { inspectModel } = await import('../model/inspect.js');
  const result = await inspectModel(spec, options);
  return json ? JSON.stringify(result) : renderInspection(result);
}
