// safetensors files, written from the format's spec (github.com/huggingface/safetensors):
//   [N: u64 little-endian][N bytes of UTF-8 JSON header][byte buffer]
// Header: {"__metadata__": {"<key>": "<value>", ...} (optional),
//          "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
// Offsets are relative to the start of the byte buffer; tensor data is little-endian, row-major.
// A valid file's tensors tile the buffer exactly (no holes, no overlaps, nothing after the last),
// each range holds numel · dtype size bytes, and names are unique.
//
// Our writer: tensors ordered by element size (largest first) then name, so every tensor starts
// at a multiple of its element size; a compact header (no spaces) with __metadata__ first (keys
// sorted), entry fields in the order dtype, shape, data_offsets; the header padded with spaces
// so that the buffer starts 8-byte aligned. The same tensors and metadata always give the same
// bytes. Tensor data is never copied into a string; files are read and written tensor by tensor,
// so their size is not bounded by the largest typed array.
import { constants as bufferConstants } from 'node:buffer';
import { type FileHandle, open } from 'node:fs/promises';
import { endianness } from 'node:os';
import { type DType, DTYPE_SIZE, type TypedArray } from '../dtype.js';
import { describe, fail, SeqfuseError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { ioError, readAt, writeFileAtomic } from './atomic.js';

/** Tensors by name, as a Map or a plain object. */
export type TensorMap = ReadonlyMap<string, Tensor> | Readonly<Record<string, Tensor>>;

/** What a safetensors file holds. */
export interface SafetensorsContents {
  /** The tensors in the order of their data in the file; each owns its memory. */
  tensors: Map<string, Tensor>;
  /** The header's `__metadata__` (empty when there is none). */
  metadata: Record<string, string>;
}

const FILE_DTYPE: Record<DType, string> = { f32: 'F32', f16: 'F16', bf16: 'BF16', i32: 'I32', i8: 'I8', u8: 'U8' };
const OUR_DTYPE = new Map(Object.entries(FILE_DTYPE).map(([ours, file]) => [file, ours as DType]));
/** The largest header read or written (the reference implementation's limit, 100 MB). */
const MAX_HEADER = 100_000_000;
const METADATA = '__metadata__';
/** Tensor dims seqfuse supports (lib/tensor.ts). */
const MAX_DIMS = 8;

/** One tensor's header entry, checked. `begin`/`end` are relative to the byte buffer. */
interface Entry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

/** The raw bytes of a typed array (no copy). */
function bytesOf(a: TypedArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

// Typed arrays are in host byte order and the format is little-endian; every platform Node
// supports for seqfuse (x64, arm64) is little-endian, so no byte swapping is implemented.
function checkHost(where: string): void {
  if (endianness() !== 'LE') fail('ERR_UNSUPPORTED', `${where}: safetensors I/O needs a little-endian host`);
}

// --- writing ---------------------------------------------------------------------------------

/** JavaScript's string order (UTF-16 code units), independent of locale. */
function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function tensorsArg(tensors: unknown, where: string): Array<[string, Tensor]> {
  let entries: Array<[unknown, unknown]>;
  if (tensors instanceof Map) entries = [...tensors.entries()];
  else if (tensors !== null && typeof tensors === 'object' && !Array.isArray(tensors) && !(tensors instanceof Tensor)
    && !ArrayBuffer.isView(tensors)) entries = Object.entries(tensors);
  else fail('ERR_ARG', `${where}: expected tensors as a Map or an object of name → Tensor but received ${describe(tensors)}`);
  for (const [name, t] of entries) {
    if (typeof name !== 'string') fail('ERR_ARG', `${where}: expected tensor names to be strings but received ${describe(name)}`);
    if (name === METADATA) fail('ERR_ARG', `${where}: '${METADATA}' is reserved for the metadata and cannot name a tensor`);
    if (!(t instanceof Tensor)) fail('ERR_ARG', `${where}: expected a Tensor for '${name}' but received ${describe(t)}`);
    if (t.disposed) fail('ERR_DISPOSED', `${where}: tensor '${name}' was disposed`);
  }
  return entries as Array<[string, Tensor]>;
}

function metadataArg(metadata: unknown, where: string): Array<[string, string]> {
  if (metadata === undefined) return [];
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata) || metadata instanceof Map)
    fail('ERR_ARG', `${where}: expected metadata as an object of string → string but received ${describe(metadata)}`);
  const entries = Object.entries(metadata);
  for (const [k, v] of entries)
    if (typeof v !== 'string') fail('ERR_ARG', `${where}: expected metadata['${k}'] to be a string but received ${describe(v)}`);
  return entries.sort(([a], [b]) => byCodeUnits(a, b)) as Array<[string, string]>;
}

