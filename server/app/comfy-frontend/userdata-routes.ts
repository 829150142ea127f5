/**
 * /userdata as ComfyUI serves it (its frontend saves workflows, user.css and template lists here):
 *   GET  /userdata?dir=D&recurse=true&split=false&full_info=true   list (404 when D is not a folder)
 *   GET  /userdata/{path}        the file (path URL-encoded, `/` as %2F)
 *   POST /userdata/{path}?overwrite=true|false&full_info=true|false   body = the file; 409 when it exists and
 *        overwrite is false; answers the path relative to the user folder, or {path, size, modified}
 *   DELETE /userdata/{path}      204
 *   POST /userdata/{src}/move/{dest}?overwrite=...
 * Bodies are taken raw (any content type) up to the upload size limit.
 */
import express, { Router, type Request, type Response } from 'express';
import { httpError } from '../../../protocol/errors.js';
import { PathError } from '../../storage/safe-path.js';
import { UserData, UserDataExists, type UserFileInfo } from '../../storage/userdata.js';

/** The one user of a single-user server (ComfyUI's name for it). */
export const DEFAULT_USER = 'default';

const flag = (v: unknown, dflt: boolean) => (typeof v === 'string' ? v.toLowerCase() !== 'false' && v !== '0' : dflt);
const strictFlag = (v: unknown) => typeof v === 'string' && v.toLowerCase() === 'true';

function fail(res: Response, e: unknown): void {
  if (e instanceof UserDataExists) res.status(409).json(httpError('conflict', e.message));
  else if (e instanceof PathError)
    res.status(e.status).json(httpError(e.status === 403 ? 'forbidden' : 'bad_request', e.message));
  else throw e;
}

/** Routes for /userdata. The request body is read here, raw, so the JSON parser must skip these paths. */
export function userdataRoutes(store: UserData, maxBytes: number): Router {
  const r = Router();
  const raw = express.raw({ type: () => true, limit: maxBytes });
  const answer = (res: Response, info: UserFileInfo, full: boolean) => {
    res.json(full ? info : info.path);
  };

  r.get('/userdata', (req: Request, res: Response) => {
    const dir = req.query.dir;
    if (typeof dir !== 'string' || !dir) {
      res.status(400).json(httpError('bad_request', 'dir is required'));
      return;
    }
    try {
      const files = store.list(DEFAULT_USER, dir, strictFlag(req.query.recurse));
      if (!files) {
        res.status(404).json(httpError('not_found', `no folder ${dir}`));
        return;
      }
      if (strictFlag(req.query.full_info)) {
        res.json(files.map((f) => ({ ...store.info(DEFAULT_USER, f.abs), path: f.rel })));
      } else if (strictFlag(req.query.split)) {
        res.json(files.map((f) => [f.rel, ...f.rel.split('/')]));
      } else res.json(files.map((f) => f.rel));
    } catch (e) {
      fail(res, e);
    }
  });

  r.post('/userdata/:file/move/:dest', (req: Request, res: Response) => {
    try {
      const info = store.move(
        DEFAULT_USER,
        String(req.params.file),
        String(req.params.dest),
        flag(req.query.overwrite, true),
      );
      if (!info) {
        res.status(404).json(httpError('not_found', `no file ${req.params.file}`));
        return;
      }
      answer(res, info, strictFlag(req.query.full_info));
    } catch (e) {
      fail(res, e);
    }
  });

  r.get('/userdata/:file', (req: Request, res: Response) => {
    try {
      const bytes = store.read(DEFAULT_USER, String(req.params.file));
      if (!bytes) {
        res.status(404).json(httpError('not_found', `no file ${req.params.file}`));
        return;
      }
      res.type(
        String(req.params.file).toLowerCase().endsWith('.json') ? 'application/json' : 'application/octet-stream',
      );
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.send(bytes);
    } catch (e) {
      fail(res, e);
    }
  });

  r.post('/userdata/:file', raw, (req: Request, res: Response) => {
    const body: Buffer = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    try {
      const info = store.write(DEFAULT_USER, String(req.params.file), body, flag(req.query.overwrite, true));
      answer(res, info, strictFlag(req.query.full_info));
    } catch (e) {
      fail(res, e);
    }
  });

  r.delete('/userdata/:file', (req: Request, res: Response) => {
    try {
      if (!store.delete(DEFAULT_USER, String(req.params.file))) {
        res.status(404).json(httpError('not_found', `no file ${req.params.file}`));
        return;
      }
      res.status(204).end();
    } catch (e) {
      fail(res, e);
    }
  });
  return r;
}

/** Paths whose bodies the userdata routes read raw (mounted at / and /api). */
export function isUserdataPath(url: string): boolean {
  return /^(\/api)?\/userdata\//.test(url);
}
