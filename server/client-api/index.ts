/**
 * A small typed client for a running tcd-studio (or ComfyUI-protocol) server: queue a workflow in UI or API format,
 * stream progress over the websocket (reconnecting and replaying missed events), await completion and get the images.
 * Example (the package's main export):
 *   import { TcdClient } from 'tcd-studio';
 *   const client = new TcdClient({ url: 'http://127.0.0.1:8188', token: process.env.TCD_TOKEN });
 *   const { images } = await client.run(workflow, { onProgress: (p) => console.log(`${p.value}/${p.max}`) });
 *   writeFileSync('out.png', images[0].bytes);
 *   client.close();
 */
import { randomUUID } from 'node:crypto';
import type { ImageRef } from '../../protocol/images.js';
import { EventStream, type Preview, type ServerMessage } from './event-stream.js';

export { EventStream, type Preview, type ServerMessage } from './event-stream.js';
export type { PromptErrorBody, ErrorItem, NodeErrors } from '../../protocol/errors.js';

export interface ClientOptions {
  /** server address, e.g. http://127.0.0.1:8188 */
  url: string;
  /** access token: sent as `Authorization: Bearer` and as `?token=` on the websocket */
  token?: string;
  /** websocket client id (a random one by default) */
  clientId?: string;
  reconnectDelayMs?: number;
}

/** A workflow as saved by the editor (`{nodes, links, ...}`) or an API-format prompt (`{"3": {class_type, inputs}}`). */
export type Workflow = Record<string, unknown>;

export type { ImageRef } from '../../protocol/images.js';
export interface OutputImage extends ImageRef {
  nodeId: string;
  bytes: Uint8Array;
}
export interface Progress {
  promptId: string;
  node: string;
  value: number;
  max: number;
}

export interface RunOptions {
  onProgress?: (p: Progress) => void;
  /** every event of this prompt, in order, each once */
  onEvent?: (m: ServerMessage) => void;
  onPreview?: (p: Preview) => void;
  /** aborting interrupts the prompt on the server and rejects */
  signal?: AbortSignal;
  /** fetch the image bytes (default true); false returns names only (bytes empty) */
  fetchImages?: boolean;
}

export interface RunResult {
  promptId: string;
  status: 'success' | 'error' | 'interrupted';
  images: OutputImage[];
  /** history `outputs`: UI outputs by node id */
  outputs: Record<string, Record<string, unknown>>;
  /** the execution_error data when status is 'error' */
  error?: { node_id: string; node_type: string; exception_message: string; [k: string]: unknown };
}

/** An HTTP error from the server, with its JSON body (for POST /prompt: `{error, node_errors}`). */
export class TcdApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
    readonly body: any,
  ) {
    super(message);
    this.name = 'TcdApiError';
  }
}

interface Tracker {
  events: ServerMessage[];
  done: boolean;
  wake: () => void;
  opts?: RunOptions;
}

export class TcdClient {
  readonly url: string;
  readonly clientId: string;
  readonly stream: EventStream;
  private readonly trackers = new Map<string, Tracker>();

  constructor(private readonly o: ClientOptions) {
    this.url = o.url.replace(/\/+$/, '');
    this.clientId = o.clientId ?? randomUUID().replace(/-/g, '');
    this.stream = new EventStream({
      url: this.url,
      clientId: this.clientId,
      token: o.token,
      reconnectDelayMs: o.reconnectDelayMs,
    });
    this.stream.onEvent = (m) => this.dispatch(m);
    this.stream.onPreview = (p) => {
      for (const [id, t] of this.trackers) if (!p.promptId || p.promptId === id) t.opts?.onPreview?.(p);
    };
    // events may have been trimmed from the server's log: history is the source of truth for what finished
    this.stream.onReconnect = () => {
      for (const [id, t] of this.trackers)
        if (!t.done)
          void this.history(id).then(
            (h) => {
              if (h && !t.done) {
                t.done = true;
                t.wake();
              }
            },
            () => {},
          );
    };
  }

  /** One HTTP request with the token; JSON in and out. Throws TcdApiError on a non-2xx answer. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
  async request(method: string, path: string, body?: unknown): Promise<any> {
    const res = await this.fetch(path, {
      method,
      ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
    });
    const text = await res.text();
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
    let json: any = undefined;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    if (!res.ok) {
      const msg = json?.error?.message ?? (typeof json === 'string' ? json : res.statusText);
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
      const node = json?.node_errors && Object.entries(json.node_errors as Record<string, any>)[0];
      throw new TcdApiError(
        `${method} ${path}: ${res.status} ${msg}${node ? ` (node ${node[0]} ${node[1].class_type}: ${node[1].errors?.[0]?.message} ${node[1].errors?.[0]?.details ?? ''})` : ''}`.trim(),
        res.status,
        json,
      );
    }
    return json;
  }

  private async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.o.token) headers.set('authorization', `Bearer ${this.o.token}`);
    try {
      return await fetch(this.url + path, { ...init, headers });
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause?.code;
      throw new Error(`cannot reach ${this.url}${cause ? ` (${cause})` : ''}: is tcd-studio serve running?`);
    }
  }

  /** Opens the websocket (done by queue() and run() too). */
  connect(): Promise<void> {
    return this.stream.open();
  }

