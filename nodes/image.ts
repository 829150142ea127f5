/** Image nodes: SaveImage, PreviewImage, LoadImage. IMAGE is float [B,H,W,C] in 0..1; MASK is [B,H,W]. */
import { existsSync, readdirSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { defineNode, t } from './define.js';
import type { Tensor } from '../server/engine/tensor.js';
import { encodePng } from '../server/storage/png.js';
import { writeFileAtomic } from '../server/storage/atomic-write.js';
import { checkRelativeName, resolveInside } from '../server/storage/safe-path.js';
import { checkImageBudget } from '../server/storage/image-sniff.js';
import { checkInputImage, inputImageFingerprint, readInputImage } from './input-image-file.js';
import { decodeRgba } from '../server/storage/image-decode.js';

/** float [H,W,C] slice of batch item b to 8-bit, rounding like PIL's clip(i*255) */
export function imageToBytes(
  img: Tensor,
  b: number,
): { pixels: Uint8Array; width: number; height: number; channels: 3 | 4 } {
  const [, h, w, c] = img.shape;
  const n = h * w * c;
  const px = new Uint8Array(n);
  const src = img.data.subarray(b * n, (b + 1) * n);
  for (let i = 0; i < n; i++) {
    const v = Math.round(src[i] * 255);
    px[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
  return { pixels: px, width: w, height: h, channels: c === 4 ? 4 : 3 };
}

/** Next free counter for `{prefix}_{counter:05}_.png`, like ComfyUI. */
function nextCounter(dir: string, stem: string): number {
  if (!existsSync(dir)) return 1;
  let max = 0;
  const re = new RegExp(`^${stem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}_(\\d{5,})_\\.png$`);
  for (const f of readdirSync(dir)) {
    const m = re.exec(f);
    if (m) max = Math.max(max, Number(m[1]));
  }
  return max + 1;
}

function saveImages(
  images: Tensor,
  prefix: string,
  baseDir: string,
  type: 'output' | 'temp',
  text: Record<string, string>,
) {
  const sub = dirname(prefix) === '.' ? '' : dirname(prefix);
  const stem = prefix.slice(sub ? sub.length + 1 : 0) || 'ComfyUI';
  const dir = resolveInside(baseDir, sub);
  mkdirSync(dir, { recursive: true });
  let counter = nextCounter(dir, stem);
  const results = [];
  for (let b = 0; b < images.shape[0]; b++) {
    const { pixels, width, height, channels } = imageToBytes(images, b);
    const filename = `${stem}_${String(counter++).padStart(5, '0')}_.png`;
    writeFileAtomic(join(dir, filename), encodePng(pixels, width, height, channels, text, type === 'temp' ? 1 : 4));
    results.push({ filename, subfolder: sub, type });
  }
  return results;
}

/** A prefix whose folder part saveImages would refuse, said before the run instead of after it. */
function prefixProblem(prefix: string): string | true {
  const sub = dirname(prefix) === '.' ? '' : dirname(prefix);
  try {
    if (sub) checkRelativeName(sub, 'its folder');
    return true;
  } catch (e) {
    return `filename_prefix ${JSON.stringify(prefix)}: ${(e as Error).message} (a subfolder of the output folder)`;
  }
}

function pngText(prompt: unknown, extra: Record<string, unknown>): Record<string, string> {
  const text: Record<string, string> = { prompt: JSON.stringify(prompt) };
  const info = extra.extra_pnginfo;
  if (info && typeof info === 'object') for (const [k, v] of Object.entries(info)) text[k] = JSON.stringify(v);
  return text;
}

export const SaveImage = defineNode({
  id: 'SaveImage',
  displayName: 'Save Image',
  category: 'image',
  outputNode: true,
  description: 'Saves the input images to the output folder as PNG with the prompt and workflow embedded.',
  inputs: [
    t.socket('IMAGE', 'images', { tooltip: 'The images to save.' }),
    t.string('filename_prefix', { default: 'ComfyUI', tooltip: 'Prefix of the file name; may include a subfolder.' }),
  ],
  hidden: { prompt: 'PROMPT', extra_pnginfo: 'EXTRA_PNGINFO' },
  outputs: [],
  // refused before sampling, not after it
  validate: ({ filename_prefix }) => prefixProblem(filename_prefix),
  execute: ({ images, filename_prefix }, ctx) => ({
    outputs: [],
    ui: {
      images: saveImages(
        images,
        filename_prefix,
        ctx.services.dirs.output,
        'output',
        pngText(ctx.prompt, ctx.extraData),
      ),
    },
  }),
});

let previewCounter = 0;
export const PreviewImage = defineNode({
  id: 'PreviewImage',
  displayName: 'Preview Image',
  category: 'image',
  outputNode: true,
  description: 'Shows the images in the editor (saved to the temp folder).',
  inputs: [t.socket('IMAGE', 'images')],
  hidden: { prompt: 'PROMPT', extra_pnginfo: 'EXTRA_PNGINFO' },
  outputs: [],
  execute: ({ images }, ctx) => ({
    outputs: [],
    ui: {
      images: saveImages(
        images,
        `ComfyUI_temp_${process.pid}_${(previewCounter++).toString(36)}`,
        ctx.services.dirs.temp,
        'temp',
        {},
      ),
    },
  }),
});

/** Decode PNG or JPEG bytes to IMAGE [1,H,W,3] and MASK [1,H,W] (1 - alpha, ComfyUI's convention). */
export function decodeImage(bytes: Uint8Array, name: string): { image: Tensor; mask: Tensor } {
  let width: number,
    height: number,
    rgba: Uint8Array,
    hasAlpha = false;
  try {
    const kind = checkImageBudget(bytes).kind; // declared size checked before any pixel buffer is allocated
    if (kind !== 'png' && kind !== 'jpeg') throw new Error(`not a PNG or JPEG image`);
    ({ width, height, rgba } = decodeRgba(bytes, kind));
    hasAlpha = kind === 'png';
  } catch (e) {
    throw new Error(`cannot decode image ${name}: ${(e as Error).message}`);
  }
  const image = new Float32Array(width * height * 3);
  const mask = new Float32Array(width * height);
  for (let i = 0; i < width * height; i++) {
    image[i * 3] = rgba[i * 4] / 255;
    image[i * 3 + 1] = rgba[i * 4 + 1] / 255;
    image[i * 3 + 2] = rgba[i * 4 + 2] / 255;
    mask[i] = hasAlpha ? 1 - rgba[i * 4 + 3] / 255 : 0;
  }
  return { image: { shape: [1, height, width, 3], data: image }, mask: { shape: [1, height, width], data: mask } };
}

function inputImages(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => /\.(png|jpe?g|webp)$/i.test(f))
    .sort();
}

export const LoadImage = defineNode({
  id: 'LoadImage',
  displayName: 'Load Image',
  category: 'image',
  description: 'Loads a PNG or JPEG from the input folder; its alpha channel becomes the MASK.',
  // the list shows the top-level files; subfolder and annotated names (pasted, mask editor) pass the file check
  inputs: [
    t.checked(
      t.combo('image', (s) => inputImages(s.dirs.input), { image_upload: true }),
      checkInputImage,
    ),
  ],
  outputs: [t.out('IMAGE'), t.out('MASK')],
  fingerprint: ({ image }, services) => inputImageFingerprint(image, services),
  execute: ({ image }, ctx) => {
    const { image: img, mask } = decodeImage(readInputImage(image, ctx.services), image);
    return { outputs: [img, mask] };
  },
});

export { inputImages };
