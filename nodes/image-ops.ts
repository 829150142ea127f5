/**
 * Image operations without a model, with ComfyUI's semantics: ImageScale / ImageScaleBy, ImageInvert, ImageBatch,
 * EmptyImage, ImagePadForOutpaint, LoadImageMask. IMAGE is float [B, H, W, C] in 0..1; MASK is [B, H, W].
 */
import { defineNode, t } from './define.js';
import type { Tensor } from '../server/engine/tensor.js';
import {
  IMAGE_UPSCALE_METHODS,
  commonUpscale,
  roundHalfEven,
  type UpscaleMethod,
} from '../server/engine/ops/resize.js';
import { sniffImage } from '../server/storage/image-sniff.js';
import { inputImages } from './image.js';
import { checkInputImage, inputImageFingerprint, readInputImage } from './input-image-file.js';
import { decodeRgba } from '../server/storage/image-decode.js';

const MAX_RESOLUTION = 16384;
const f = Math.fround;

/** [B, H, W, C] <-> [B, C, H, W] */
export function toNCHW(x: Tensor): Tensor {
  const [b, h, w, c] = x.shape,
    out = new Float32Array(x.data.length);
  for (let i = 0; i < b; i++)
    for (let p = 0; p < h * w; p++)
      for (let k = 0; k < c; k++) out[(i * c + k) * h * w + p] = x.data[(i * h * w + p) * c + k];
  return { shape: [b, c, h, w], data: out };
}
export function toNHWC(x: Tensor): Tensor {
  const [b, c, h, w] = x.shape,
    out = new Float32Array(x.data.length);
  for (let i = 0; i < b; i++)
    for (let p = 0; p < h * w; p++)
      for (let k = 0; k < c; k++) out[(i * h * w + p) * c + k] = x.data[(i * c + k) * h * w + p];
  return { shape: [b, h, w, c], data: out };
}

const scaleImage = (image: Tensor, width: number, height: number, method: UpscaleMethod, crop: 'disabled' | 'center') =>
  toNHWC(commonUpscale(toNCHW(image), width, height, method, crop));

const imageIn = t.socket('IMAGE', 'image');
const methodIn = t.combo('upscale_method', [...IMAGE_UPSCALE_METHODS]);

export const ImageScale = defineNode({
  id: 'ImageScale',
  displayName: 'Upscale Image',
  category: 'image/upscaling',
  description: 'Resizes images to a size in pixels (0 keeps the aspect ratio from the other side).',
  inputs: [
    imageIn,
    methodIn,
    t.int('width', { default: 512, min: 0, max: MAX_RESOLUTION, step: 1 }),
    t.int('height', { default: 512, min: 0, max: MAX_RESOLUTION, step: 1 }),
    t.combo('crop', ['disabled', 'center']),
  ],
  outputs: [t.out('IMAGE')],
  execute: ({ image, upscale_method, width, height, crop }) => {
    if (width === 0 && height === 0) return { outputs: [image] };
    const [, h, w] = image.shape;
    if (width === 0) width = Math.max(1, roundHalfEven((w * height) / h));
    else if (height === 0) height = Math.max(1, roundHalfEven((h * width) / w));
    return { outputs: [scaleImage(image, width, height, upscale_method, crop)] };
  },
});

export const ImageScaleBy = defineNode({
  id: 'ImageScaleBy',
  displayName: 'Upscale Image By',
  category: 'image/upscaling',
  description: 'Resizes images by a factor.',
  inputs: [imageIn, methodIn, t.float('scale_by', { default: 1.0, min: 0.01, max: 8.0, step: 0.01 })],
  outputs: [t.out('IMAGE')],
  execute: ({ image, upscale_method, scale_by }) => {
    const [, h, w] = image.shape;
    const width = roundHalfEven(w * scale_by),
      height = roundHalfEven(h * scale_by);
    if (width < 1 || height < 1) throw new Error(`scale_by ${scale_by} makes a ${w}x${h} image empty`);
    return { outputs: [scaleImage(image, width, height, upscale_method, 'disabled')] };
  },
});

export const ImageInvert = defineNode({
  id: 'ImageInvert',
  displayName: 'Invert Image',
  category: 'image',
  description: '1 - image.',
  inputs: [imageIn],
  outputs: [t.out('IMAGE')],
  execute: ({ image }) => ({ outputs: [{ shape: [...image.shape], data: image.data.map((v) => f(1 - v)) }] }),
});

export const ImageBatch = defineNode({
  id: 'ImageBatch',
  displayName: 'Batch Images',
  category: 'image',
  description: "Joins two image batches; image2 is resized (bilinear, centre crop) to image1's size when they differ.",
  inputs: [t.socket('IMAGE', 'image1'), t.socket('IMAGE', 'image2')],
  outputs: [t.out('IMAGE')],
  execute: ({ image1, image2 }) => {
    const [, h, w, c] = image1.shape;
    if (image2.shape[3] !== c) throw new Error(`image2 has ${image2.shape[3]} channels, image1 ${c}`);
    const b = image2.shape[1] === h && image2.shape[2] === w ? image2 : scaleImage(image2, w, h, 'bilinear', 'center');
    const data = new Float32Array(image1.data.length + b.data.length);
    data.set(image1.data);
    data.set(b.data, image1.data.length);
    return { outputs: [{ shape: [image1.shape[0] + b.shape[0], h, w, c], data }] };
  },
});

