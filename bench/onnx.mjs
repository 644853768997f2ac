// Minimal ONNX model writer for the bench's onnxruntime-node peers: just the protobuf messages
// the bench's graphs need (field numbers from onnx/onnx.proto), so the bench builds its own
// models without the onnx package. Proto2 wire format: varint (type 0), fixed32 (type 5) and
// length-delimited (type 2) fields; a message is a list of byte chunks, flattened on nesting.

const utf8 = new TextEncoder();

/** ONNX TensorProto.DataType codes. */
export const FLOAT = 1;
export const INT8 = 3;
export const INT32 = 6;
export const INT64 = 7;

function varint(v) {
  let x = BigInt.asUintN(64, BigInt(v));  // negative int64 values take ten bytes (two's complement)
  const out = [];
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
  return Uint8Array.from(out);
}

function concat(parts) {
  const flat = parts.flat(Infinity);
  const out = new Uint8Array(flat.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of flat) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const tag = (field, wire) => varint((field << 3) | wire);
const int = (field, v) => [tag(field, 0), varint(v)];
const f32 = (field, v) => [tag(field, 5), new Uint8Array(Float32Array.of(v).buffer)];
const bytes = (field, data) => [tag(field, 2), varint(data.length), data];
const str = (field, s) => bytes(field, utf8.encode(s));
const msg = (field, parts) => bytes(field, concat(parts));

// TypeProto { tensor_type = 1: { elem_type = 1, shape = 2: { dim = 1: { dim_value = 1 } } } }
function tensorType(elemType, dims) {
  return msg(1, [int(1, elemType), msg(2, dims.map((d) => msg(1, int(1, d))))]);
}

/** ValueInfoProto { name = 1, type = 2 }: a graph input or output. */
export function valueInfo(name, elemType, dims) {
  return [str(1, name), msg(2, tensorType(elemType, dims))];
}

/** TensorProto { dims = 1, data_type = 2, name = 8, raw_data = 9 } from a typed array (little-endian). */
export function initializer(name, elemType, dims, data) {
  return [dims.map((d) => int(1, d)), int(2, elemType), str(8, name),
    bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength))];
}

/** AttributeProto { name = 1, f = 2 | i = 3 | ints = 8, type = 20 } from a JS value. */
function attribute(name, v) {
  if (Array.isArray(v)) return [str(1, name), v.map((x) => int(8, x)), int(20, 7)];  // INTS
  if (Number.isInteger(v.int)) return [str(1, name), int(3, v.int), int(20, 2)];     // INT
  return [str(1, name), f32(2, v.float), int(20, 1)];                                 // FLOAT
}

/**
 * NodeProto { input = 1, output = 2, name = 3, op_type = 4, attribute = 5, domain = 7 }.
 * attrs: { name: { int } | { float } | number[] }; an empty input name skips an optional input.
 */
export function node(opType, inputs, outputs, attrs = {}, domain = '') {
  return [inputs.map((s) => str(1, s)), outputs.map((s) => str(2, s)), str(3, `${opType}_${outputs[0]}`),
    str(4, opType), Object.entries(attrs).map(([k, v]) => msg(5, attribute(k, v))), domain ? str(7, domain) : []];
}

/**
 * ModelProto { ir_version = 1, producer_name = 2, graph = 7, opset_import = 8 } around
 * GraphProto { node = 1, name = 2, initializer = 5, input = 11, output = 12 }.
 * opsets: { '': 17, 'com.microsoft': 1 } as OperatorSetIdProto { domain = 1, version = 2 }.
 */
export function model({ nodes, inputs, outputs, initializers = [], opsets }) {
  const graph = [nodes.map((n) => msg(1, n)), str(2, 'attention'), initializers.map((t) => msg(5, t)),
    inputs.map((v) => msg(11, v)), outputs.map((v) => msg(12, v))];
  return concat([int(1, 8), str(2, 'seqfuse-bench'), msg(7, graph),
    Object.entries(opsets).map(([domain, version]) => msg(8, [domain ? str(1, domain) : [], int(2, version)]))]);
}
