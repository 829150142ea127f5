/**
 * A ComfyUI client written only from /work/shared/docs/comfyui-protocol.md: HTTP with fetch, the websocket with ws.
 * Nothing here imports server code, so tests using it check the wire protocol, not the implementation.
 * Example:
 *   const ws = await WsClient.connect(url, 'me');
 *   const { prompt_id } = (await api(url, 'POST', '/prompt', { prompt, client_id: 'me' })).json;
 *   const events = await ws.untilDone(prompt_id);
 */
import assert from 'node:assert/strict';
import WebSocket from 'ws';

export interface ApiResponse {
  status: number;
  json: any;
  text: string;
  headers: Headers;
  bytes: Buffer;
}

/** One HTTP request; a body that is not a string is sent as JSON. */
export async function api(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<ApiResponse> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body =
      typeof body === 'string' || body instanceof Uint8Array || body instanceof FormData
        ? (body as BodyInit)
        : JSON.stringify(body);
    if (!(body instanceof FormData) && !headers['content-type'])
      (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const res = await fetch(base + path, init);
  const bytes = Buffer.from(await res.arrayBuffer());
  const text = bytes.toString('utf8');
  let json: any = undefined;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, json, text, headers: res.headers, bytes };
}

export interface WsMessage {
  type: string;
  data: any;
  seq?: number;
}

/** A websocket client that records every text frame (and counts binary ones). */
export class WsClient {
  readonly messages: WsMessage[] = [];
  binary: Buffer[] = [];
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (raw, isBinary) => {
      if (isBinary) this.binary.push(raw as Buffer);
      else this.messages.push(JSON.parse(raw.toString()));
      for (const w of this.waiters.splice(0)) w();
    });
    ws.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Opens /ws?clientId=ID[&since=SEQ] and waits for the first `status` frame. */
  static async connect(
    base: string,
    clientId: string,
    opts: { since?: number; headers?: Record<string, string>; path?: string; query?: string } = {},
  ): Promise<WsClient> {
    const q = `clientId=${encodeURIComponent(clientId)}${opts.since !== undefined ? `&since=${opts.since}` : ''}${opts.query ?? ''}`;
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}${opts.path ?? '/ws'}?${q}`, { headers: opts.headers });
    const c = new WsClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_r, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    });
    await c.waitFor((m) => m.type === 'status');
    return c;
  }

  /** Resolves with the first message (after those already checked) matching `pred`. */
  async waitFor(pred: (m: WsMessage) => boolean, timeoutMs = 30000): Promise<WsMessage> {
    const deadline = Date.now() + timeoutMs;
    let checked = 0; // scan each message once per waiter, not the whole log on every wake-up
    for (;;) {
      for (; checked < this.messages.length; checked++) if (pred(this.messages[checked])) return this.messages[checked];
      if (this.closed) throw new Error('websocket closed while waiting');
      if (Date.now() > deadline)
        throw new Error(`timed out waiting; got ${this.messages.map((x) => x.type).join(',')}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }

  /** Waits for `executing {node:null}` of the prompt and returns that prompt's events in order. */
  async untilDone(promptId: string, timeoutMs = 60000): Promise<WsMessage[]> {
    await this.waitFor(
      (m) => m.type === 'executing' && m.data?.node === null && m.data?.prompt_id === promptId,
      timeoutMs,
    );
    return this.forPrompt(promptId);
  }

  forPrompt(promptId: string): WsMessage[] {
    return this.messages.filter((m) => m.data?.prompt_id === promptId);
  }

  close(): void {
    this.ws.close();
  }
}

/** multipart/form-data body for POST /upload/image. */
export function uploadForm(name: string, bytes: Uint8Array, fields: Record<string, string> = {}): FormData {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  fd.append('image', new Blob([bytes as Uint8Array<ArrayBuffer>]), name);
  return fd;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll GET /history/{id} until it exists. */
export async function waitHistory(
  base: string,
  promptId: string,
  timeoutMs = 60000,
  headers: Record<string, string> = {},
): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = await api(base, 'GET', `/history/${promptId}`, undefined, headers);
    if (r.json && r.json[promptId]) return r.json[promptId];
    await sleep(100);
  }
  throw new Error(`history for ${promptId} did not appear`);
}

/** Asserts ComfyUI's 400 shape and returns the body. */
export function assertErrorShape(body: any): void {
  assert.ok(body && typeof body === 'object', 'JSON body');
  const e = body.error;
  assert.equal(typeof e.type, 'string');
  assert.equal(typeof e.message, 'string');
  assert.equal(typeof e.details, 'string');
  assert.ok(e.extra_info && typeof e.extra_info === 'object' && !Array.isArray(e.extra_info));
  assert.ok(body.node_errors && typeof body.node_errors === 'object' && !Array.isArray(body.node_errors));
  for (const ne of Object.values(body.node_errors) as any[]) {
    assert.ok(Array.isArray(ne.errors) && ne.errors.length > 0);
    for (const it of ne.errors) for (const k of ['type', 'message', 'details', 'extra_info']) assert.ok(k in it, k);
    assert.ok(Array.isArray(ne.dependent_outputs));
    assert.equal(typeof ne.class_type, 'string');
  }
}
