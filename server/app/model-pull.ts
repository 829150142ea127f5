/**
 * `tcd-studio models pull` over HTTP, for the editor's "missing models" dialog:
 *   GET  /model_catalog          -> [{name, folder, filename, description, size, installed}]
 *   POST /models/pull {name}     -> downloads one catalog entry (name or filename) into models/<folder>/ and answers
 *                                   {name, folder, filename, bytes, already_installed}; 404 for an unknown name,
 *                                   502 with the reason when the download fails, 409 while the same one is running.
 * The catalog is the built-in one plus TCD_MODEL_CATALOG (a JSON file, as `models pull --catalog`).
 */
import { Router, type Request, type Response } from 'express';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { findEntry, loadCatalog, type CatalogEntry } from '../models/catalog.js';
import { pullModel } from '../models/pull.js';
import { httpError } from '../../protocol/errors.js';

export function modelPullRoutes(modelsDir: string, catalogFile?: string): Router {
  const r = Router();
  const running = new Set<string>();
  const catalog = (): CatalogEntry[] => loadCatalog(catalogFile || undefined);

  r.get('/model_catalog', (_req: Request, res: Response) => {
    res.json(
      catalog().map((e) => ({
        name: e.name,
        folder: e.folder,
        filename: e.filename,
        description: e.description,
        size: e.size,
        installed: existsSync(join(modelsDir, e.folder, e.filename)),
      })),
    );
  });

  r.post('/models/pull', (req: Request, res: Response) => {
    const name = req.body?.name;
    if (typeof name !== 'string' || !name) {
      res.status(400).json(httpError('bad_request', 'body must be {"name": "<catalog name or filename>"}'));
      return;
    }
    const entry = findEntry(name, catalog());
    if (!entry) {
      res.status(404).json(httpError('not_found', `no catalog entry "${name}"`));
      return;
    }
    if (running.has(entry.name)) {
      res.status(409).json(httpError('conflict', `${entry.name} is already being downloaded`));
      return;
    }
    running.add(entry.name);
    pullModel(entry, modelsDir)
      .then((p) =>
        res.json({
          name: entry.name,
          folder: entry.folder,
          filename: entry.filename,
          bytes: p.bytes,
          already_installed: p.alreadyInstalled,
        }),
      )
      .catch((e) => res.status(502).json(httpError('download_failed', `${entry.name}: ${(e as Error).message}`)))
      .finally(() => running.delete(entry.name));
  });
  return r;
}
