/**
 * Small routes ComfyUI's own web frontend asks for at start-up, in ComfyUI's shapes: no extension scripts, no
 * custom-node translations or global subgraphs, one server-side user, and that user's settings (persisted).
 */
import { Router, type Request, type Response } from 'express';
import { httpError } from '../../../protocol/errors.js';
import type { SettingsStore } from '../../storage/settings-store.js';
import { DEFAULT_USER } from './userdata-routes.js';

const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

export function frontendRoutes(settings: SettingsStore): Router {
  const r = Router();
  // the frontend calls .filter on this: it must be an array, never an error object
  r.get('/extensions', (_req, res) => {
    res.json([]);
  });
  r.get('/i18n', (_req, res) => {
    res.json({});
  });
  r.get('/global_subgraphs', (_req, res) => {
    res.json({});
  });
  // single-user mode: settings and user data live on the server, nothing to migrate from browser storage
  r.get('/users', (_req, res) => {
    res.json({ storage: 'server', migrated: true });
  });

  r.get('/settings', (_req, res) => {
    res.json(settings.all(DEFAULT_USER));
  });
  r.get('/settings/:id', (req: Request, res: Response) => {
    const v = settings.get(DEFAULT_USER, String(req.params.id));
    res.json(v === undefined ? null : v);
  });
  r.post('/settings', (req: Request, res: Response) => {
    if (!isObject(req.body)) {
      res.status(400).json(httpError('bad_request', 'expected a JSON object {id: value}'));
      return;
    }
    settings.set(DEFAULT_USER, req.body);
    res.status(200).end();
  });
  r.post('/settings/:id', (req: Request, res: Response) => {
    // the body is the value itself, any JSON; an empty body stores null
    settings.set(DEFAULT_USER, { [String(req.params.id)]: req.body ?? null });
    res.status(200).end();
  });
  return r;
}
