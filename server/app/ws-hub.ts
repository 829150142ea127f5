/**
 * The /ws endpoint: one socket set per clientId, events routed to the prompt's client, `status` to everyone.
 * Beyond ComfyUI: every logged text frame carries `seq`; reconnecting with `?clientId=ID&since=SEQ` replays what
 * the client missed. Slow clients cannot grow memory without bound: previews are dropped above a soft limit and
 * the socket is closed above a hard limit (the client reconnects and replays).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { WebSocketServer, WebSocket } from 'ws';
import { event, parseClientMessage, type ServerEvent } from '../../protocol/events.js';
import { encodePreviewFrame, encodePreviewFrameWithMetadata, type PreviewImage } from '../../protocol/preview.js';
import type { EventSink } from '../queue/prompt-queue.js';
import type { QueueStore } from '../queue/store.js';
import { isDiskFull } from '../storage/disk-full.js';
import { REQUEST_LIMITS } from './limits.js';

/** a socket silent this long gets a `status` message */
const KEEPALIVE_MS = 5000;

interface Client {
  id: string;
  sockets: Set<WebSocket>;
  previewMetadata: boolean;
}

export interface WsHubOptions {
  /** bytes buffered for one socket above which previews are skipped */
  softLimit?: number;
  /** bytes buffered above which the socket is closed */
  hardLimit?: number;
  queueRemaining: () => number;
  /** a socket silent this long (ms) gets a `status` message; default 5000 */
  keepaliveMs?: number;
  /** the server's answer to a client's `feature_flags` message (as GET /features) */
  featureFlags?: Record<string, unknown>;
  /** the node currently executing for a prompt owned by this client, sent on reconnect like ComfyUI */
  currentExecution: () => { clientId: string | null; promptId: string; node: string | null } | null;
}

export class WsHub implements EventSink {
  readonly wss: WebSocketServer;
  private clients = new Map<string, Client>();
  private readonly softLimit: number;
  private readonly hardLimit: number;
  dropped = 0;

