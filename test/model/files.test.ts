// Which files a model needs, resolved as transformers.js resolves them, and the external-data
// locations read straight from the protobuf.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../src/errors.js';
import { declaredChunks, declaredDataFiles, entryConfig } from '../../src/model/files.js';
import { externalDataLocations } from '../../src/onnx/locations.js';
import { decodeModel, encodeModel } from '../../src/onnx/proto.js';
import { fixture, scratchDir } from '../helpers.js';

const withBlock = (block: unknown) => ({ model_type: 'gpt2', 'transformers.js_config': block });

test('use_external_data_format: boolean, count, and a map by full or base file name', () => {
  const cases: [unknown, Record<string, number>][] = [
    [undefined, { fp32: 0, fp16: 0 }],
    [{ use_external_data_format: true }, { fp32: 1, fp16: 1, q4: 1 }],
    [{ use_external_data_format: false }, { fp32: 0 }],
    [{ use_external_data_format: 3 }, { fp32: 3, q8: 3 }],
    [{ use_external_data_format: { 'model.onnx': 2, 'model_fp16.onnx': 1 } }, { fp32: 2, fp16: 1, q8: 0, q4: 0 }],
    // The base name ("model", the session's name) applies to every dtype without an entry of its own.
    [{ use_external_data_format: { model: 4, 'model_q4.onnx': 1 } }, { fp32: 4, fp16: 4, q4: 1 }],
    [{ use_external_data_format: { 'model_fp16.onnx': true } }, { fp16: 1, fp32: 0 }],
    // transformers.js merges the CPU's device_config over the block.
    [{ use_external_data_format: true, device_config: { cpu: { use_external_data_format: 2 }, webgpu: { use_external_data_format: 5 } } }, { fp32: 2 }],
  ];
  for (const [block, expected] of cases) {
    for (const [dtype, chunks] of Object.entries(expected)) {
      assert.equal(declaredChunks(block === undefined ? {} : withBlock(block), dtype as never), chunks, `${JSON.stringify(block)} ${dtype}`);
    }
  }
  assert.deepEqual(declaredDataFiles(withBlock({ use_external_data_format: 3 }), 'fp16'), ['onnx/model_fp16.onnx_data', 'onnx/model_fp16.onnx_data_1', 'onnx/model_fp16.onnx_data_2']);
  for (const bad of [-1, 1.5, 101, 'many']) {
    assert.throws(() => declaredChunks(withBlock({ use_external_data_format: bad }), 'fp32'), UserError, String(bad));
  }
});

test("an entry's config drops the source's data declaration and keeps every other key", () => {
  const source = {
    model_type: 'gpt2', n_layer: 3,
    'transformers.js_config': { use_external_data_format: { 'model.onnx': 2 }, kv_cache_dtype: { q4f16: 'float16' }, dtype: 'q4', device_config: { cpu: { use_external_data_format: 1, dtype: 'fp32' } } },
  };
  assert.deepEqual(entryConfig(source), {
    model_type: 'gpt2', n_layer: 3,
    'transformers.js_config': { kv_cache_dtype: { q4f16: 'float16' }, dtype: 'q4', device_config: { cpu: { dtype: 'fp32' } } },
  });
  assert.deepEqual(source['transformers.js_config'].use_external_data_format, { 'model.onnx': 2 }, 'the source is not changed');
  assert.deepEqual(entryConfig({ model_type: 'gpt2' }), { model_type: 'gpt2' });
});

test('external-data locations are read from the protobuf, subgraphs included, without reading the weights', () => {
  assert.deepEqual(externalDataLocations(join(fixture('opset17-merged-external').dir, 'onnx', 'model.onnx')), ['model.onnx_data']);
  assert.deepEqual(externalDataLocations(join(fixture('opset14-flat').dir, 'onnx', 'model.onnx')), []);
  // Tensors in an If branch and in a Constant's tensor attribute count too.
  const model = decodeModel(readFileSync(join(fixture('opset14-merged').dir, 'onnx', 'model.onnx')));
  const branch = model.graph.node[0].attribute[0].g!;
  branch.initializer.push({ name: 'branch_weight', dims: [4], data_type: 1, data_location: 1, external_data: [{ key: 'location', value: 'branch.bin' }, { key: 'offset', value: '0' }] });
  const constant = branch.node.find((n) => n.op_type === 'Constant')!;
  constant.attribute[0].t = { ...constant.attribute[0].t!, raw_data: undefined, data_location: 1, external_data: [{ key: 'location', value: 'sub/const.bin' }] };
  const path = join(scratchDir('locations'), 'model.onnx');
  writeFileSync(path, encodeModel(model));
  assert.deepEqual(externalDataLocations(path).sort(), ['branch.bin', 'sub/const.bin']);
  writeFileSync(path, readFileSync(path).subarray(0, 200));
  assert.throws(() => externalDataLocations(path), /truncated/);
});
