/**
 * POST /upload/mask, as ComfyUI's mask editor uses it: the form of /upload/image plus `original_ref`
 * (`{filename, subfolder, type}` of an image already on the server). What is stored is that original image with its
 * alpha channel replaced by the uploaded image's alpha, as a PNG that keeps the original's text chunks (prompt,
 * workflow). Example form: image=<mask.png>, original_ref={"filename":"cat.png","type":"input"}, subfolder=clipspace.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { encodePng, readPngText } from '../storage/png.js';
import { checkImageBudget, ImageTooLargeError } from '../storage/image-sniff.js';
import { resolveInside } from '../storage/safe-path.js';
import { splitAnnotated } from '../storage/annotated-path.js';
import { dirFor, UploadRefusal, type FileDirs, type UploadCompose } from './files.js';
import { decodeRgba } from '../storage/image-decode.js';

interface Rgba {
  width: number;
  height: number;
  rgba: Uint8Array;
}

function decodeForMask(bytes: Uint8Array, what: string): Rgba {
  let kind: string;
  try {
    kind = checkImageBudget(bytes).kind; // the declared size, before a pixel buffer is allocated
  } catch (e) {
    throw new UploadRefusal(
      e instanceof ImageTooLargeError ? 413 : 400,
      'bad_request',
      `${what}: ${(e as Error).message}`,
    );
  }
  if (kind !== 'png' && kind !== 'jpeg')
    throw new UploadRefusal(400, 'bad_request', `${what} is a ${kind} image; only PNG and JPEG can be masked`);
  try {
    return decodeRgba(bytes, kind);
  } catch (e) {
    throw new UploadRefusal(400, 'bad_request', `${what} cannot be decoded: ${(e as Error).message}`);
  }
}

function parseRef(raw: string | undefined): { filename: string; subfolder: string; type: unknown } {
  let ref: unknown;
  try {
    ref = JSON.parse(raw ?? '');
  } catch {
    throw new UploadRefusal(400, 'bad_request', 'original_ref must be JSON {filename, subfolder, type}');
  }
  const r = ref as Record<string, unknown> | null;
  if (!r || typeof r !== 'object' || typeof r.filename !== 'string' || !r.filename)
    throw new UploadRefusal(400, 'bad_request', 'original_ref has no filename');
  const { name, type } = splitAnnotated(r.filename);
  // ComfyUI's default folder for the original is output (the mask editor always names one)
  return { filename: name, subfolder: typeof r.subfolder === 'string' ? r.subfolder : '', type: type ?? r.type };
}

export function maskComposer(dirs: FileDirs): UploadCompose {
  return (upload, fields) => {
    const ref = parseRef(fields.original_ref);
    const base = dirFor(dirs, ref.type ?? 'output');
    if (!base) throw new UploadRefusal(400, 'bad_request', `original_ref: unknown type ${JSON.stringify(ref.type)}`);
    const path = resolveInside(base, ref.subfolder, ref.filename);
    if (!existsSync(path) || !statSync(path).isFile())
      throw new UploadRefusal(404, 'not_found', `original_ref: no such file: ${ref.filename}`);
    const originalBytes = readFileSync(path);
    const original = decodeForMask(originalBytes, `original image ${ref.filename}`);
    const mask = decodeForMask(upload, 'mask');
    if (mask.width !== original.width || mask.height !== original.height)
      throw new UploadRefusal(
        400,
        'bad_request',
        `mask is ${mask.width}x${mask.height} but ${ref.filename} is ${original.width}x${original.height}`,
      );
    const out = new Uint8Array(original.rgba);
    for (let i = 3; i < out.length; i += 4) out[i] = mask.rgba[i];
    return encodePng(out, original.width, original.height, 4, readPngText(originalBytes), 4);
  };
}
