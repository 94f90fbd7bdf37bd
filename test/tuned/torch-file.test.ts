// params.pt read against files the real torch.save wrote (values printed by torch itself), and
// lens's own writer read back by the real torch.load(weights_only=True); hostile and damaged files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readTorchStateDict, readSafetensors, writeTorchStateDict, type Tensor } from '../../src/tuned/torch-file.js';
import { readPickle } from '../../src/tuned/pickle.js';
import { bytesSource, crc32, portableCrc32 } from '../../src/tuned/zip.js';
import { UserError } from '../../src/errors.js';
import { assertClose, scratchDir } from '../helpers.js';
import { runTorchScript } from './torch-python.js';

const read = (path: string) => readTorchStateDict(bytesSource(readFileSync(path)));

/** Python: saves `tensors` (a dict expression) with torch.save to argv[1] and prints {name: [shape, flat float values]}. */
const SAVE_AND_DUMP = (tensors: string) => `
import json, sys, torch
torch.manual_seed(0)
tensors = ${tensors}
torch.save(tensors, sys.argv[1])
print(json.dumps({k: [list(v.shape), v.float().flatten().tolist()] for k, v in tensors.items()}))
`;

function assertTensors(actual: Map<string, Tensor>, expectedJson: string, tol = 0): void {
  const expected = JSON.parse(expectedJson) as Record<string, [number[], number[]]>;
  assert.deepEqual([...actual.keys()], Object.keys(expected));
  for (const [name, [shape, values]] of Object.entries(expected)) {
    assert.deepEqual(actual.get(name)!.shape, shape, `${name} shape`);
    assertClose(actual.get(name)!.data, values, tol, name);
  }
}

for (const dtype of ['float', 'half', 'bfloat16']) {
  test(`a ModuleList of nn.Linear saved by torch (${dtype}) reads back with torch's values`, (t) => {
    const dir = scratchDir('pt');
    const path = join(dir, 'params.pt');
    const out = runTorchScript(t, SAVE_AND_DUMP(`torch.nn.ModuleList([torch.nn.Linear(6, 6) for _ in range(3)]).${dtype}().state_dict()`), dir, [path]);
    if (out === false) return;
    const tensors = read(path);
    assertTensors(tensors, out);
    assert.deepEqual(tensors.get('2.weight')!.shape, [6, 6]);
  });
}

test('a 45-layer lens (memo indices past 255, LONG_BINPUT) reads every layer', (t) => {
  const dir = scratchDir('pt');
  const path = join(dir, 'params.pt');
  const out = runTorchScript(t, SAVE_AND_DUMP('torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(45)]).state_dict()'), dir, [path]);
  if (out === false) return;
  const ops = runTorchScript(t, `
import pickletools, sys, zipfile
z = zipfile.ZipFile(sys.argv[1]); pkl = [n for n in z.namelist() if n.endswith('data.pkl')][0]
print(sorted({op.name for op, _, _ in pickletools.genops(z.read(pkl))}))`, dir, [path]) as string;
  assert.match(ops, /LONG_BINPUT/, 'the fixture must exercise memo indices past 255');
  const tensors = read(path);
  assert.equal(tensors.size, 90);
  assertTensors(tensors, out);
});

test('views saved by torch: a transposed tensor, two slices sharing a storage, no bias, any top folder name', (t) => {
  const dir = scratchDir('pt');
  const path = join(dir, 'odd name.pt');
  const out = runTorchScript(t, SAVE_AND_DUMP(`(lambda x: {'t': x.t(), 'row': x[1], 'tail': x[2:], '0.weight': torch.nn.Linear(3, 3, bias=False).weight.data})(torch.randn(4, 3))`), dir, [path]);
  if (out === false) return;
  assertTensors(read(path), out);
});

test('a torch archive rewritten by Python zipfile with zip64 records everywhere reads the same', (t) => {
  const dir = scratchDir('pt');
  const path = join(dir, 'params.pt'), zip64 = join(dir, 'zip64.pt');
  const out = runTorchScript(t, SAVE_AND_DUMP('torch.nn.ModuleList([torch.nn.Linear(5, 5) for _ in range(2)]).state_dict()'), dir, [path]);
  if (out === false) return;
  runTorchScript(t, `
import sys, zipfile
zipfile.ZIP64_LIMIT = 0  # every size and offset past the limit: zip64 extras and end records throughout
src = zipfile.ZipFile(sys.argv[1])
with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_STORED) as dst:
    for info in src.infolist():
        dst.writestr(info.filename.replace('params/', 'renamed/'), src.read(info))
assert b'PK\\x06\\x06' in open(sys.argv[2], 'rb').read()`, dir, [path, zip64]);
  assertTensors(read(zip64), out);
});

test("lens's writer: torch.load(weights_only=True) reads the keys, shapes and values (plain and zip64)", (t) => {
  const dir = scratchDir('pt');
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (let layer = 0; layer < 41; layer++) {
    tensors.set(`${layer}.weight`, { shape: [3, 3], data: Float32Array.from({ length: 9 }, (_, i) => layer + i / 8 - 0.3) });
    tensors.set(`${layer}.bias`, { shape: [3], data: Float32Array.from({ length: 3 }, (_, i) => -layer - i / 4) });
  }
  for (const forceZip64 of [false, true]) {
    const path = join(dir, `written-${forceZip64}.pt`);
    writeFileSync(path, Buffer.concat(writeTorchStateDict(tensors, { forceZip64 })));
    const out = runTorchScript(t, `
import json, sys, torch
state = torch.load(sys.argv[1], weights_only=True)
assert all(v.dtype == torch.float32 for v in state.values())
print(json.dumps({k: [list(v.shape), v.flatten().tolist()] for k, v in state.items()}))`, dir, [path]);
    if (out === false) return;
    const expected = JSON.parse(out) as Record<string, [number[], number[]]>;
    assert.deepEqual(Object.keys(expected), [...tensors.keys()]);
    for (const [name, tensor] of tensors) {
      assert.deepEqual(expected[name][0], tensor.shape);
      assertClose(expected[name][1], tensor.data, 0, name);
    }
  }
});

