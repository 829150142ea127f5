/**
 * The model library of ComfyUI's frontend:
 *   GET /experiment/models            -> [{name: folder, folders: [absolute paths]}]
 *   GET /experiment/models/{folder}   -> [{name, pathIndex, modified, size}] (404 for an unknown folder)
 *   GET /experiment/models/preview/{folder}/{pathIndex}/{name}.webp -> a preview image stored beside the model
 *       (<stem>.png/.jpg/.jpeg/.webp or <stem>.preview.*), 404 when there is none, as in ComfyUI
 *   GET /view_metadata/{folder}?filename=NAME -> the safetensors header's __metadata__ ({} when it has none)
 *   GET /internal/folder_paths        -> {folder: [paths]} (ComfyUI's shape: the paths only, no extensions)
 */
import { Router, type Request, type Response } from 'express';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { httpError } from '../../../protocol/errors.js';
import { PathError } from '../../storage/safe-path.js';
import { SafetensorsFile } from '../../engine/io/safetensors.js';
import { MODEL_FOLDERS, type ModelFolders } from '../../storage/model-folders.js';

const PREVIEW_TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
};

function refuse(res: Response, e: unknown): void {
  if (e instanceof PathError)
    res.status(e.status).json(httpError(e.status === 403 ? 'forbidden' : 'bad_request', e.message));
  else res.status(404).json(httpError('not_found', (e as Error).message));
}

export function modelRoutes(models: ModelFolders): Router {
  const r = Router();
  r.get('/experiment/models', (_req, res) => {
    res.json(MODEL_FOLDERS.map((name) => ({ name, folders: models.roots(name) })));
  });
  r.get('/experiment/models/:folder', (req: Request, res: Response) => {
    const folder = String(req.params.folder);
    if (!models.has(folder)) {
      res.status(404).json(httpError('not_found', `unknown model folder '${folder}'`));
      return;
    }
    res.json(models.files(folder));
  });
  r.get('/experiment/models/preview/:folder/:pathIndex/*name', (req: Request, res: Response) => {
    const folder = String(req.params.folder);
    const parts = req.params.name as unknown as string[];
    const asked = Array.isArray(parts) ? parts.join('/') : String(parts);
    if (!models.has(folder)) {
      res.status(404).json(httpError('not_found', `unknown model folder '${folder}'`));
      return;
    }
    const stem = asked.slice(0, asked.length - extname(asked).length);
    const model = models.files(folder).find((f) => f.name.slice(0, f.name.length - extname(f.name).length) === stem);
    if (!model) {
      res.status(404).json(httpError('not_found', `no model ${folder}/${asked}`));
      return;
    }
    try {
      const path = models.resolve(folder, model.name);
      const base = join(dirname(path), stem.split('/').pop()!);
      for (const suffix of ['', '.preview']) {
        for (const [ext, type] of Object.entries(PREVIEW_TYPES)) {
          if (existsSync(base + suffix + ext)) {
            res.type(type).send(readFileSync(base + suffix + ext));
            return;
          }
        }
      }
      res.status(404).json(httpError('not_found', `no preview image beside ${folder}/${model.name}`));
    } catch (e) {
      refuse(res, e);
    }
  });
  r.get('/view_metadata/:folder', (req: Request, res: Response) => {
    const folder = String(req.params.folder);
    const name = req.query.filename;
    if (typeof name !== 'string' || !name) {
      res.status(400).json(httpError('bad_request', 'filename is required'));
      return;
    }
    if (!models.has(folder)) {
      res.status(404).json(httpError('not_found', `unknown model folder '${folder}'`));
      return;
    }
    let path: string;
    try {
      path = models.resolve(folder, name);
    } catch (e) {
      refuse(res, e);
      return;
    }
    if (!/\.(safetensors|sft)$/i.test(name)) {
      res.status(404).json(httpError('not_found', `${name} is not a safetensors file`));
      return;
    }
    let f: SafetensorsFile | null = null;
    try {
      f = SafetensorsFile.open(path);
      res.json(f.metadata);
    } catch (e) {
      res.status(400).json(httpError('bad_request', (e as Error).message));
    } finally {
      f?.close();
    }
  });
  r.get('/internal/folder_paths', (_req, res) => {
    res.json(Object.fromEntries(MODEL_FOLDERS.map((name) => [name, models.roots(name)])));
  });
  return r;
}
