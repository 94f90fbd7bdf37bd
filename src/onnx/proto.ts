// The ONNX protobuf schema (the subset of onnx.proto that GPT-style decoders use),
// decoded with protobufjs. Tensor bytes stay as views into the file buffer: no copies.
import protobuf from 'protobufjs';

// int64 fields decode to plain numbers: every int64 in a decoder graph (dims, offsets,
// attribute values) is far below 2^53, and plain numbers keep the graph code simple.
protobuf.util.Long = null as never;
protobuf.configure();

const SCHEMA = `
syntax = "proto2";
package onnx;
message StringStringEntryProto { optional string key = 1; optional string value = 2; }
message OperatorSetIdProto { optional string domain = 1; optional int64 version = 2; }
message TensorShapeProto {
  message Dimension { optional int64 dim_value = 1; optional string dim_param = 2; optional string denotation = 3; }
  repeated Dimension dim = 1;
}
message TypeProto {
  message Tensor { optional int32 elem_type = 1; optional TensorShapeProto shape = 2; }
  optional Tensor tensor_type = 1;
  optional string denotation = 6;
}
message ValueInfoProto { optional string name = 1; optional TypeProto type = 2; optional string doc_string = 3; }
message TensorProto {
  repeated int64 dims = 1;
  optional int32 data_type = 2;
  repeated float float_data = 4 [packed = true];
  repeated int32 int32_data = 5 [packed = true];
  repeated bytes string_data = 6;
  repeated int64 int64_data = 7 [packed = true];
  optional string name = 8;
  optional bytes raw_data = 9;
  repeated double double_data = 10 [packed = true];
  repeated uint64 uint64_data = 11 [packed = true];
  optional string doc_string = 12;
  repeated StringStringEntryProto external_data = 13;
  optional int32 data_location = 14;
}
message AttributeProto {
  optional string name = 1;
  optional float f = 2;
  optional int64 i = 3;
  optional bytes s = 4;
  optional TensorProto t = 5;
  optional GraphProto g = 6;
  repeated float floats = 7;
  repeated int64 ints = 8;
  repeated bytes strings = 9;
  repeated TensorProto tensors = 10;
  repeated GraphProto graphs = 11;
  optional string doc_string = 13;
  optional int32 type = 20;
  optional string ref_attr_name = 21;
}
message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  optional string name = 3;
  optional string op_type = 4;
  repeated AttributeProto attribute = 5;
  optional string doc_string = 6;
  optional string domain = 7;
}
message GraphProto {
  repeated NodeProto node = 1;
  optional string name = 2;
  repeated TensorProto initializer = 5;
  optional string doc_string = 10;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
  repeated ValueInfoProto value_info = 13;
}
message ModelProto {
  optional int64 ir_version = 1;
  optional string producer_name = 2;
  optional string producer_version = 3;
  optional string domain = 4;
  optional int64 model_version = 5;
  optional string doc_string = 6;
  optional GraphProto graph = 7;
  repeated OperatorSetIdProto opset_import = 8;
  repeated StringStringEntryProto metadata_props = 14;
}
`;

const root = protobuf.parse(SCHEMA, { keepCase: true }).root;
const ModelType = root.lookupType('onnx.ModelProto');

/** ONNX TensorProto.DataType codes used here. */
export const DataType = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10, DOUBLE: 11 } as const;
/** ONNX AttributeProto.AttributeType codes used here. */
export const AttrType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7 } as const;

export interface Dim { dim_value?: number; dim_param?: string }
export interface ValueInfo { name: string; type?: { tensor_type?: { elem_type?: number; shape?: { dim: Dim[] } } } }
export interface StringEntry { key: string; value: string }
export interface Tensor {
  name: string; dims: number[]; data_type: number;
  raw_data?: Uint8Array; float_data?: number[]; int32_data?: number[]; int64_data?: number[];
  double_data?: number[]; uint64_data?: number[];
  external_data?: StringEntry[]; data_location?: number;
}
export interface Attribute {
  name: string; type?: number; f?: number; i?: number; s?: Uint8Array; t?: Tensor; g?: Graph;
  floats?: number[]; ints?: number[]; graphs?: Graph[];
}
export interface Node { input: string[]; output: string[]; name?: string; op_type: string; domain?: string; attribute: Attribute[] }
export interface Graph { node: Node[]; name?: string; initializer: Tensor[]; input: ValueInfo[]; output: ValueInfo[]; value_info: ValueInfo[] }
export interface Model {
  ir_version: number; producer_name?: string; producer_version?: string; graph: Graph;
  opset_import: { domain?: string; version: number }[]; metadata_props?: StringEntry[];
}

/** Decodes an ONNX ModelProto; tensor bytes are views into `bytes`. Throws on malformed protobuf. */
export function decodeModel(bytes: Uint8Array): Model {
  const message = ModelType.decode(bytes) as unknown as Model;
  if (!message.graph) throw new Error('no graph in the ONNX file');
  return message;
}

/** Encodes an ONNX ModelProto to bytes. */
export function encodeModel(model: Model): Uint8Array {
  return ModelType.encode(ModelType.fromObject(model as never)).finish();
}

/** IEEE 754 half precision bits to a number. */
export function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}
