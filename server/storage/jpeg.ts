/**
 * Baseline JPEG encoding (JFIF, 4:4:4, the standard's example Huffman tables, IJG quality scaling) with every table
 * built once per quality. jpeg-js rebuilds its tables on each call (~100 ms a call whatever the image size), which is
 * slower than a CUDA sampling step: previews are encoded once per step, on the main thread.
 * Example: const bytes = encodeJpeg(rgba, width, height, 4, 80); // Buffer holding a .jpg
 */

// ITU-T T.81 Annex K: example quantisation tables (natural order) and Huffman tables (code counts per length, symbols)
const LUMA_QUANT = [
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51,
  87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101,
  72, 92, 95, 98, 112, 100, 103, 99,
];
const CHROMA_QUANT = [
  17,
  18,
  24,
  47,
  99,
  99,
  99,
  99,
  18,
  21,
  26,
  66,
  99,
  99,
  99,
  99,
  24,
  26,
  56,
  99,
  99,
  99,
  99,
  99,
  47,
  66,
  99,
  99,
  99,
  99,
  99,
  99,
  ...new Array<number>(32).fill(99),
];
/** ZIGZAG[k] = natural-order index of the k-th coefficient in zigzag order */
export const ZIGZAG = [
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
  35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47,
  55, 62, 63,
];

export interface HuffmanSpec {
  /** number of codes of each length 1..16 */
  counts: number[];
  symbols: number[];
}

const AC_LUMA_SYMBOLS = [
  0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22, 0x71, 0x14,
  0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09,
  0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a,
  0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65,
  0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88,
  0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9,
  0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
  0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea,
  0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
];
const AC_CHROMA_SYMBOLS = [
  0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71, 0x13, 0x22, 0x32,
  0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16,
  0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39,
  0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64,
  0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86,
  0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
  0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8,
  0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9,
  0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
];
const DC_SYMBOLS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

export const HUFFMAN: Record<'dcLuma' | 'dcChroma' | 'acLuma' | 'acChroma', HuffmanSpec> = {
  dcLuma: { counts: [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], symbols: DC_SYMBOLS },
  dcChroma: { counts: [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], symbols: DC_SYMBOLS },
  acLuma: { counts: [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d], symbols: AC_LUMA_SYMBOLS },
  acChroma: { counts: [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77], symbols: AC_CHROMA_SYMBOLS },
};

/** Canonical codes: code[symbol] and length[symbol] (T.81 Annex C). */
function huffmanCodes(spec: HuffmanSpec): { code: Uint16Array; length: Uint8Array } {
  const code = new Uint16Array(256),
    length = new Uint8Array(256);
  let next = 0,
    k = 0;
  for (let len = 1; len <= 16; len++) {
    for (let i = 0; i < spec.counts[len - 1]; i++) {
      const s = spec.symbols[k++];
      code[s] = next++;
      length[s] = len;
    }
    next <<= 1;
  }
  return { code, length };
}

const CODES = {
  dcLuma: huffmanCodes(HUFFMAN.dcLuma),
  dcChroma: huffmanCodes(HUFFMAN.dcChroma),
  acLuma: huffmanCodes(HUFFMAN.acLuma),
  acChroma: huffmanCodes(HUFFMAN.acChroma),
};

/**
 * One 8-point DCT in place (Arai, Agui and Nakajima's factorisation: 5 multiplies), on `d[o + i * stride]`. Its
 * output k is the DCT's coefficient k times 2 sqrt(2) AAN_SCALE[k]; dct8x8 takes that scaling out.
 */
