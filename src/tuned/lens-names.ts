// The names under which tuned-lens's Space may publish a model's lens: its folders are the original
// repo ids (`gpt2`, `EleutherAI/pythia-160m-deduped`, `meta-llama/Llama-2-7b-hf`), while lens usually
// reads an ONNX mirror of them (`Xenova/gpt2`, `onnx-community/…-ONNX`).

/** The original publishers of the model families tuned-lens trained lenses for; GPT-2 has no org. */
const ORIGINAL_ORGS: [RegExp, string | undefined][] = [
  [/^(distil)?gpt2(-medium|-large|-xl)?$/i, undefined],
  [/^(pythia-|gpt-neox-|gpt-j-)/i, 'EleutherAI'],
  [/^opt-/i, 'facebook'],
  [/^(Llama-2-|Meta-Llama-3|Llama-3)/i, 'meta-llama'],
  [/^llama-/i, 'huggyllama'],
  [/^vicuna-/i, 'lmsys'],
];

/** A repo name without the suffix ONNX mirrors add (`-ONNX`, `_onnx`, `-onnx-web`). */
function withoutMirrorSuffix(name: string): string {
  return name.replace(/[-_]onnx([-_]web)?$/i, '');
}

/**
 * The Space folder names to try for a model, most likely first, without repeats: each of `sources`
 * (the model's repo id, config.json's `_name_or_path`) as given when it is a repo id, then its name
 * under the family's original org, then the bare name. Paths contribute their last part only.
 */
export function tunedLensNameCandidates(sources: (string | undefined)[]): string[] {
  const names: string[] = [];
  const add = (name: string) => { if (!names.includes(name)) names.push(name); };
  for (const source of sources) {
    if (!source) continue;
    const parts = source.split(/[\\/]/).filter((part) => part !== '');
    if (parts.length === 0) continue;
    const isRepoId = parts.length === 2 && !/^[.~]/.test(source) && !source.startsWith('/');
    if (isRepoId) add(source);
    const name = withoutMirrorSuffix(parts[parts.length - 1]);
    const family = ORIGINAL_ORGS.find(([pattern]) => pattern.test(name));
    if (family) add(family[1] ? `${family[1]}/${name}` : name);
    add(name);
  }
  return names.filter((name) => /^[A-Za-z0-9][A-Za-z0-9_.-]*(\/[A-Za-z0-9][A-Za-z0-9_.-]*)?$/.test(name));
}
