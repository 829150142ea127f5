/**
 * Every HTTP route of ComfyUI's protocol (mounted at / and /api) plus tcd-studio's additions:
 * POST /workflow/convert (UI -> API format), GET /workflows[/name] (the templates in workflows/).
 */
import { Router, type Request, type Response } from 'express';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { totalmem, freemem, platform } from 'node:os';
import { join } from 'node:path';
import { errorItem, httpError, promptError } from '../../protocol/errors.js';
import { objectInfo, objectInfoFor } from '../executor/object-info.js';
import { validatePrompt } from '../executor/validate.js';
import type { Registry } from '../executor/node-definition.js';
import type { PromptQueue } from '../queue/prompt-queue.js';
import { isUiWorkflow, uiToApi, WorkflowConversionError } from '../workflow/convert.js';
import { MODEL_FOLDERS, type ModelFolders } from '../storage/model-folders.js';
import { resolveInside } from '../storage/safe-path.js';
import { viewHandler, uploadImageHandler, type FileDirs } from './files.js';
import { maskComposer } from './mask-upload.js';
import { promptBodyRefusal, promptClientId } from './limits.js';
import { isDiskFull, DISK_FULL_MESSAGE } from '../storage/disk-full.js';
import { writeJsonObject } from './stream-json.js';

export interface RouteDeps<S> {
  registry: Registry<S>;
  services: S;
  queue: PromptQueue;
  models: ModelFolders;
  dirs: FileDirs;
  workflowsDir: string;
  maxUploadBytes: number;
  version: string;
  /** POST /free: unload models / free memory */
  free(opts: { unload_models?: boolean; free_memory?: boolean }): Promise<void> | void;
  devices(): Record<string, unknown>[];
}

const asyncRoute = (fn: (req: Request, res: Response) => Promise<void> | void) => (req: Request, res: Response) => {
  Promise.resolve(fn(req, res)).catch((e) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (isDiskFull(e)) {
      res.status(507).json(promptError(errorItem('insufficient_storage', DISK_FULL_MESSAGE)));
      return;
    }
    res.status(500).json(httpError('internal_error', (e as Error).message));
  });
};

function intParam(v: unknown): number | undefined {
  if (typeof v !== 'string' || !/^-?\d+$/.test(v)) return undefined;
  // SQLite refuses integers beyond 64 bits ("datatype mismatch"): clamp huge values instead of failing with 500
  return Math.max(-Number.MAX_SAFE_INTEGER, Math.min(Number.MAX_SAFE_INTEGER, Number(v)));
}

/** GET /features, also the server's answer to a websocket client's `feature_flags` message. */
export function serverFeatures(maxUploadBytes: number): Record<string, unknown> {
  return {
    supports_preview_metadata: true,
    max_upload_size: maxUploadBytes,
    event_replay: true,
    workflow_conversion: true,
  };
}

