/**
 * What ComfyUI's own web frontend needs beyond the core protocol (mounted at / and /api), with the stores behind it.
 * Example: const f = comfyFrontendRoutes({ dataDir, maxUploadBytes, models, workflowsDir, dirs, jobs, logs, sendTo });
 *          app.use('/api', f.router);
 */
import { Router } from 'express';
import { join } from 'node:path';
import { SettingsStore } from '../../storage/settings-store.js';
import { UserData } from '../../storage/userdata.js';
import type { ModelFolders } from '../../storage/model-folders.js';
import { frontendRoutes } from './frontend-routes.js';
import { userdataRoutes } from './userdata-routes.js';
import { jobsRoutes, type JobSource } from './jobs.js';
import { modelRoutes } from './model-routes.js';
import { templateRoutes } from './templates.js';
import { logRoutes, type SendToClient } from './log-routes.js';
import { internalFilesRoutes } from './internal-files.js';
import type { FileDirs } from '../files.js';
import type { LogBuffer } from '../log-buffer.js';

export interface ComfyFrontendDeps {
  dataDir: string;
  maxUploadBytes: number;
  models: ModelFolders;
  workflowsDir: string;
  /** input/output/temp, listed for the assets panel */
  dirs: FileDirs;
  /** the queue's running/pending items and history */
  jobs: () => JobSource;
  /** the server's recent output (the Logs tab) and how a line reaches a subscribed websocket client */
  logs: LogBuffer;
  sendTo: SendToClient;
}

export function comfyFrontendRoutes(d: ComfyFrontendDeps): { router: Router; close(): void } {
  const settings = new SettingsStore(d.dataDir);
  const router = Router();
  router.use(userdataRoutes(new UserData(join(d.dataDir, 'user')), d.maxUploadBytes));
  router.use(frontendRoutes(settings));
  router.use(jobsRoutes(d.jobs));
  router.use(modelRoutes(d.models));
  router.use(templateRoutes(d.workflowsDir));
  router.use(internalFilesRoutes(d.dirs));
  const logs = logRoutes(d.logs, d.sendTo);
  router.use(logs.router);
  return {
    router,
    close: () => {
      settings.close();
      logs.close();
    },
  };
}