export const EmptyImage = defineNode({
  id: 'EmptyImage',
  displayName: 'EmptyImage',
  category: 'image',
  description: 'A batch of images of one colour (0xRRGGBB).',
  inputs: [
    t.int('width', { default: 512, min: 1, max: MAX_RESOLUTION, step: 1 }),
    t.int('height', { default: 512, min: 1, max: MAX_RESOLUTION, step: 1 }),
    t.int('batch_size', { default: 1, min: 1, max: 4096 }),
    t.int('color', { default: 0, min: 0, max: 0xffffff, step: 1 }),
  ],
  outputs: [t.out('IMAGE')],
  validate: ({ width, height, batch_size }) => {
    const bytes = width * height * batch_size * 3 * 4;
    return bytes > 16 * 1024 ** 3
      ? `a ${width}x${height} batch of ${batch_size} needs ${(bytes / 1024 ** 3).toFixed(1)} GiB`
      : true;
  },
  execute: ({ width, height, batch_size, color }) => {
    const rgb = [f(((color >> 16) & 0xff) / 0xff), f(((color >> 8) & 0xff) / 0xff), f((color & 0xff) / 0xff)];
    const n = width * height * batch_size,
      data = new Float32Array(n * 3);
    for (let i = 0; i < n; i++) {
      data[i * 3] = rgb[0];
      data[i * 3 + 1] = rgb[1];
      data[i * 3 + 2] = rgb[2];
    }
    return { outputs: [{ shape: [batch_size, height, width, 3], data }] };
  },
});

const pad = (name: string) => t.int(name, { default: 0, min: 0, max: MAX_RESOLUTION, step: 8 });

export const ImagePadForOutpaint = defineNode({
  id: 'ImagePadForOutpaint',
  displayName: 'Pad Image for Outpainting',
  category: 'image',
  description: 'Adds grey (0.5) borders and a mask that is 1 on them, feathered (quadratically) into the image.',
  inputs: [
    imageIn,
    pad('left'),
    pad('top'),
    pad('right'),
    pad('bottom'),
    t.int('feathering', { default: 40, min: 0, max: MAX_RESOLUTION, step: 1 }),
  ],
  outputs: [t.out('IMAGE'), t.out('MASK')],
  execute: ({ image, left, top, right, bottom, feathering }) => {
    const [b, h, w, c] = image.shape,
      H = h + top + bottom,
      W = w + left + right;
    const out = new Float32Array(b * H * W * c).fill(0.5);
    for (let i = 0; i < b; i++)
      for (let y = 0; y < h; y++) {
        out.set(image.data.subarray((i * h + y) * w * c, (i * h + y + 1) * w * c), ((i * H + y + top) * W + left) * c);
      }
    const mask = new Float32Array(H * W).fill(1);
    const feather = feathering > 0 && feathering * 2 < h && feathering * 2 < w;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        let v = 0;
        if (feather) {
          const d = Math.min(top !== 0 ? y : h, bottom !== 0 ? h - y : h, left !== 0 ? x : w, right !== 0 ? w - x : w);
          if (d < feathering) {
            const r = (feathering - d) / feathering;
            v = f(r * r);
          }
        }
        mask[(y + top) * W + x + left] = v;
      }
    return {
      outputs: [
        { shape: [b, H, W, c], data: out },
        { shape: [1, H, W], data: mask },
      ],
    };
  },
});

/** One 8-bit channel of a PNG/JPEG as the RGBA image Pillow's convert('RGBA') gives. */
function imageChannel(
  bytes: Uint8Array,
  name: string,
  channel: number,
): { width: number; height: number; values: Uint8Array } {
  const kind = sniffImage(bytes);
  if (kind !== 'png' && kind !== 'jpeg') throw new Error(`cannot decode image ${name}: not a PNG or JPEG image`);
  const { width, height, rgba } = decodeRgba(bytes, kind);
  const values = new Uint8Array(width * height);
  for (let i = 0; i < width * height; i++) values[i] = kind === 'jpeg' && channel === 3 ? 255 : rgba[i * 4 + channel];
  return { width, height, values };
}

const CHANNELS = { alpha: 3, red: 0, green: 1, blue: 2 } as const;

export const LoadImageMask = defineNode({
  id: 'LoadImageMask',
  displayName: 'Load Image (as Mask)',
  category: 'mask',
  description: 'A mask from one channel of an input image (alpha is inverted: transparent = 1, as ComfyUI does).',
  inputs: [
    t.checked(
      t.combo('image', (s) => inputImages(s.dirs.input), { image_upload: true }),
      checkInputImage,
    ),
    t.combo('channel', ['alpha', 'red', 'green', 'blue']),
  ],
  outputs: [t.out('MASK')],
  fingerprint: ({ image }, s) => inputImageFingerprint(image, s),
  execute: ({ image, channel }, ctx) => {
    const k = CHANNELS[channel];
    const { width, height, values } = imageChannel(readInputImage(image, ctx.services), image, k);
    const data = new Float32Array(width * height);
    for (let i = 0; i < data.length; i++) {
      const v = f(values[i] / 255);
      data[i] = k === 3 ? f(1 - v) : v;
    }
    return { outputs: [{ shape: [1, height, width], data }] };
  },
});