function aan8(d: Float64Array, o: number, stride: number): void {
  const i0 = o,
    i1 = o + stride,
    i2 = o + 2 * stride,
    i3 = o + 3 * stride,
    i4 = o + 4 * stride,
    i5 = o + 5 * stride,
    i6 = o + 6 * stride,
    i7 = o + 7 * stride;
  const s07 = d[i0] + d[i7],
    d07 = d[i0] - d[i7],
    s16 = d[i1] + d[i6],
    d16 = d[i1] - d[i6],
    s25 = d[i2] + d[i5],
    d25 = d[i2] - d[i5],
    s34 = d[i3] + d[i4],
    d34 = d[i3] - d[i4];
  // even half
  const e0 = s07 + s34,
    e3 = s07 - s34,
    e1 = s16 + s25,
    e2 = s16 - s25;
  d[i0] = e0 + e1;
  d[i4] = e0 - e1;
  const m = (e2 + e3) * Math.SQRT1_2;
  d[i2] = e3 + m;
  d[i6] = e3 - m;
  // odd half
  const a = d34 + d25,
    b = d25 + d16,
    c = d16 + d07;
  const r = (a - c) * 0.38268343236508984; // sin(pi/8)
  const p = 0.5411961001461971 * a + r; // sqrt(2) cos(3 pi / 8)
  const q = 1.3065629648763766 * c + r; // sqrt(2) cos(pi / 8)
  const t = b * Math.SQRT1_2;
  const u = d07 + t,
    v = d07 - t;
  d[i5] = v + p;
  d[i3] = v - p;
  d[i1] = u + q;
  d[i7] = u - q;
}

/** AAN output scale per frequency k: cos(k pi / 16) sqrt 2 (1 for k = 0) */
const AAN_SCALE = [0, 1, 2, 3, 4, 5, 6, 7].map((k) => (k === 0 ? 1 : Math.cos((k * Math.PI) / 16) * Math.SQRT2));
/** what divides the AAN output to give JPEG's DCT coefficient F(v, u) = 1/4 C(u) C(v) sum f cos cos */
const AAN_DIVISOR = new Float64Array(64);
for (let v = 0; v < 8; v++) for (let u = 0; u < 8; u++) AAN_DIVISOR[v * 8 + u] = 8 * AAN_SCALE[v] * AAN_SCALE[u];

/** JPEG's forward DCT of an 8x8 block (row-major samples, level-shifted) in place, natural order. */
export function dct8x8(block: Float64Array): Float64Array {
  for (let y = 0; y < 8; y++) aan8(block, y * 8, 1);
  for (let x = 0; x < 8; x++) aan8(block, x, 8);
  for (let i = 0; i < 64; i++) block[i] /= AAN_DIVISOR[i];
  return block;
}

/** Quantisation tables for an IJG quality 1..100 (natural order), and 1/q for the encoder. */
function quantTables(quality: number): { luma: number[]; chroma: number[] } {
  const q = Math.min(100, Math.max(1, Math.round(quality)));
  const scale = q < 50 ? 5000 / q : 200 - 2 * q;
  const scaled = (t: number[]) => t.map((v) => Math.min(255, Math.max(1, Math.floor((v * scale + 50) / 100))));
  return { luma: scaled(LUMA_QUANT), chroma: scaled(CHROMA_QUANT) };
}
const tablesByQuality = new Map<number, { luma: number[]; chroma: number[] }>();

/** Appends bits most significant first, stuffing a 0x00 after each 0xFF byte (T.81 F.1.2.3). */
class BitWriter {
  private bytes: Uint8Array;
  private n = 0;
  private acc = 0;
  private bits = 0;
  constructor(capacity: number) {
    this.bytes = new Uint8Array(Math.max(1024, capacity));
  }
  private push(b: number): void {
    if (this.n + 2 > this.bytes.length) {
      const grown = new Uint8Array(this.bytes.length * 2);
      grown.set(this.bytes);
      this.bytes = grown;
    }
    this.bytes[this.n++] = b;
    if (b === 0xff) this.bytes[this.n++] = 0;
  }
  /** `count` (<= 16) low bits of `value` */
  write(value: number, count: number): void {
    this.acc = (this.acc << count) | (value & ((1 << count) - 1));
    this.bits += count;
    while (this.bits >= 8) {
      this.bits -= 8;
      this.push((this.acc >>> this.bits) & 0xff);
    }
    this.acc &= (1 << this.bits) - 1;
  }
  /** pads the last byte with 1 bits */
  finish(): Uint8Array {
    if (this.bits > 0) this.write((1 << (8 - this.bits)) - 1, 8 - this.bits);
    return this.bytes.subarray(0, this.n);
  }
}

/** Bits needed for |v| (the JPEG magnitude category) */
function category(v: number): number {
  let a = v < 0 ? -v : v,
    n = 0;
  while (a > 0) {
    n++;
    a >>= 1;
  }
  return n;
}

function segment(marker: number, body: number[]): number[] {
  const len = body.length + 2;
  return [0xff, marker, len >> 8, len & 0xff, ...body];
}