/** Asserts `f` throws a UserError whose one-line message matches `pattern`. */
function assertUserError(f: () => unknown, pattern: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof UserError, `not a UserError: ${String(e)}`);
    assert.doesNotMatch(e.message, /\n/);
    assert.match(e.message, pattern);
    return true;
  });
}

test('a hostile pickle (a GLOBAL of os.system) is refused before anything runs', (t) => {
  const dir = scratchDir('pt');
  const path = join(dir, 'hostile.pt');
  const marker = join(dir, 'ran');
  const made = runTorchScript(t, `
import os, pickle, sys, zipfile
class Hostile:
    def __reduce__(self):
        return (os.system, ('touch ' + sys.argv[2],))
with zipfile.ZipFile(sys.argv[1], 'w') as z:
    z.writestr('archive/data.pkl', pickle.dumps({'0.weight': Hostile()}, protocol=2))
    z.writestr('archive/version', '3\\n')`, dir, [path, marker]);
  if (made === false) return;
  assertUserError(() => read(path), /refusing .* (posix|os) system/);
  assert.equal(existsSync(marker), false);
});

test('pickles outside the state-dict subset get one-line errors', () => {
  const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
  assertUserError(() => readPickle(bytes('\x80\x02cbuiltins\neval\n.')), /refusing .*builtins eval/);
  assertUserError(() => readPickle(bytes('\x80\x02\x8f.')), /opcode 0x8f/); // EMPTY_SET
  assertUserError(() => readPickle(bytes('\x80\x02}q\x00X\x05\x00\x00')), /ends early/);
  assertUserError(() => readPickle(bytes('\x80\x02h\x07.')), /memo entry 7/);
  assertUserError(() => readPickle(bytes('\x80\x02ccollections\nOrderedDict\nK\x01\x85R.')), /OrderedDict called with arguments/);
  assertUserError(() => readPickle(bytes('\x80\x02(X\x07\x00\x00\x00storageccollections\nOrderedDict\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQ.')), /storage type/);
});

test('truncated, damaged and non-torch files get one-line errors', (t) => {
  const dir = scratchDir('pt');
  const path = join(dir, 'params.pt');
  const out = runTorchScript(t, SAVE_AND_DUMP('torch.nn.ModuleList([torch.nn.Linear(8, 8)]).state_dict()'), dir, [path]);
  if (out === false) return;
  const whole = readFileSync(path);
  for (const keep of [0, 10, 100, whole.length >> 1, whole.length - 30, whole.length - 1]) {
    assertUserError(() => readTorchStateDict(bytesSource(whole.subarray(0, keep))), /truncated|damaged/);
  }
  const weightAt = whole.indexOf(Buffer.from('params/data/0')) + 200; // inside the first storage's data
  const flipped = Buffer.from(whole);
  flipped[weightAt] ^= 0xff;
  assertUserError(() => readTorchStateDict(bytesSource(flipped)), /damaged \(CRC mismatch\)/);
  assertUserError(() => readTorchStateDict(bytesSource(Buffer.from('{"not": "a zip"}'))), /not a complete zip/);
  assertUserError(() => readSafetensors(bytesSource(whole)), /safetensors/);
});

test('safetensors: tensors written by hand (struct + json, not lens) read back', () => {
  const values = [1.5, -2.25, 0, 3];
  const header = JSON.stringify({ __metadata__: { format: 'pt' }, '0.bias': { dtype: 'F16', shape: [2], data_offsets: [16, 20] }, '0.weight': { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } });
  const data = Buffer.alloc(20);
  values.forEach((v, i) => data.writeFloatLE(v, i * 4));
  data.writeUInt16LE(0x3c00, 16); // 1.0 in half precision
  data.writeUInt16LE(0xc100, 18); // -2.5
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  const file = Buffer.concat([length, Buffer.from(header), data]);
  const tensors = readSafetensors(bytesSource(file));
  assert.deepEqual(tensors.get('0.weight')!.shape, [2, 2]);
  assertClose(tensors.get('0.weight')!.data, values, 0);
  assertClose(tensors.get('0.bias')!.data, [1, -2.5], 0);
  assertUserError(() => readSafetensors(bytesSource(file.subarray(0, file.length - 1))), /past the end/);
});

test('CRC-32: the portable fallback gives the standard check value and agrees with zlib at every length mod 8', () => {
  assert.equal(portableCrc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  const bytes = Uint8Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24);
  for (const length of [0, 1, 7, 8, 9, 15, 16, 17, 1000, 4093]) {
    const part = bytes.subarray(3, 3 + length);
    assert.equal(portableCrc32(part), crc32(part), `length ${length}`);
    assert.equal(portableCrc32(part.subarray(5), portableCrc32(part.subarray(0, 5))), crc32(part), `continued, length ${length}`);
  }
});