/** The file as a list of byte chunks: the 8-byte length and padded header, then each tensor's data (views, no copies). */
function fileChunks(tensors: unknown, metadata: unknown, where: string): Uint8Array[] {
  checkHost(where);
  const items = tensorsArg(tensors, where);
  const meta = metadataArg(metadata, where);
  items.sort(([a, ta], [b, tb]) => DTYPE_SIZE[tb.dtype] - DTYPE_SIZE[ta.dtype] || byCodeUnits(a, b));
  const fields: string[] = [];
  if (meta.length > 0)
    fields.push(`"${METADATA}":{${meta.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`);
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of items) {
    // a CUDA tensor's bytes come through a host copy
    const host = t.device === 'cpu' ? t : t.to('cpu');
    const data = bytesOf(host._data as TypedArray);
    if (host !== t) host.dispose();
    fields.push(`${JSON.stringify(name)}:{"dtype":"${FILE_DTYPE[t.dtype]}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + data.length}]}`);
    chunks.push(data);
    offset += data.length;
  }
  const json = new TextEncoder().encode(`{${fields.join(',')}}`);
  const n = Math.ceil((8 + json.length) / 8) * 8 - 8;
  if (n > MAX_HEADER) fail('ERR_ARG', `${where}: the header would be ${n} bytes, more than readers accept (${MAX_HEADER})`);
  const head = new Uint8Array(8 + n).fill(0x20, 8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(n), true);
  head.set(json, 8);
  return [head, ...chunks];
}

/**
 * The bytes of a safetensors file holding `tensors` (a Map or object of name → Tensor) and the
 * optional string → string `metadata`. Deterministic: tensors are laid out by element size
 * (largest first), then by name. The result is one Uint8Array, so the file must fit in the
 * largest typed array (4 GiB on Node 20); `saveSafetensors` has no such limit.
 */
export function encodeSafetensors(tensors: TensorMap, metadata?: Record<string, string>): Uint8Array {
  const where = 'encodeSafetensors';
  const chunks = fileChunks(tensors, metadata, where);
  const total = chunks.reduce((s, c) => s + c.length, 0);
  if (total > bufferConstants.MAX_LENGTH)
    fail('ERR_OOM', `${where}: the file would be ${total} bytes, more than the largest Uint8Array (${bufferConstants.MAX_LENGTH}); use saveSafetensors`);
  let out: Uint8Array;
  try {
    out = new Uint8Array(total);
  } catch (e) {
    throw new SeqfuseError('ERR_OOM', `${where}: could not allocate ${total} bytes (${(e as Error).message})`);
  }
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Writes `tensors` and `metadata` to `path` as a safetensors file (the bytes of
 * `encodeSafetensors`), atomically: through a temporary file `.<name>.tmp-<pid>-<random>` in the
 * same directory that is fsynced, renamed over `path`, and the directory fsynced. A crash at any
 * point leaves the old file or the new one, never a torn file. The tensors must not be written
 * to until the promise settles. File system errors reject with ERR_IO.
 */
export async function saveSafetensors(path: string, tensors: TensorMap, metadata?: Record<string, string>): Promise<void> {
  const where = 'saveSafetensors';
  if (typeof path !== 'string' || path === '') fail('ERR_ARG', `${where}: expected path to be a non-empty string but received ${describe(path)}`);
  await writeFileAtomic(path, fileChunks(tensors, metadata, where), where);
}

// --- reading ---------------------------------------------------------------------------------

/** N from the first 8 bytes, checked against the limit and the file size. */
function headerLength(first8: Uint8Array, fileBytes: number, where: string): number {
  if (fileBytes < 8) fail('ERR_ARG', `${where}: ${fileBytes} bytes is too short for a safetensors file (it starts with an 8-byte header length)`);
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER)) fail('ERR_ARG', `${where}: header length ${n} is more than the limit of ${MAX_HEADER} bytes (not a safetensors file?)`);
  if (8 + Number(n) > fileBytes) fail('ERR_ARG', `${where}: header length ${n} runs past the end of the file (${fileBytes} bytes)`);
  return Number(n);
}

