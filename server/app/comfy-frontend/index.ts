/**
 * What ComfyUI's own web frontend needs beyond the core protocol (mounted at / and /api), with the stores behind it.
 * Example: const f = comfyFrontendRoutes({ dataDir, maxUploadBytes }); app.use('/api', f.router); ... f.close();
 */
import { Router } from 'express';
import { join } from 'node:path';
import { SettingsStore } from '../../storage/settings-store.js';
import { UserData } from '../../storage/userdata.js';
import { frontendRoutes } from './frontend-routes.js';
import { userdataRoutes } from './userdata-routes.js';

export interface ComfyFrontendDeps { dataDir: string; maxUploadBytes: number }

export function comfyFrontendRoutes(d: ComfyFrontendDeps): { router: Router; close(): void } {
  const settings = new SettingsStore(d.dataDir);
  const router = Router();
  router.use(userdataRoutes(new UserData(join(d.dataDir, 'user')), d.maxUploadBytes));
  router.use(frontendRoutes(settings));
  return { router, close: () => settings.close() };
}
