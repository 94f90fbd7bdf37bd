// The packed tarball as a user gets it: only what a user needs, installed into a fresh project
// (extracted into its node_modules, dependencies linked from ours: no registry), imported by name
// with its TypeScript declarations, and an example run against a fixture model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { LensRecord } from '../src/lens/record.js';
import { fixture, ROOT, runCli, runScript, scratchDir } from './helpers.js';

const { dir: MODEL } = fixture('opset14-merged');

test('npm pack holds the built library, the CLI, the examples, README and LICENSE only', () => {
  // --ignore-scripts: the prepare script would rebuild dist under the tests that run from it
  const [packed] = JSON.parse(execFileSync('npm', ['pack', '--ignore-scripts', '--dry-run', '--json'], { cwd: ROOT, encoding: 'utf8' }));
  const files: string[] = packed.files.map((f: { path: string }) => f.path);
  for (const needed of ['package.json', 'LICENSE', 'README.md', 'bin/lens.js', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli.js', 'examples/top1-loop.mjs']) {
    assert.ok(files.includes(needed), `${needed} is packed`);
  }
  const stray = files.filter((f) => !/^(package\.json|LICENSE|README\.md|bin\/lens\.js|dist\/src\/.+\.(js|d\.ts)|examples\/[\w-]+\.mjs)$/.test(f));
  assert.deepEqual(stray, []);
});

test('the tarball installed into a fresh project: import by name, types check, an example runs', async () => {
  const project = scratchDir('pack-project');
  execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', project], { cwd: ROOT, stdio: 'ignore' });
  const installed = join(project, 'node_modules', 'lens');
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['xzf', join(project, 'lens-0.1.0.tgz'), '-C', installed, '--strip-components=1']);
  const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'));
  for (const dep of Object.keys(manifest.dependencies)) {
    mkdirSync(dirname(join(project, 'node_modules', dep)), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules', dep), join(project, 'node_modules', dep), 'dir');
  }
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'user-project', type: 'module', private: true }));

  // the declarations: a typed use of the API compiles, a mistyped one does not
  writeFileSync(join(project, 'ok.ts'), `import { openLens, LensError, type LensRecord } from 'lens';
const lens = await openLens({ model: 'x', dtype: 'q8' });
const records: LensRecord[] = await lens.run('a', { positions: [0, -1], targets: [' a', 5] });
const code: string = records.length > 0 ? 'ok' : new LensError('E_USAGE', 'm').code;
export { code };
`);
  writeFileSync(join(project, 'bad.ts'), `import { openLens } from 'lens';\nconst lens = await openLens({ model: 'x' });\nconst n: number = await lens.run('a');\nexport { n };\n`);
  const tsc = (file: string) => execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--typeRoots', join(ROOT, 'node_modules', '@types'), file], { cwd: project, encoding: 'utf8', stdio: 'pipe' });
  tsc('ok.ts');
  assert.throws(() => tsc('bad.ts'), (error: { stdout: string }) => /bad\.ts.*TS2322/.test(error.stdout));

  copyFileSync(join(installed, 'examples', 'prob-csv.mjs'), join(project, 'prob-csv.mjs'));
  const out = (await runScript(join(project, 'prob-csv.mjs'), [MODEL, ' football', 'Paris is capital of'], project)).trim().split('\n');
  const r = await runCli(['prob', '--target', ' football', '-m', MODEL, '--json', 'Paris is capital of']);
  const record: LensRecord = JSON.parse(r.stdout);
  assert.deepEqual(out, ['prompt,layer,probability', ...record.layers.map((l) => `"Paris is capital of",${l.layer},${l.targets[0].prob}`)]);
});