  constructor(
    private readonly store: QueueStore,
    private readonly opts: WsHubOptions,
  ) {
    this.wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });
    this.softLimit = opts.softLimit ?? 4 << 20;
    this.hardLimit = opts.hardLimit ?? 64 << 20;
    // Keepalive: ComfyUI client libraries (e.g. @saintno/comfyui-sdk, 10 s) take a silent socket for a dead one and
    // fail the running prompt, while a model load can keep the server quiet longer. A socket that got nothing for
    // KEEPALIVE_MS gets the current `status` (a message every ComfyUI client knows).
    this.keepaliveMs = opts.keepaliveMs ?? KEEPALIVE_MS;
    this.keepalive = setInterval(() => this.sendKeepalives(), this.keepaliveMs / 2);
    this.keepalive.unref();
  }

  private readonly lastSent = new WeakMap<WebSocket, number>();
  private readonly keepalive: ReturnType<typeof setInterval>;
  private readonly keepaliveMs: number;

  private sendKeepalives(): void {
    const now = Date.now();
    let frame: string | null = null;
    for (const c of this.clients.values()) {
      for (const ws of c.sockets) {
        if (now - (this.lastSent.get(ws) ?? 0) < this.keepaliveMs) continue;
        frame ??= JSON.stringify(
          event('status', { status: { exec_info: { queue_remaining: this.opts.queueRemaining() } } }),
        );
        this.writeRaw(ws, frame);
      }
    }
  }

  /** Called after the HTTP upgrade passed authentication. */
  accept(ws: WebSocket, req: IncomingMessage): void {
    const url = new URL(req.url ?? '/ws', 'http://x');
    const requested = url.searchParams.get('clientId');
    // any id a client picks (ComfyUI takes any string) within the bound on its prompts' client_id, which it must equal
    const id =
      requested && requested.length <= REQUEST_LIMITS.clientIdChars && !/[\x00-\x1f\x7f]/.test(requested)
        ? requested
        : randomUUID().replace(/-/g, '');
    const client = this.clients.get(id) ?? { id, sockets: new Set(), previewMetadata: false };
    this.clients.set(id, client);
    client.sockets.add(ws);
    let first = true;
    ws.on('message', (raw, isBinary) => {
      if (isBinary || !first) return;
      first = false;
      const msg = parseClientMessage(raw.toString()); // malformed client messages are ignored
      if (msg?.type === 'feature_flags') {
        if (msg.data.supports_preview_metadata) client.previewMetadata = true;
        // ComfyUI answers the client's flags with its own; its frontend reads max_upload_size etc. from them
        this.write(ws, event('feature_flags', this.opts.featureFlags ?? {}));
      }
    });
    ws.on('close', () => {
      client.sockets.delete(ws);
      if (client.sockets.size === 0) this.clients.delete(id);
    });
    ws.on('error', () => ws.terminate());
    this.write(ws, {
      ...event('status', { status: { exec_info: { queue_remaining: this.opts.queueRemaining() } }, sid: id }),
      seq: this.store.lastSeq(),
    });
    const since = url.searchParams.get('since');
    if (since !== null && /^\d+$/.test(since)) {
      for (const e of this.store.eventsSince(id, Number(since)))
        this.write(ws, { type: e.type, data: e.data, seq: e.seq });
    }
    const cur = this.opts.currentExecution();
    if (cur && cur.clientId === id && cur.node)
      this.write(ws, event('executing', { node: cur.node, display_node: cur.node, prompt_id: cur.promptId }));
  }

  send(ev: ServerEvent, clientId: string | null, promptId: string | null): void {
    if (ev.type === 'status' || clientId === null) {
      // status and client-less events go to everyone, unlogged
      const frame = JSON.stringify(ev);
      for (const c of this.clients.values()) for (const ws of c.sockets) this.writeRaw(ws, frame);
      return;
    }
    // per-step events are not logged for replay: the next one supersedes them
    const seq = ev.type === 'progress' || ev.type === 'progress_state' ? null : this.logged(clientId, promptId, ev);
    const c = this.clients.get(clientId);
    if (!c) return;
    const frame = JSON.stringify(seq === null ? ev : { ...ev, seq });
    for (const ws of c.sockets) {
      // a progress_state snapshot is superseded by the next one: a slow reader may miss some, like previews
      if (ev.type === 'progress_state' && ws.bufferedAmount > this.softLimit) {
        this.dropped++;
        continue;
      }
      this.writeRaw(ws, frame);
    }
  }

  preview(img: PreviewImage, meta: { node_id: string; prompt_id: string }, clientId: string | null): void {
    const c = clientId ? this.clients.get(clientId) : undefined;
    if (!c) return;
    const frame = c.previewMetadata ? encodePreviewFrameWithMetadata(img, meta) : encodePreviewFrame(img);
    for (const ws of c.sockets) {
      if (ws.bufferedAmount > this.softLimit) {
        this.dropped++;
        continue;
      }
      this.writeRaw(ws, frame);
    }
  }

  /**
   * A message for one client outside the event log (no seq, never replayed), e.g. ComfyUI's `logs` lines; a client
   * not connected misses it. Back-pressure as for previews: a slow socket skips it.
   */
  sendTo(clientId: string, msg: { type: string; data: unknown }): void {
    const c = this.clients.get(clientId);
    if (!c) return;
    const frame = JSON.stringify(msg);
    for (const ws of c.sockets) {
      if (ws.bufferedAmount > this.softLimit) {
        this.dropped++;
        continue;
      }
      this.writeRaw(ws, frame);
    }
  }

  /** Logs an event for replay; on a full disk it is sent live only (no seq) rather than failing the prompt. */
  private logged(clientId: string, promptId: string | null, ev: ServerEvent): number | null {
    try {
      return this.store.logEvent(clientId, promptId, ev.type, ev.data);
    } catch (e) {
      if (isDiskFull(e)) return null;
      throw e;
    }
  }

  clientCount(): number {
    let n = 0;
    for (const c of this.clients.values()) n += c.sockets.size;
    return n;
  }

  private write(ws: WebSocket, msg: unknown): void {
    this.writeRaw(ws, JSON.stringify(msg));
  }

  private writeRaw(ws: WebSocket, frame: string | Uint8Array): void {
    if (ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount > this.hardLimit) {
      // a stalled client: drop it rather than buffer without bound; it can reconnect with ?since= to catch up
      this.dropped++;
      ws.terminate();
      return;
    }
    ws.send(frame);
    this.lastSent.set(ws, Date.now());
  }

  close(): void {
    clearInterval(this.keepalive);
    for (const c of this.clients.values()) for (const ws of c.sockets) ws.terminate();
    this.wss.close();
  }
}