/**
 * The first key that an object of `json` (valid JSON text) names twice, at any depth.
 * JSON.parse keeps the last of duplicates silently; the format forbids them, because two
 * readers could then see different tensors under one name.
 */
function duplicateKey(json: string): string | undefined {
  const objects: Array<Set<string> | null> = []; // per open bracket: the keys seen, null for arrays
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '{') objects.push(new Set());
    else if (c === '[') objects.push(null);
    else if (c === '}' || c === ']') objects.pop();
    else if (c === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      let k = j + 1;
      while (json[k] === ' ' || json[k] === '\t' || json[k] === '\n' || json[k] === '\r') k++;
      const keys = objects[objects.length - 1];
      if (keys && json[k] === ':') {
        const key = JSON.parse(json.slice(i, j + 1)) as string;
        if (keys.has(key)) return key;
        keys.add(key);
      }
      i = j;
    }
  }
  return undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function isSize(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** One header entry, checked on its own (dtype, shape, offsets within the buffer, size). */
function entryOf(name: string, info: unknown, bufferBytes: number, where: string): Entry {
  const what = `${where}: tensor '${name}'`;
  if (!isObject(info)) fail('ERR_ARG', `${what}: expected {dtype, shape, data_offsets} but the header has ${describe(info)}`);
  const { dtype: fileDtype, shape, data_offsets: offsets } = info;
  if (typeof fileDtype !== 'string') fail('ERR_ARG', `${what}: expected dtype to be a string but the header has ${describe(fileDtype)}`);
  if (!Array.isArray(shape) || !shape.every(isSize))
    fail('ERR_ARG', `${what}: expected shape to be an array of non-negative integers but the header has ${JSON.stringify(shape)}`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isSize) || offsets[0] > offsets[1])
    fail('ERR_ARG', `${what}: expected data_offsets to be [begin, end] with 0 ≤ begin ≤ end but the header has ${JSON.stringify(offsets)}`);
  const [begin, end] = offsets as [number, number];
  if (end > bufferBytes) fail('ERR_ARG', `${what}: data_offsets [${begin}, ${end}] run past the end of the byte buffer (${bufferBytes} bytes)`);
  const dtype = OUR_DTYPE.get(fileDtype);
  if (dtype === undefined)
    fail('ERR_UNSUPPORTED', `${what} has dtype ${fileDtype}, which seqfuse does not read (it reads ${[...OUR_DTYPE.keys()].join(', ')})`);
  if (shape.length > MAX_DIMS) fail('ERR_UNSUPPORTED', `${what} has ${shape.length} dims; seqfuse tensors have at most ${MAX_DIMS}`);
  const bytes = shape.reduce((p: bigint, s: number) => p * BigInt(s), BigInt(DTYPE_SIZE[dtype]));
  if (bytes !== BigInt(end - begin))
    fail('ERR_ARG', `${what}: ${fileDtype} [${shape.join(', ')}] is ${bytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`);
  return { name, dtype, shape: shape as number[], begin, end };
}

/**
 * Parses and checks the header (the N bytes after the length) of a file whose byte buffer has
 * `bufferBytes` bytes. Returns the entries sorted by offset and the metadata; throws ERR_ARG
 * for a malformed header and ERR_UNSUPPORTED for tensors seqfuse cannot hold.
 */
