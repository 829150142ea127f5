/**
 * Streaming safetensors writer. The header (names, dtypes, shapes, offsets) is computed from the entries up front,
 * then each tensor's data is produced, converted and written one at a time, so a multi-GB checkpoint never sits in
 * memory. Writes go to a temp file beside the target that is renamed into place only when complete (atomic).
 * Example:
 *   await writeSafetensors('out.safetensors', [
 *     { name: 'w', dtype: 'F16', shape: [2, 3], data: () => new Float32Array([1, 2, 3, 4, 5, 6]) },
 *   ], { format: 'pt' });
 */
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DTYPE_BYTES, SafetensorsError, type SafetensorsDtype } from './safetensors.js';

export type WritableDtype = 'F32' | 'F16' | 'BF16';

/** A float tensor produced as float32 values and converted to its dtype here. */
export interface FloatTensorEntry {
  name: string;
  dtype: WritableDtype;
  shape: number[];
  /** called once, when this tensor is written; returns numel(shape) float32 values (converted to dtype here) */
  data: () => Float32Array | Promise<Float32Array>;
}

/** A tensor of any dtype copied as stored bytes (e.g. int64 position ids carried over from a checkpoint). */
export interface RawTensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  raw: () => Uint8Array | Promise<Uint8Array>;
}

export type TensorEntry = FloatTensorEntry | RawTensorEntry;

/** Values per write call: big tensors are converted and written in pieces, keeping the extra memory small (tests lower it). */
export const writerSettings = { chunkValues: 1 << 24 };

/** Header JSON bytes, padded with spaces to a multiple of 8 so the data section starts aligned (as safetensors does). */
function safetensorsHeader(
  entries: readonly { name: string; dtype: SafetensorsDtype; shape: number[]; raw?: unknown }[],
  metadata?: Record<string, string>,
): { header: Buffer; dataBytes: number } {
  const obj: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) obj['__metadata__'] = metadata;
  let off = 0;
  for (const e of entries) {
    if (e.name === '__metadata__' || e.name in obj)
      throw new Error(`safetensors writer: duplicate or reserved tensor name "${e.name}"`);
    if (!(e.dtype in DTYPE_BYTES) || (!('raw' in e) && !['F32', 'F16', 'BF16'].includes(e.dtype)))
      throw new Error(`safetensors writer: tensor "${e.name}" has unsupported dtype ${e.dtype}`);
    if (!e.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new Error(`safetensors writer: tensor "${e.name}" has invalid shape [${e.shape}]`);
    const bytes = e.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[e.dtype];
    obj[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  const json = Buffer.from(JSON.stringify(obj), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const header = Buffer.alloc(8 + padded, 0x20);
  header.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(header, 8);
  return { header, dataBytes: off };
}

/** Writes a safetensors file atomically (temp file + rename); resolves to the total byte size. */
export async function writeSafetensors(
  path: string,
  entries: readonly TensorEntry[],
  metadata?: Record<string, string>,
): Promise<number> {
  const { header, dataBytes } = safetensorsHeader(entries, metadata);
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now().toString(36)}.tmp`);
  const fh = await open(tmp, 'w');
  let ok = false;
  try {
    await writeAll(fh, header, 0);
    let pos = header.length;
    // one chunk write stays in flight while the next chunk (or the next tensor's data) is computed: CPU and disk
    // overlap. A failed write is parked in writeError (no unhandled rejection) and rethrown at the next wait.
    let inFlight: Promise<void> = Promise.resolve();
    let writeError: unknown = null;
    const waitWrite = async () => {
      await inFlight;
      if (writeError) throw writeError;
    };
    try {
      for (const e of entries) {
        const n = e.shape.reduce((a, b) => a * b, 1);
        if ('raw' in e) {
          const bytes = await e.raw();
          if (bytes.length !== n * DTYPE_BYTES[e.dtype])
            throw new SafetensorsError(path, `tensor "${e.name}": raw() gave ${bytes.length} bytes for [${e.shape}]`);
          await waitWrite();
          inFlight = writeAll(fh, bytes, pos).catch((err: unknown) => {
            writeError = err;
          });
          pos += bytes.length;
          continue;
        }
        const values = await e.data();
        if (values.length !== n)
          throw new SafetensorsError(
            path,
            `tensor "${e.name}": data() gave ${values.length} values, shape [${e.shape}] needs ${n}`,
          );
        const chunk = writerSettings.chunkValues;
        for (let start = 0; start < n; start += chunk) {
          const bytes = encodeValues(values.subarray(start, Math.min(n, start + chunk)), e.dtype);
          await waitWrite();
          inFlight = writeAll(fh, bytes, pos).catch((err: unknown) => {
            writeError = err;
          });
          pos += bytes.length;
        }
      }
    } finally {
      await inFlight; // never close the file under a pending write
    }
    await waitWrite();
    if (pos !== header.length + dataBytes)
      throw new SafetensorsError(path, `internal: wrote ${pos} bytes, header promised ${header.length + dataBytes}`);
    await fh.sync();
    ok = true;
    return pos;
  } finally {
    await fh.close();
    if (ok) await rename(tmp, path);
    else await unlink(tmp).catch(() => undefined);
  }
}

async function writeAll(fh: import('node:fs/promises').FileHandle, buf: Uint8Array, position: number): Promise<void> {
  for (let off = 0; off < buf.length;) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, position + off);
    off += bytesWritten;
  }
}

/** float32 values as little-endian bytes of dtype (this code assumes a little-endian host, like every Node target). */
export function encodeValues(v: Float32Array, dtype: WritableDtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const out = new Uint16Array(v.length);
  // read the float bits through an aligned view (a Float32Array's byteOffset is always a multiple of 4)
  const u = new Uint32Array(v.buffer, v.byteOffset, v.length);
  if (dtype === 'F16') for (let i = 0; i < u.length; i++) out[i] = halfFromFloatBits(u[i]);
  else floatsToBf16(u, out);
  return new Uint8Array(out.buffer);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> IEEE half bits, round to nearest even; overflow gives +-Inf, NaN stays NaN. */
export function floatToHalf(x: number): number {
  f32[0] = x;
  return halfFromFloatBits(u32[0]);
}

/** The same, from the float's bit pattern (the hot loop of F16 writes). */
function halfFromFloatBits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: rounds to zero
    const m = mant | 0x800000; // implicit leading one
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let r = m >>> shift;
    if (rest > half || (rest === half && r & 1)) r++;
    return sign | r; // a carry into bit 10 correctly yields the smallest normal
  }
  let r = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && r & 1)) r++; // may carry into the exponent, up to Inf: correct
  return sign | r;
}

/** float32 -> bfloat16 bits (upper half), round to nearest even; NaN kept quiet. */
function floatsToBf16(u: Uint32Array, out: Uint16Array): void {
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) {
      out[i] = (x >>> 16) | 0x40;
      continue;
    }
    out[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
  }
}
