// Where --svg and --html write: numbered files for several figures, only where asked, checked first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkOutputPath, FigureWriter, numberedPath } from '../../src/commands/figures.js';
import { UserError } from '../../src/errors.js';
import { scratchDir } from '../helpers.js';
import { chartRecord, heatRecords } from '../render/records.js';
import { parseXml } from '../render/xml.js';

test('numbered paths go before the extension', () => {
  assert.equal(numberedPath('fig.svg', 1), 'fig-1.svg');
  assert.equal(numberedPath('out/fig.v2.svg', 12), 'out/fig.v2-12.svg');
  assert.equal(numberedPath('fig', 2), 'fig-2');
});

test('output paths are checked before any work: directory exists, not inside the model or the cache', () => {
  const dir = scratchDir('figures-check');
  const model = join(dir, 'model');
  mkdirSync(model);
  const usage = (f: () => void, pattern: RegExp) => assert.throws(f, (e: unknown) => e instanceof UserError && e.exitCode === 2 && pattern.test(e.message));
  checkOutputPath('--svg', join(dir, 'fig.svg'), [model]);
  usage(() => checkOutputPath('--svg', join(dir, 'missing', 'fig.svg'), [model]), /does not exist/);
  usage(() => checkOutputPath('--svg', join(model, 'fig.svg'), [model]), /inside/);
  usage(() => checkOutputPath('--html', join(model, 'sub', '..', 'x.html'), [model]), /inside/);
  usage(() => checkOutputPath('--html', model, []), /is a directory/);
  usage(() => checkOutputPath('--html', '', []), /file name/);
  assert.throws(() => new FigureWriter('topk', { svg: 'x.svg' }), /--svg is not available for topk/);
});

test('one figure → FILE exactly; several → FILE-1, FILE-2 in order; the HTML page holds every view', () => {
  const dir = scratchDir('figures-write');
  const one = new FigureWriter('prob', { svg: join(dir, 'one.svg') });
  one.add([chartRecord('first')]);
  assert.deepEqual(one.finish(), [join(dir, 'one.svg')]);
  const many = new FigureWriter('heatmap', { svg: join(dir, 'fig.svg'), html: join(dir, 'page.html'), by: 'entropy' });
  many.add(heatRecords('a', ['a', ' b'], [[[' x', 0.5, 1, 1]], [[' y', 0.25, 2, 0]]]));
  many.add(heatRecords('c', ['c'], [[[' z', 1, 0, 0]]]));
  assert.deepEqual(many.finish(), [join(dir, 'fig-1.svg'), join(dir, 'fig-2.svg'), join(dir, 'page.html')]);
  assert.deepEqual(readdirSync(dir).sort(), ['fig-1.svg', 'fig-2.svg', 'one.svg', 'page.html']);
  const first = parseXml(readFileSync(join(dir, 'fig-1.svg'), 'utf8'));
  assert.equal(first.attrs['data-by'], 'entropy');
  const page = readFileSync(join(dir, 'page.html'), 'utf8');
  assert.equal(page.match(/<div class="view heatmap">/g)?.length, 2);
  assert.equal(page.match(/<td class="cell"/g)?.length, 3);
  const nothing = new FigureWriter('topk', {});
  nothing.add([chartRecord()]);
  assert.deepEqual(nothing.finish(), []);
});
