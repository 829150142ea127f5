/** GET /view and POST /upload/image: files in output/, input/ and temp/, with traversal refused. */
import { existsSync, readFileSync, statSync, mkdirSync } from 'node:fs';
import { extname, join, dirname } from 'node:path';
import type { Request, Response } from 'express';
import busboy from 'busboy';
import { httpError } from '../../protocol/errors.js';
import { PathError, resolveInside, checkNewFileName } from '../storage/safe-path.js';
import { writeFileAtomic, TEMP_PREFIX } from '../storage/atomic-write.js';
import { sniffImage, readImageHeader, maxImagePixels, ImageTooLargeError } from '../storage/image-sniff.js';
import { pngVariant, wantsVariant, type ImageVariant } from '../storage/image-variants.js';
import { VariantCache } from '../storage/variant-cache.js';
import { isDiskFull, DISK_FULL_MESSAGE } from '../storage/disk-full.js';
import { splitAnnotated } from '../storage/annotated-path.js';

export interface FileDirs {
  output: string;
  input: string;
  temp: string;
}

const MIME: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.json': 'application/json',
  '.txt': 'text/plain',
};

export function dirFor(dirs: FileDirs, type: unknown): string | null {
  const t = typeof type === 'string' && type ? type : 'output';
  return t === 'output' ? dirs.output : t === 'input' ? dirs.input : t === 'temp' ? dirs.temp : null;
}

function sendPathError(res: Response, e: unknown): void {
  if (isDiskFull(e)) res.status(507).json(httpError('insufficient_storage', DISK_FULL_MESSAGE));
  else if (e instanceof PathError)
    res.status(e.status).json(httpError(e.status === 403 ? 'forbidden' : 'bad_request', e.message));
  else res.status(400).json(httpError('bad_request', (e as Error).message));
}

export function viewHandler(dirs: FileDirs, variants = new VariantCache<ImageVariant>()) {
  return (req: Request, res: Response): void => {
    const { subfolder } = req.query;
    if (typeof req.query.filename !== 'string' || !req.query.filename) {
      res.status(400).json(httpError('bad_request', 'filename is required'));
      return;
    }
    // `name.png [output]` picks its folder itself, like ComfyUI
    const { name: filename, type: annotated } = splitAnnotated(req.query.filename);
    const type = annotated ?? req.query.type;
    const base = dirFor(dirs, type);
    if (!base) {
      res.status(400).json(httpError('bad_request', `unknown type ${JSON.stringify(type)} (output, input or temp)`));
      return;
    }
    let path: string;
    try {
      path = resolveInside(base, typeof subfolder === 'string' ? subfolder : '', filename);
    } catch (e) {
      sendPathError(res, e);
      return;
    }
    if (!existsSync(path) || !statSync(path).isFile()) {
      res.status(404).json(httpError('not_found', `no such file: ${filename}`));
      return;
    }
    let bytes: Buffer = readFileSync(path);
    let contentType = MIME[extname(path).toLowerCase()] ?? 'application/octet-stream';
    if (sniffImage(bytes) === 'png' && wantsVariant(req.query.channel, req.query.preview)) {
      const st = statSync(path);
      const key = VariantCache.key(path, st.size, st.mtimeMs, [req.query.channel, req.query.preview]);
      try {
        const v = variants.get(key) ?? pngVariant(bytes, req.query.channel, req.query.preview);
        if (v) {
          variants.set(key, v);
          bytes = v.bytes;
          contentType = v.contentType;
        }
      } catch (e) {
        // a declared size over the pixel budget is refused from the header alone, before any decoding
        const status = e instanceof ImageTooLargeError ? 413 : 400;
        res
          .status(status)
          .json(
            httpError(
              status === 413 ? 'image_too_large' : 'bad_request',
              `cannot make a preview of ${filename}: ${(e as Error).message}`,
            ),
          );
        return;
      }
    }
    res.setHeader('Content-Type', contentType);
    // uploads are only sniffed for an image header: never let a browser reinterpret one as HTML or script
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Content-Security-Policy', "default-src 'none'; sandbox");
    res.setHeader('Content-Disposition', contentDisposition(filename));
    res.send(bytes);
  };
}

/** A refused upload: the status and message of the 4xx answer. */
export class UploadRefusal extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/** Turns the uploaded image into the bytes to store (POST /upload/mask); throws UploadRefusal to refuse. */
export type UploadCompose = (upload: Buffer, fields: Record<string, string>) => Buffer;