function parseHeader(header: Uint8Array, bufferBytes: number, where: string): { entries: Entry[]; metadata: Record<string, string> } {
  if (header[0] !== 0x7b) fail('ERR_ARG', `${where}: the header does not start with '{' (not a safetensors file?)`);
  let text: string;
  let json: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(header);
  } catch {
    fail('ERR_ARG', `${where}: the header is not valid UTF-8`);
  }
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail('ERR_ARG', `${where}: the header is not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(json)) fail('ERR_ARG', `${where}: expected the header to be a JSON object but it is ${describe(json)}`);
  const dup = duplicateKey(text);
  if (dup !== undefined) fail('ERR_ARG', `${where}: the header names '${dup}' twice`);
  const meta = json[METADATA] ?? {};
  if (!isObject(meta) || !Object.values(meta).every((v) => typeof v === 'string'))
    fail('ERR_ARG', `${where}: expected ${METADATA} to be an object of string → string but the header has ${JSON.stringify(meta)}`);
  const entries = Object.entries(json).filter(([name]) => name !== METADATA)
    .map(([name, info]) => entryOf(name, info, bufferBytes, where))
    .sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of entries) {
    if (e.begin < at) fail('ERR_ARG', `${where}: tensor '${e.name}' at [${e.begin}, ${e.end}] overlaps the tensor before it (which ends at ${at})`);
    if (e.begin > at) fail('ERR_ARG', `${where}: the byte buffer has a hole at [${at}, ${e.begin}] before tensor '${e.name}'`);
    at = e.end;
  }
  if (at !== bufferBytes) fail('ERR_ARG', `${where}: the byte buffer has ${bufferBytes - at} bytes after the last tensor (it must end at ${at})`);
  return { entries, metadata: Object.fromEntries(Object.entries(meta)) as Record<string, string> };
}

/** A new tensor per entry (zero-filled); if one cannot be allocated, those made so far are disposed. */
function allocateAll(entries: Entry[], where: string): Map<string, Tensor> {
  const tensors = new Map<string, Tensor>();
  for (const e of entries) {
    try {
      tensors.set(e.name, Tensor.empty(e.shape, { dtype: e.dtype }));
    } catch (err) {
      disposeAll(tensors);
      if (!(err instanceof SeqfuseError)) throw err;
      throw new SeqfuseError(err.code, `${where}: tensor '${e.name}' (${e.dtype} [${e.shape.join(', ')}]): ${err.message.replace(/^Tensor\.empty: /, '')}`);
    }
  }
  return tensors;
}

function disposeAll(tensors: Map<string, Tensor>): void {
  for (const t of tensors.values()) t.dispose();
}

/**
 * The tensors and metadata of a safetensors file held in `bytes`. Each tensor is a copy (the
 * buffer can be dropped afterwards). A malformed file (too short, bad JSON, offsets out of range,
 * holes or overlaps, size mismatches, bad shapes, duplicate names) gives ERR_ARG saying what is
 * wrong; a dtype other than F32, F16, BF16, I32, I8, U8 or more than 8 dims gives ERR_UNSUPPORTED.
 */
export function decodeSafetensors(bytes: Uint8Array): SafetensorsContents {
  const where = 'decodeSafetensors';
  checkHost(where);
  if (!(bytes instanceof Uint8Array)) fail('ERR_ARG', `${where}: expected bytes as a Uint8Array but received ${describe(bytes)}`);
  const n = headerLength(bytes, bytes.length, where);
  const base = 8 + n;
  const { entries, metadata } = parseHeader(bytes.subarray(8, base), bytes.length - base, where);
  const tensors = allocateAll(entries, where);
  for (const e of entries) bytesOf(tensors.get(e.name)!._data as TypedArray).set(bytes.subarray(base + e.begin, base + e.end));
  return { tensors, metadata };
}

/**
 * Reads a safetensors file: the tensors (each owning its memory) and the metadata. The file is
 * read tensor by tensor into the tensors' memory, so it may be larger than any single buffer.
 * Errors as for `decodeSafetensors`, messages naming the path; file system errors are ERR_IO.
 */
export async function loadSafetensors(path: string): Promise<SafetensorsContents> {
  if (typeof path !== 'string' || path === '')
    fail('ERR_ARG', `loadSafetensors: expected path to be a non-empty string but received ${describe(path)}`);
  const where = `loadSafetensors('${path}')`;
  checkHost(where);
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw ioError(where, 'open the file', e);
  }
  try {
    const size = (await fh.stat()).size;
    const first8 = new Uint8Array(8);
    await readAt(fh, first8.subarray(0, Math.min(8, size)), 0, where);
    const n = headerLength(first8, size, where);
    const header = new Uint8Array(n);
    await readAt(fh, header, 8, where);
    const { entries, metadata } = parseHeader(header, size - 8 - n, where);
    const tensors = allocateAll(entries, where);
    try {
      for (const e of entries) await readAt(fh, bytesOf(tensors.get(e.name)!._data as TypedArray), 8 + n + e.begin, where);
    } catch (e) {
      disposeAll(tensors);
      throw e;
    }
    return { tensors, metadata };
  } catch (e) {
    if (e instanceof SeqfuseError) throw e;
    throw ioError(where, 'read the file', e);
  } finally {
    await fh.close().catch(() => undefined);
  }
}
