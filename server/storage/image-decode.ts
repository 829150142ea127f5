/**
 * PNG or JPEG bytes as 8-bit RGBA pixels (a JPEG's alpha is 255), for readers that have already told the kind apart
 * (sniffImage, or checkImageBudget, which also bounds the declared size before any pixel buffer is allocated).
 * Example: const { width, height, rgba } = decodeRgba(bytes, checkImageBudget(bytes).kind as 'png');
 */
import jpeg from 'jpeg-js';
import { decodePng } from './png.js';

export function decodeRgba(
  bytes: Uint8Array,
  kind: 'png' | 'jpeg',
): { width: number; height: number; rgba: Uint8Array } {
  if (kind === 'png') return decodePng(bytes);
  const j = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 2048 });
  return { width: j.width, height: j.height, rgba: j.data };
}
