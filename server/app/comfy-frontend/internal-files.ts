/**
 * GET /internal/files/{input|output|temp} -> the names of the files directly in that folder, newest first, as
 * ComfyUI answers it; its frontend's assets panel lists the "Imported" tab (uploads, pasted images) from it.
 * Sub-folders are not listed (ComfyUI lists only files); partial writes and dot-files are left out.
 */
import { Router, type Request, type Response } from 'express';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { httpError } from '../../../protocol/errors.js';
import type { FileDirs } from '../files.js';

const TYPES = ['input', 'output', 'temp'] as const;

function newestFirst(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const files: { name: string; mtime: number }[] = [];
  for (const name of readdirSync(dir)) {
    if (name.startsWith('.')) continue;
    try {
      const st = statSync(join(dir, name)); // follows links, as ComfyUI does
      if (st.isFile()) files.push({ name, mtime: st.mtimeMs });
    } catch {
      /* removed while listing, or a dangling link */
    }
  }
  return files.sort((a, b) => b.mtime - a.mtime || a.name.localeCompare(b.name)).map((f) => f.name);
}

export function internalFilesRoutes(dirs: FileDirs): Router {
  const r = Router();
  r.get('/internal/files/:type', (req: Request, res: Response) => {
    const type = String(req.params.type) as (typeof TYPES)[number];
    if (!TYPES.includes(type)) {
      res.status(400).json(httpError('bad_request', `directory type must be one of ${TYPES.join(', ')}`));
      return;
    }
    res.json(newestFirst(dirs[type]));
  });
  return r;
}
