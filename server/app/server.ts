/**
 * Assembles the HTTP + websocket server: express routes at / and /api, the websocket hub at /ws (and /api/ws),
 * the persistent queue and the executor. `startServer` returns once the port is listening.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { httpError, promptError, errorItem } from '../../protocol/errors.js';
import { Executor } from '../executor/execute.js';
import type { Registry } from '../executor/node-definition.js';
import { QueueStore } from '../queue/store.js';
import { PromptQueue, type QueueBackend, type QueueContext } from '../queue/prompt-queue.js';
import { LocalRunner } from '../queue/local-runner.js';
import { ModelFolders } from '../storage/model-folders.js';
import { removeStalePartials } from '../storage/atomic-write.js';
import { isDiskFull, DISK_FULL_MESSAGE } from '../storage/disk-full.js';
import { WsHub } from './ws-hub.js';
import { LogBuffer } from './log-buffer.js';
import type { PreviewImage } from '../../protocol/preview.js';
import { protocolRoutes, serverFeatures } from './routes.js';
import { ProgressStates } from './progress-state.js';
import { comfyFrontendRoutes } from './comfy-frontend/index.js';
import { modelPullRoutes } from './model-pull.js';
import { crossSiteBodyGuard, jsonBody } from './json-body.js';
import {
  securityMiddleware,
  originRefusal,
  hostRefusal,
  isLoopbackAddress,
  tokenFrom,
  tokenMatches,
  requestUrl,
} from './security.js';

export interface ServerConfig<S> {
  /** model catalog file for POST /models/pull (default: the built-in catalog) */
  modelCatalog?: string;
  host: string;
  port: number;
  dataDir: string;
  modelsDir: string;
  outputDir: string;
  inputDir: string;
  tempDir: string;
  workflowsDir: string;
  /** built editor (dist/client); served at / when present */
  clientDir?: string;
  /** more model folders per kind (extra_model_paths.yaml, ComfyUI's format) */
  extraModelPaths?: Record<string, string[]>;
  /** a built ComfyUI frontend folder (serve --front-end-root), served at / instead of the editor */
  frontEndRoot?: string;
  token?: string;
  corsOrigin?: string;
  maxBodyBytes?: number;
  maxUploadBytes?: number;
  /** websocket back-pressure: bytes queued for one socket above which previews are dropped / the socket is closed */
  wsSoftLimit?: number;
  wsHardLimit?: number;
  /** a websocket silent this long gets a `status` keepalive (default 5000 ms) */
  wsKeepaliveMs?: number;
  version?: string;
  registry: Registry<S>;
  makeServices(ctx: { models: ModelFolders; dirs: { output: string; input: string; temp: string } }): S;
  free?(services: S, opts: { unload_models?: boolean; free_memory?: boolean }): Promise<void> | void;
  devices?(): Record<string, unknown>[];
  log?(message: string): void;
  /**
   * Recent output for ComfyUI's Logs tab. The serve command passes one that copies the whole process output; without
   * it the server keeps the messages it logs itself.
   */
  logBuffer?: LogBuffer;
  /** start executing queued prompts (default true) */
  execute?: boolean;
  /**
   * Who runs the queued prompts instead of this process's executor (server/farm: Redis/BullMQ worker processes, or
   * one executor per device). The queue, its history and events stay the same.
   */
  queueBackend?(ctx: QueueContext & { executor: Executor<S> }): QueueBackend;
}

export interface RunningServer<S> {
  url: string;
  port: number;
  http: Server;
  queue: PromptQueue;
  hub: WsHub;
  store: QueueStore;
  services: S;
  close(): Promise<void>;
}