/**
 * Encodes 8-bit pixels (RGB or RGBA rows; alpha ignored) as a baseline JPEG at IJG `quality` (1-100).
 * Edge blocks repeat the last row and column.
 */
export function encodeJpeg(pixels: Uint8Array, width: number, height: number, channels: 3 | 4, quality = 80): Buffer {
  if (!(width > 0 && height > 0 && width < 65536 && height < 65536))
    throw new Error(`encodeJpeg: bad size ${width}x${height}`);
  if (pixels.length < width * height * channels) throw new Error('encodeJpeg: fewer pixels than width x height');
  let tables = tablesByQuality.get(quality);
  if (!tables) tablesByQuality.set(quality, (tables = quantTables(quality)));
  const { luma, chroma } = tables;

  const header: number[] = [0xff, 0xd8];
  header.push(...segment(0xe0, [0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0])); // JFIF 1.1, aspect 1:1
  header.push(...segment(0xdb, [0, ...ZIGZAG.map((i) => luma[i]), 1, ...ZIGZAG.map((i) => chroma[i])]));
  header.push(
    ...segment(0xc0, [8, height >> 8, height & 0xff, width >> 8, width & 0xff, 3, 1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1]),
  );
  const dht = (cls: number, spec: HuffmanSpec) => [cls, ...spec.counts, ...spec.symbols];
  header.push(
    ...segment(0xc4, [
      ...dht(0x00, HUFFMAN.dcLuma),
      ...dht(0x10, HUFFMAN.acLuma),
      ...dht(0x01, HUFFMAN.dcChroma),
      ...dht(0x11, HUFFMAN.acChroma),
    ]),
  );
  header.push(...segment(0xda, [3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]));

  const out = new BitWriter(width * height);
  const plane = [new Float64Array(64), new Float64Array(64), new Float64Array(64)];
  const quantized = new Int32Array(64);
  const previousDc = [0, 0, 0];
  for (let by = 0; by < height; by += 8) {
    for (let bx = 0; bx < width; bx += 8) {
      for (let y = 0; y < 8; y++) {
        const row = Math.min(by + y, height - 1) * width;
        for (let x = 0; x < 8; x++) {
          const o = (row + Math.min(bx + x, width - 1)) * channels;
          const r = pixels[o],
            g = pixels[o + 1],
            b = pixels[o + 2];
          const k = y * 8 + x;
          plane[0][k] = 0.299 * r + 0.587 * g + 0.114 * b - 128;
          plane[1][k] = -0.168736 * r - 0.331264 * g + 0.5 * b;
          plane[2][k] = 0.5 * r - 0.418688 * g - 0.081312 * b;
        }
      }
      for (let c = 0; c < 3; c++) {
        const f = dct8x8(plane[c]);
        const q = c === 0 ? luma : chroma;
        for (let i = 0; i < 64; i++) quantized[i] = Math.round(f[i] / q[i]);
        const dc = c === 0 ? CODES.dcLuma : CODES.dcChroma,
          ac = c === 0 ? CODES.acLuma : CODES.acChroma;
        const diff = quantized[0] - previousDc[c];
        previousDc[c] = quantized[0];
        const dcCat = category(diff);
        out.write(dc.code[dcCat], dc.length[dcCat]);
        if (dcCat) out.write(diff < 0 ? diff + (1 << dcCat) - 1 : diff, dcCat);
        let run = 0;
        for (let k = 1; k < 64; k++) {
          const v = quantized[ZIGZAG[k]];
          if (v === 0) {
            run++;
            continue;
          }
          for (; run >= 16; run -= 16) out.write(ac.code[0xf0], ac.length[0xf0]);
          const cat = category(v);
          const sym = (run << 4) | cat;
          out.write(ac.code[sym], ac.length[sym]);
          out.write(v < 0 ? v + (1 << cat) - 1 : v, cat);
          run = 0;
        }
        if (run > 0) out.write(ac.code[0x00], ac.length[0x00]);
      }
    }
  }
  const data = out.finish();
  const file = Buffer.alloc(header.length + data.length + 2);
  file.set(header, 0);
  file.set(data, header.length);
  file[file.length - 2] = 0xff;
  file[file.length - 1] = 0xd9;
  return file;
}