  /**
   * Queue a workflow (UI or API format); events for it are recorded from now on. Resolves to its prompt id.
   * Throws TcdApiError with `{error, node_errors}` when the server rejects it.
   */
  async queue(
    workflow: Workflow,
    opts: { front?: boolean; extraData?: Record<string, unknown> } = {},
  ): Promise<{ promptId: string; number: number }> {
    await this.connect();
    const promptId = randomUUID();
    this.track(promptId);
    try {
      const r = await this.request('POST', '/prompt', {
        prompt: workflow,
        client_id: this.clientId,
        prompt_id: promptId,
        front: opts.front,
        extra_data: opts.extraData,
      });
      return { promptId: r.prompt_id, number: r.number };
    } catch (e) {
      this.trackers.delete(promptId);
      throw e;
    }
  }

  /** Wait for a queued prompt to finish (`executing {node: null}`), then return its status and images. */
  async wait(promptId: string, opts: RunOptions = {}): Promise<RunResult> {
    const t = this.track(promptId);
    t.opts = opts;
    for (const m of t.events) this.notify(m, opts);
    const onAbort = () => {
      void this.interrupt(promptId).catch(() => {});
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      while (!t.done)
        await new Promise<void>((r) => {
          t.wake = r;
        });
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      this.trackers.delete(promptId);
    }
    const h = await this.history(promptId);
    const outputs = (h?.outputs ?? {}) as Record<string, Record<string, unknown>>;
    const status =
      h?.status?.status_str === 'success'
        ? 'success'
        : (h?.status?.messages ?? []).some((m: [string]) => m[0] === 'execution_interrupted')
          ? 'interrupted'
          : 'error';
    const err =
      (h?.status?.messages ?? []).find((m: [string]) => m[0] === 'execution_error')?.[1] ??
      t.events.find((m) => m.type === 'execution_error')?.data;
    const images: OutputImage[] = [];
    for (const [nodeId, out] of Object.entries(outputs))
      for (const ref of (out.images as ImageRef[] | undefined) ?? []) {
        images.push({ nodeId, ...ref, bytes: opts.fetchImages === false ? new Uint8Array() : await this.view(ref) });
      }
    if (opts.signal?.aborted && status !== 'success') throw new Error(`prompt ${promptId} was interrupted`);
    return { promptId, status, images, outputs, ...(err ? { error: err } : {}) };
  }

  /** queue() then wait(): the whole round trip. */
  async run(workflow: Workflow, opts: RunOptions & { front?: boolean } = {}): Promise<RunResult> {
    const { promptId } = await this.queue(workflow, { front: opts.front });
    return this.wait(promptId, opts);
  }

  /** The bytes of an output, input or temp image (GET /view). */
  async view(ref: ImageRef): Promise<Uint8Array> {
    const q = new URLSearchParams({
      filename: ref.filename,
      subfolder: ref.subfolder ?? '',
      type: ref.type ?? 'output',
    });
    const res = await this.fetch(`/view?${q}`);
    if (!res.ok) throw new TcdApiError(`GET /view ${ref.filename}: ${res.status}`, res.status, await res.text());
    return new Uint8Array(await res.arrayBuffer());
  }

  /** The history entry of a prompt, or undefined while it has none. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
  async history(promptId: string): Promise<any | undefined> {
    return (await this.request('GET', `/history/${encodeURIComponent(promptId)}`))?.[promptId];
  }

  /** Interrupt this prompt if it is running (others are left alone). */
  async interrupt(promptId?: string): Promise<void> {
    await this.request('POST', '/interrupt', promptId ? { prompt_id: promptId } : {});
  }

  /** Convert a UI-format workflow to an API-format prompt on the server. */
  async convert(workflow: Workflow): Promise<Record<string, unknown>> {
    return (await this.request('POST', '/workflow/convert', { workflow })).prompt;
  }

  close(): void {
    this.stream.close();
  }

  private track(promptId: string): Tracker {
    let t = this.trackers.get(promptId);
    if (!t) {
      t = { events: [], done: false, wake: () => {} };
      this.trackers.set(promptId, t);
    }
    return t;
  }

  private dispatch(m: ServerMessage): void {
    const id = (m.data as { prompt_id?: unknown } | undefined)?.prompt_id;
    const t = typeof id === 'string' ? this.trackers.get(id) : undefined;
    if (!t || t.done) return;
    t.events.push(m);
    if (t.opts) this.notify(m, t.opts);
    if (m.type === 'executing' && m.data.node === null) {
      t.done = true;
      t.wake();
    }
  }

  private notify(m: ServerMessage, opts: RunOptions): void {
    opts.onEvent?.(m);
    if (m.type === 'progress')
      opts.onProgress?.({ promptId: m.data.prompt_id, node: m.data.node, value: m.data.value, max: m.data.max });
  }
}
