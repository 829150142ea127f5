/**
 * The model library of ComfyUI's frontend:
 *   GET /experiment/models            -> [{name: folder, folders: [absolute paths]}]
 *   GET /experiment/models/{folder}   -> [{name, pathIndex, modified, size}] (404 for an unknown folder)
 *   GET /internal/folder_paths        -> {folder: [[paths], [extensions]]}
 */
import { Router, type Request, type Response } from 'express';
import { httpError } from '../../../protocol/errors.js';
import { MODEL_EXTENSIONS, MODEL_FOLDERS, type ModelFolders } from '../../storage/model-folders.js';

export function modelRoutes(models: ModelFolders): Router {
  const r = Router();
  r.get('/experiment/models', (_req, res) => {
    res.json(MODEL_FOLDERS.map((name) => ({ name, folders: models.roots(name) })));
  });
  r.get('/experiment/models/:folder', (req: Request, res: Response) => {
    const folder = String(req.params.folder);
    if (!models.has(folder)) { res.status(404).json(httpError('not_found', `unknown model folder '${folder}'`)); return; }
    res.json(models.files(folder));
  });
  r.get('/internal/folder_paths', (_req, res) => {
    res.json(Object.fromEntries(MODEL_FOLDERS.map((name) => [name, [models.roots(name), MODEL_EXTENSIONS]])));
  });
  return r;
}