export function protocolRoutes<S>(d: RouteDeps<S>): Router {
  const r = Router();

  r.post(
    '/prompt',
    asyncRoute((req, res) => {
      const body = req.body;
      if (!body || typeof body !== 'object' || Array.isArray(body)) {
        res.status(400).json(promptError(errorItem('invalid_prompt', 'The request body must be a JSON object')));
        return;
      }
      if (body.prompt === undefined || body.prompt === null) {
        res.status(400).json(promptError(errorItem('no_prompt', 'No prompt provided', '')));
        return;
      }
      const overLimit = promptBodyRefusal(body);
      if (overLimit) {
        res.status(overLimit.status).json(overLimit.body);
        return;
      }
      let prompt = body.prompt;
      const extraData: Record<string, unknown> =
        body.extra_data && typeof body.extra_data === 'object' && !Array.isArray(body.extra_data)
          ? { ...body.extra_data }
          : {};
      // as ComfyUI: the submit time travels with the prompt (GET /jobs reports it as create_time)
      if (typeof extraData.create_time !== 'number') extraData.create_time = Date.now();
      if (isUiWorkflow(prompt)) {
        try {
          const ui = prompt;
          prompt = uiToApi(ui, d.registry);
          const pnginfo = (extraData.extra_pnginfo as Record<string, unknown> | undefined) ?? {};
          if (!pnginfo.workflow) extraData.extra_pnginfo = { ...pnginfo, workflow: ui };
        } catch (e) {
          res
            .status(400)
            .json(
              promptError(
                errorItem(
                  e instanceof WorkflowConversionError ? e.type : 'invalid_prompt',
                  (e as Error).message,
                  '',
                  e instanceof WorkflowConversionError ? e.extra : {},
                ),
              ),
            );
          return;
        }
      }
      if (
        body.prompt_id !== undefined &&
        (typeof body.prompt_id !== 'string' || !/^[\w-]{1,128}$/.test(body.prompt_id) || d.queue.has(body.prompt_id))
      ) {
        res
          .status(400)
          .json(promptError(errorItem('invalid_prompt', 'prompt_id must be a new id of letters, digits, - and _')));
        return;
      }
      const targets = Array.isArray(body.partial_execution_targets)
        ? body.partial_execution_targets.map(String)
        : undefined;
      const v = validatePrompt(prompt, d.registry, d.services, targets);
      if (!v.ok) {
        res.status(400).json(v.body);
        return;
      }
      const clientId = promptClientId(body);
      const number = typeof body.number === 'number' && Number.isFinite(body.number) ? body.number : undefined;
      const out = d.queue.submit({
        prompt,
        extraData,
        clientId,
        outputs: v.outputs,
        promptId: body.prompt_id,
        number,
        front: !!body.front,
        valid: v,
      });
      res.json({ ...out, node_errors: v.nodeErrors });
    }),
  );

  r.get('/prompt', (_req, res) => {
    res.json({ exec_info: { queue_remaining: d.queue.remaining() } });
  });

  r.post('/workflow/convert', (req, res) => {
    const wf = req.body?.workflow ?? req.body;
    if (!isUiWorkflow(wf)) {
      res
        .status(400)
        .json(
          promptError(
            errorItem('invalid_prompt', 'expected a UI-format workflow (nodes and links) as the body or as {workflow}'),
          ),
        );
      return;
    }
    try {
      res.json({ prompt: uiToApi(wf, d.registry) });
    } catch (e) {
      res
        .status(400)
        .json(
          promptError(
            errorItem(
              e instanceof WorkflowConversionError ? e.type : 'invalid_prompt',
              (e as Error).message,
              '',
              e instanceof WorkflowConversionError ? e.extra : {},
            ),
          ),
        );
    }
  });

  r.get('/queue', (_req, res) => {
    res.json(d.queue.snapshot());
  });
  r.post('/queue', (req, res) => {
    const b = req.body ?? {};
    d.queue.removePending({ all: b.clear === true, ids: Array.isArray(b.delete) ? b.delete.map(String) : [] });
    res.status(200).end();
  });
  r.post('/interrupt', (req, res) => {
    const id = typeof req.body?.prompt_id === 'string' ? req.body.prompt_id : undefined;
    d.queue.interrupt(id);
    res.status(200).end();
  });

  // streamed a page of rows at a time: the whole history as one string can exceed V8's string limit
  r.get(
    '/history',
    asyncRoute(async (req, res) => {
      res.type('application/json');
      await writeJsonObject(res, d.queue.historyPages(intParam(req.query.max_items), intParam(req.query.offset) ?? -1));
    }),
  );
  r.get('/history/:id', (req, res) => {
    const e = d.queue.historyItem(req.params.id);
    res.json(e ? { [req.params.id]: e } : {});
  });
  r.post('/history', (req, res) => {
    const b = req.body ?? {};
    if (b.clear === true) d.queue.clearHistory();
    if (Array.isArray(b.delete)) d.queue.deleteHistory(b.delete.map(String));
    res.status(200).end();
  });

  r.get('/object_info', (_req, res) => {
    res.json(objectInfo(d.registry, d.services));
  });
  r.get('/object_info/:cls', (req, res) => {
    const def = d.registry.get(req.params.cls);
    res.json(def ? { [def.id]: objectInfoFor(def, d.services) } : {});
  });

  r.get('/view', viewHandler(d.dirs));
  r.post('/upload/image', uploadImageHandler(d.dirs, d.maxUploadBytes));
  r.post('/upload/mask', uploadImageHandler(d.dirs, d.maxUploadBytes, maskComposer(d.dirs)));

  r.get('/system_stats', (_req, res) => {
    res.json({
      system: {
        os: platform(),
        ram_total: totalmem(),
        ram_free: freemem(),
        comfyui_version: `tcd-studio ${d.version}`,
        python_version: `node ${process.version}`,
        pytorch_version: 'onnxruntime-node',
        embedded_python: false,
        argv: process.argv.slice(1),
      },
      devices: d.devices(),
    });
  });
  r.get('/features', (_req, res) => {
    res.json(serverFeatures(d.maxUploadBytes));
  });
  r.get('/models', (_req, res) => {
    res.json(MODEL_FOLDERS);
  });
  r.get('/models/:folder', (req, res) => {
    if (!d.models.has(req.params.folder)) {
      res.status(404).json(httpError('not_found', `unknown model folder '${req.params.folder}'`));
      return;
    }
    res.json(d.models.list(req.params.folder));
  });
  r.get('/embeddings', (_req, res) => {
    res.json(d.models.list('embeddings').map((n) => n.replace(/\.[^.]+$/, '')));
  });
  r.post(
    '/free',
    asyncRoute(async (req, res) => {
      await d.free({ unload_models: !!req.body?.unload_models, free_memory: !!req.body?.free_memory });
      res.status(200).end();
    }),
  );

  r.get('/workflows', (_req, res) => {
    const names = existsSync(d.workflowsDir)
      ? readdirSync(d.workflowsDir)
          .filter((n) => n.endsWith('.json'))
          .sort()
      : [];
    res.json(names);
  });
  r.get('/workflows/:name', (req, res) => {
    try {
      const p = resolveInside(
        d.workflowsDir,
        req.params.name.endsWith('.json') ? req.params.name : `${req.params.name}.json`,
      );
      if (!existsSync(p)) {
        res.status(404).json(httpError('not_found', `no workflow ${req.params.name}`));
        return;
      }
      res.type('application/json').send(readFileSync(p));
    } catch (e) {
      res.status(400).json(httpError('bad_request', (e as Error).message));
    }
  });
  return r;
}

export { join };