export async function startServer<S>(cfg: ServerConfig<S>): Promise<RunningServer<S>> {
  const baseLog = cfg.log ?? ((m: string) => console.log(m));
  const logs = cfg.logBuffer ?? new LogBuffer();
  const log = cfg.logBuffer ? baseLog : (m: string) => (logs.line(m), baseLog(m));
  for (const d of [cfg.dataDir, cfg.outputDir, cfg.inputDir, cfg.tempDir, cfg.modelsDir])
    mkdirSync(d, { recursive: true });
  for (const d of [cfg.outputDir, cfg.inputDir, cfg.tempDir]) removeStalePartials(d);
  const models = new ModelFolders(cfg.modelsDir, cfg.extraModelPaths);
  const dirs = { output: cfg.outputDir, input: cfg.inputDir, temp: cfg.tempDir };
  const services = cfg.makeServices({ models, dirs });
  const store = new QueueStore(cfg.dataDir);
  const executor = new Executor(cfg.registry, services);
  let currentNode: string | null = null;
  // the hub needs the queue for status, the queue needs the hub as its sink
  let queue: PromptQueue | null = null;
  const hub = new WsHub(store, {
    softLimit: cfg.wsSoftLimit,
    hardLimit: cfg.wsHardLimit,
    keepaliveMs: cfg.wsKeepaliveMs,
    featureFlags: serverFeatures(cfg.maxUploadBytes ?? 100 * 1024 * 1024),
    queueRemaining: () => queue?.remaining() ?? 0,
    currentExecution: () => {
      const id = queue?.runningPromptId();
      if (!id || !queue) return null;
      const item = queue.running().find((i) => i.promptId === id);
      return { clientId: item?.clientId ?? null, promptId: id, node: currentNode };
    },
  });
  const progressStates = new ProgressStates();
  // ComfyUI's frontend sends its preview setting per prompt (extra_data.preview_method): 'none' means no frames for
  // that prompt. Other methods stay the server's --preview-method, since the nodes decide how previews are drawn.
  const noPreviews = new Map<string, boolean>();
  const previewsOff = (promptId: string): boolean => {
    let off = noPreviews.get(promptId);
    if (off === undefined) {
      const item = queue?.running().find((i) => i.promptId === promptId);
      if (!item) return false;
      off = item.extraData.preview_method === 'none';
      if (noPreviews.size >= 16) noPreviews.clear();
      noPreviews.set(promptId, off);
    }
    return off;
  };
  const sink = {
    send: (ev: Parameters<WsHub['send']>[0], clientId: string | null, promptId: string | null) => {
      if (ev.type === 'executing') currentNode = ev.data.node;
      const state = progressStates.next(ev);
      // the final state (every node finished) goes before execution_success, as ComfyUI finishes each node first
      if (state && ev.type === 'execution_success') hub.send(state, clientId, promptId);
      hub.send(ev, clientId, promptId);
      if (state && ev.type !== 'execution_success') hub.send(state, clientId, promptId);
    },
    preview: (img: PreviewImage, meta: { node_id: string; prompt_id: string }, clientId: string | null) => {
      if (!previewsOff(meta.prompt_id)) hub.preview(img, meta, clientId);
    },
  };
  queue = new PromptQueue(store, sink, log, (ctx) =>
    cfg.queueBackend ? cfg.queueBackend({ ...ctx, executor }) : new LocalRunner(ctx, executor),
  );
  const lost = queue.recover();
  if (lost.length) log(`recovered after an unclean stop: ${lost.length} interrupted prompt(s) reported as failed`);

  const app = express();
  app.disable('x-powered-by');
  const loopbackBound = isLoopbackAddress(cfg.host.replace(/^\[|\]$/g, ''));
  app.use(securityMiddleware({ token: cfg.token, corsOrigin: cfg.corsOrigin, loopbackBound }));
  app.use(crossSiteBodyGuard(cfg.corsOrigin));
  app.use(jsonBody(cfg.maxBodyBytes ?? 10 * 1024 * 1024));
  const frontend = comfyFrontendRoutes({
    dataDir: cfg.dataDir,
    maxUploadBytes: cfg.maxUploadBytes ?? 100 * 1024 * 1024,
    models,
    workflowsDir: cfg.workflowsDir,
    dirs,
    jobs: () => queue!,
    logs,
    sendTo: (clientId, msg) => hub.sendTo(clientId, msg),
  });
  app.use('/api', frontend.router);
  app.use('/', frontend.router);
  const pull = modelPullRoutes(models.root, cfg.modelCatalog);
  app.use('/api', pull);
  app.use('/', pull);
  const routes = protocolRoutes({
    registry: cfg.registry,
    services,
    queue,
    models,
    dirs,
    workflowsDir: cfg.workflowsDir,
    maxUploadBytes: cfg.maxUploadBytes ?? 100 * 1024 * 1024,
    version: cfg.version ?? '0.0.0',
    // like ComfyUI, freeing memory also drops the cached node outputs (a loaded image or latent can be gigabytes)
    free: (o) => {
      if (o.free_memory || o.unload_models) executor.cache.clear();
      return cfg.free?.(services, o);
    },
    devices: () =>
      cfg.devices?.() ?? [
        { name: 'cpu', type: 'cpu', index: 0, vram_total: 0, vram_free: 0, torch_vram_total: 0, torch_vram_free: 0 },
      ],
  });
  app.use('/api', routes);
  app.use('/', routes);
  const uiDir = cfg.frontEndRoot ?? cfg.clientDir;
  if (uiDir && existsSync(join(uiDir, 'index.html'))) app.use(express.static(uiDir));
  else if (cfg.frontEndRoot) log(`warning: --front-end-root ${cfg.frontEndRoot} has no index.html`);
  // ComfyUI's plain-text 404: its frontend reads many answers with res.json() unchecked, so a JSON error object
  // for an unknown route would be taken as data
  app.use((_req: Request, res: Response) => {
    res.status(404).type('text/plain').send('404: Not Found');
  });
  // body-parser errors: malformed JSON (400), too large (413), too deep, ...
  app.use((err: Error & { status?: number; type?: string }, _req: Request, res: Response, _next: NextFunction) => {
    const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status === 413) {
      res
        .status(413)
        .json(promptError(errorItem('request_too_large', `request body exceeds the limit (${err.message})`)));
      return;
    }
    if (err.type === 'entity.parse.failed') {
      res.status(400).json(promptError(errorItem('invalid_json', `malformed JSON body: ${err.message}`)));
      return;
    }
    if (status < 500) {
      res.status(status).json(httpError('bad_request', err.message));
      return;
    }
    if (isDiskFull(err)) {
      res.status(507).json(httpError('insufficient_storage', DISK_FULL_MESSAGE));
      return;
    }
    res.status(status).json(httpError('internal_error', err.message));
  });

  const http = createServer(app);
  // Node's 5 s keep-alive lets the server close an idle connection just as a client reuses it (ECONNRESET on a
  // POST, not retried), which a busy event loop makes likely; clients time out long before 65 s, so they close first
  http.keepAliveTimeout = 65_000;
  http.headersTimeout = 66_000;
  http.on('upgrade', (req, socket: Duplex, head) => {
    // after 'upgrade' node no longer listens for socket errors: a reset before ws takes over must not be uncaught
    socket.on('error', () => socket.destroy());
    const refuse = (code: number, msg: string) => {
      socket.end(`HTTP/1.1 ${code} ${msg}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    try {
      const url = requestUrl(req);
      if (!url) return refuse(400, 'Bad Request');
      if (url.pathname !== '/ws' && url.pathname !== '/api/ws') return refuse(404, 'Not Found');
      if (hostRefusal(req, loopbackBound) || originRefusal(req, cfg.corsOrigin)) return refuse(403, 'Forbidden');
      if (cfg.token && !tokenMatches(cfg.token, tokenFrom(req))) return refuse(401, 'Unauthorized');
      hub.wss.handleUpgrade(req, socket, head, (ws) => hub.accept(ws, req));
    } catch (e) {
      // whatever a client sends, an upgrade never takes the process down
      log(`websocket upgrade refused: ${(e as Error).message}`);
      refuse(400, 'Bad Request');
    }
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(cfg.port, cfg.host, () => resolve());
  });
  const addr = http.address();
  const port = typeof addr === 'object' && addr ? addr.port : cfg.port;
  if (!loopbackBound && !cfg.token)
    log(
      `warning: listening on ${cfg.host} without an access token: anyone who can reach this port can queue prompts and read every image; set a token (--token or TCD_TOKEN)`,
    );
  if (cfg.execute !== false) queue.start();
  const url = `http://${cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host}:${port}`;
  return {
    url,
    port,
    http,
    queue,
    hub,
    store,
    services,
    close: async () => {
      await queue!.stop();
      hub.close();
      await new Promise<void>((r) => http.close(() => r()));
      http.closeAllConnections?.();
      store.close();
      frontend.close();
    },
  };
}
