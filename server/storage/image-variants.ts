/**
 * /view's `preview=FORMAT;QUALITY` and `channel=rgba|rgb|a` for PNG files, as ComfyUI serves them: a preview is a
 * re-encoded lossy copy (JPEG here; a `webp` request also gets JPEG, since no WebP encoder ships with the project),
 * `rgb` drops alpha, `a` is the alpha channel alone over black.
 */
import { encodeJpeg } from './jpeg.js';
import { decodePng, encodePng } from './png.js';
import { checkImageBudget } from './image-sniff.js';

export interface ImageVariant {
  bytes: Buffer;
  contentType: string;
}

export function parsePreview(v: unknown): { quality: number } | null {
  if (typeof v !== 'string') return null;
  const m = /^(webp|jpeg|jpg);?(\d{1,3})?$/i.exec(v.trim());
  if (!m) return null;
  return { quality: Math.min(100, Math.max(1, Number(m[2] ?? 90))) };
}

/** True when `channel`/`preview` ask for something other than the original file. */
export function wantsVariant(channel: unknown, preview: unknown): boolean {
  const ch = typeof channel === 'string' ? channel.toLowerCase() : 'rgba';
  return !((ch === 'rgba' || ch === '') && !parsePreview(preview));
}

/** A variant of PNG bytes, or null when nothing but the original was asked for. */
export function pngVariant(png: Uint8Array, channel: unknown, preview: unknown): ImageVariant | null {
  const ch = typeof channel === 'string' ? channel.toLowerCase() : 'rgba';
  const pv = parsePreview(preview);
  if ((ch === 'rgba' || ch === '') && !pv) return null;
  checkImageBudget(png); // the declared size, before pngjs allocates for it
  const { width, height, rgba } = decodePng(png);
  const px = new Uint8Array(rgba);
  if (ch === 'a') {
    for (let i = 0; i < width * height; i++) {
      px[i * 4] = 0;
      px[i * 4 + 1] = 0;
      px[i * 4 + 2] = 0;
    }
    return { bytes: encodePng(px, width, height, 4), contentType: 'image/png' };
  }
  if (pv) return { bytes: encodeJpeg(px, width, height, 4, pv.quality), contentType: 'image/jpeg' };
  if (ch === 'rgb') {
    const rgb = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) {
      rgb[i * 3] = px[i * 4];
      rgb[i * 3 + 1] = px[i * 4 + 1];
      rgb[i * 3 + 2] = px[i * 4 + 2];
    }
    return { bytes: encodePng(rgb, width, height, 3), contentType: 'image/png' };
  }
  return null;
}