export function uploadImageHandler(dirs: FileDirs, maxBytes: number, compose?: UploadCompose) {
  return (req: Request, res: Response): void => {
    let bb: busboy.Busboy;
    try {
      // defParamCharset: browsers send the file name as raw UTF-8 in Content-Disposition, busboy assumes Latin-1
      bb = busboy({
        headers: req.headers,
        defParamCharset: 'utf8',
        limits: { fileSize: maxBytes, files: 1, fields: 10, fieldSize: 4096 },
      });
    } catch (e) {
      res.status(400).json(httpError('bad_request', `expected multipart/form-data: ${(e as Error).message}`));
      return;
    }
    const fields: Record<string, string> = {};
    let file: { name: string; chunks: Buffer[]; truncated: boolean } | null = null;
    let refusal: UploadRefusal | null = null;
    bb.on('field', (k, v) => {
      fields[k] = v;
    });
    bb.on('file', (field, stream, info) => {
      if (field !== 'image') {
        stream.resume();
        return;
      }
      const f = { name: info.filename ?? 'upload.png', chunks: [] as Buffer[], truncated: false };
      // the name is checked before a byte is kept, so a refused upload never reaches the disk
      try {
        checkNewFileName(f.name, TEMP_PREFIX);
      } catch (e) {
        refusal = new UploadRefusal(400, 'bad_request', (e as Error).message);
        stream.resume();
        return;
      }
      file = f;
      stream.on('data', (c: Buffer) => f.chunks.push(c));
      stream.on('limit', () => {
        f.truncated = true;
      });
    });
    bb.on('error', (e) => {
      if (!res.headersSent) res.status(400).json(httpError('bad_request', (e as Error).message));
    });
    bb.on('close', () => {
      if (res.headersSent) return;
      try {
        if (refusal) throw refusal;
        const saved = saveUpload(dirs, file, fields, maxBytes, compose);
        res.json(saved);
      } catch (e) {
        if (e instanceof UploadRefusal) res.status(e.status).json(httpError(e.type, e.message));
        else sendPathError(res, e);
      }
    });
    req.pipe(bb);
  };
}

function saveUpload(
  dirs: FileDirs,
  f: { name: string; chunks: Buffer[]; truncated: boolean } | null,
  fields: Record<string, string>,
  maxBytes: number,
  compose?: UploadCompose,
) {
  if (!f) throw new UploadRefusal(400, 'bad_request', 'no "image" file in the form');
  if (f.truncated) throw new UploadRefusal(413, 'too_large', `upload exceeds ${maxBytes} bytes`);
  const bytes = Buffer.concat(f.chunks);
  const head = readImageHeader(bytes);
  if (!head) throw new UploadRefusal(400, 'not_an_image', `${f.name} is not a PNG, JPEG, WEBP, GIF or BMP image`);
  const budget = maxImagePixels();
  if (head.width * head.height > budget)
    throw new UploadRefusal(
      413,
      'image_too_large',
      `${f.name}: ${new ImageTooLargeError(head.width, head.height, budget).message}`,
    );
  const base = dirFor(dirs, fields.type || 'input');
  if (!base) throw new UploadRefusal(400, 'bad_request', `unknown type ${fields.type}`);
  const stored = compose ? compose(bytes, fields) : bytes;
  const subfolder = fields.subfolder ?? '';
  let name = f.name;
  let path = resolveInside(base, subfolder, name);
  const overwrite = fields.overwrite === 'true' || fields.overwrite === '1';
  if (existsSync(path) && statSync(path).isDirectory())
    throw new UploadRefusal(400, 'bad_request', `${name} is a folder`);
  if (!overwrite) {
    const ext = extname(f.name),
      stem = f.name.slice(0, f.name.length - ext.length);
    for (let i = 1; existsSync(path); i++) {
      if (statSync(path).isFile() && readFileSync(path).equals(stored)) break; // identical bytes: reuse the existing file
      name = `${stem} (${i})${ext}`;
      path = resolveInside(base, subfolder, name);
    }
  }
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, stored);
  return { name, subfolder, type: fields.type || 'input' };
}

/**
 * Content-Disposition for any file name (RFC 6266 + RFC 5987): an ASCII fallback in `filename`, the exact UTF-8 name
 * in `filename*`. Header values outside Latin-1 make node throw, which used to turn /view into a 500.
 */
export function contentDisposition(name: string): string {
  const fallback = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  const exact = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `filename="${fallback}"; filename*=UTF-8''${exact}`;
}

export { join };
