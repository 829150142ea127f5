/**
 * Recognise image bytes by parsing their header, not just a magic number: PNG IHDR, JPEG SOF, GIF screen descriptor,
 * WEBP VP8/VP8L/VP8X, BMP file + DIB header. Uploads must be images whatever their name says, and every decoder
 * checks the declared size against a pixel budget before it allocates anything (a 377 KiB PNG can declare
 * 10000x10000 and cost gigabytes to decode).
 */
export type ImageKind = 'png' | 'jpeg' | 'webp' | 'gif' | 'bmp';

export interface ImageHeader {
  kind: ImageKind;
  width: number;
  height: number;
}

const DEFAULT_MAX_IMAGE_PIXELS = 32 * 1024 * 1024;
let maxPixels = DEFAULT_MAX_IMAGE_PIXELS;

/** Largest image (width x height) any decoder here accepts (default 32 Mi px). */
export function maxImagePixels(): number {
  return maxPixels;
}

/** Set once by the entry point from --max-image-pixels / TCD_MAX_IMAGE_PIXELS (server/settings.ts); undefined: default. */
export function setMaxImagePixels(n: number | undefined): void {
  maxPixels = n ?? DEFAULT_MAX_IMAGE_PIXELS;
}

export class ImageTooLargeError extends Error {
  constructor(
    readonly width: number,
    readonly height: number,
    readonly budget: number,
  ) {
    const mpx = (n: number) => `${(n / 1e6).toFixed(1)} Mpx`;
    super(`image is ${width}x${height} (${mpx(width * height)}); the limit is ${mpx(budget)}`);
    this.name = 'ImageTooLargeError';
  }
}

/** The header of `b` (kind and declared size), or null when it is not a well-formed image header. */
export function readImageHeader(b: Uint8Array): ImageHeader | null {
  const parse = { 0x89: png, 0xff: jpeg, 0x52: webp, 0x47: gif, 0x42: bmp }[b[0] as 0x89 | 0xff | 0x52 | 0x47 | 0x42];
  const head = parse?.(b) ?? null;
  return head && head.width > 0 && head.height > 0 ? head : null;
}

export function sniffImage(b: Uint8Array): ImageKind | null {
  return readImageHeader(b)?.kind ?? null;
}

/** The header, after checking its size against the pixel budget; throws for non-images and oversized images. */
export function checkImageBudget(b: Uint8Array, budget = maxImagePixels()): ImageHeader {
  const h = readImageHeader(b);
  if (!h) throw new Error('not a PNG, JPEG, WEBP, GIF or BMP image');
  if (h.width * h.height > budget) throw new ImageTooLargeError(h.width, h.height, budget);
  return h;
}

const u16be = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];
const u32be = (b: Uint8Array, o: number) => ((b[o] << 24) >>> 0) + (b[o + 1] << 16) + (b[o + 2] << 8) + b[o + 3];
const u16le = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8);
const u24le = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8) | (b[o + 2] << 16);
const i32le = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24);
const ascii = (b: Uint8Array, o: number, n: number) => String.fromCharCode(...b.subarray(o, o + n));

function png(b: Uint8Array): ImageHeader | null {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (b.length < 33 || sig.some((v, i) => b[i] !== v)) return null;
  // the first chunk must be a 13-byte IHDR with a valid bit depth / colour type pair
  if (u32be(b, 8) !== 13 || ascii(b, 12, 4) !== 'IHDR') return null;
  const depth = b[24],
    colour = b[25];
  const depths: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
  if (!depths[colour]?.includes(depth)) return null;
  return { kind: 'png', width: u32be(b, 16), height: u32be(b, 20) };
}

/** Walks JPEG marker segments up to the first start-of-frame, which carries the size. */
function jpeg(b: Uint8Array): ImageHeader | null {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return null;
  let o = 2;
  while (o + 4 <= b.length) {
    if (b[o] !== 0xff) return null;
    const m = b[o + 1];
    if (m === 0xff) {
      o++;
      continue;
    } // fill byte
    if (m === 0xd8 || m === 0x01 || (m >= 0xd0 && m <= 0xd7)) {
      o += 2;
      continue;
    } // markers without a length
    if (m === 0xd9 || m === 0xda) return null; // end of image or scan data before any frame header
    const len = u16be(b, o + 2);
    if (len < 2) return null;
    const sof = m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;
    if (sof) {
      if (o + 9 > b.length || len < 8) return null;
      return { kind: 'jpeg', width: u16be(b, o + 7), height: u16be(b, o + 5) };
    }
    o += 2 + len;
  }
  return null;
}

function gif(b: Uint8Array): ImageHeader | null {
  if (b.length < 13 || (ascii(b, 0, 6) !== 'GIF87a' && ascii(b, 0, 6) !== 'GIF89a')) return null;
  return { kind: 'gif', width: u16le(b, 6), height: u16le(b, 8) };
}

function webp(b: Uint8Array): ImageHeader | null {
  if (b.length < 30 || ascii(b, 0, 4) !== 'RIFF' || ascii(b, 8, 4) !== 'WEBP') return null;
  const chunk = ascii(b, 12, 4);
  if (chunk === 'VP8 ') {
    // lossy: 3-byte frame tag, start code 9d 01 2a, then 14-bit width and height
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return null;
    return { kind: 'webp', width: u16le(b, 26) & 0x3fff, height: u16le(b, 28) & 0x3fff };
  }
  if (chunk === 'VP8L') {
    if (b[20] !== 0x2f) return null;
    const bits = (b[21] | (b[22] << 8) | (b[23] << 16) | (b[24] << 24)) >>> 0;
    return { kind: 'webp', width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (chunk === 'VP8X') return { kind: 'webp', width: u24le(b, 24) + 1, height: u24le(b, 27) + 1 };
  return null;
}

function bmp(b: Uint8Array): ImageHeader | null {
  if (b.length < 26 || b[0] !== 0x42 || b[1] !== 0x4d) return null;
  const dataOffset = i32le(b, 10),
    dib = i32le(b, 14);
  if (![12, 40, 52, 56, 64, 108, 124].includes(dib) || b.length < 14 + dib) return null;
  if (dataOffset < 14 + dib || dataOffset > b.length) return null;
  const core = dib === 12;
  const width = core ? u16le(b, 18) : i32le(b, 18);
  const height = Math.abs(core ? u16le(b, 20) : i32le(b, 22)); // negative height: rows stored top-down
  const planes = u16le(b, core ? 22 : 26),
    bpp = u16le(b, core ? 24 : 28);
  if (planes !== 1 || ![1, 4, 8, 16, 24, 32].includes(bpp)) return null;
  return { kind: 'bmp', width, height };
}
