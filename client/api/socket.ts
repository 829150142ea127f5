// The websocket side: reconnects by itself, and on reconnect asks the server to replay what it missed
// (`&since=<last seq>`; every text frame may carry a numeric `seq`). Binary frames are live previews.
import { getToken } from './token.js';

export type ConnectionState = 'connecting' | 'open' | 'reconnecting';

export interface SocketEvent { type: string; data: any; seq?: number }

export interface Preview { blob: Blob; nodeId: string | null; promptId: string | null }

/** A per-tab client id: kept in sessionStorage so a reload keeps receiving its prompts' events. */
export function clientId(): string {
  const KEY = 'tcd-studio.clientId';
  let id = sessionStorage.getItem(KEY);
  if (!id) {
    id = crypto.randomUUID().replaceAll('-', '');
    sessionStorage.setItem(KEY, id);
  }
  return id;
}

/**
 * A websocket to /ws that never gives up.
 * @example const s = new EventSocket(clientId()); s.onEvent = (e) => console.log(e.type); s.connect();
 */
export class EventSocket {
  onEvent: (e: SocketEvent) => void = () => {};
  onPreview: (p: Preview) => void = () => {};
  onState: (s: ConnectionState) => void = () => {};
  /** Highest seq seen; null until the server shows it supports replay. */
  lastSeq: number | null = null;
  /** Recent event names (with seq), for diagnostics and tests. */
  readonly log: string[] = [];
  private ws: WebSocket | null = null;
  private delay = 500;
  private closed = false;

  constructor(readonly id: string, readonly base = new URL('./', location.href).pathname) {}

  connect(): void {
    this.closed = false;
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    const q = new URLSearchParams({ clientId: this.id });
    if (this.lastSeq !== null) q.set('since', String(this.lastSeq));
    const token = getToken();
    if (token) q.set('token', token);
    const ws = new WebSocket(`${proto}://${location.host}${this.base}ws?${q}`);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.onState(this.lastSeq === null && this.delay === 500 ? 'connecting' : 'reconnecting');
    ws.onopen = () => {
      this.delay = 500;
      ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
      this.onState('open');
    };
    ws.onmessage = (m) => (typeof m.data === 'string' ? this.text(m.data) : this.binary(m.data as ArrayBuffer));
    ws.onclose = () => {
      if (this.ws !== ws || this.closed) return;
      this.onState('reconnecting');
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 5000);
    };
  }

  /** Drops the connection on purpose (tests use it to prove catch-up); it reconnects unless `close()` was called. */
  drop(): void { this.ws?.close(); }

  close(): void {
    this.closed = true;
    this.ws?.close();
  }

  private text(raw: string): void {
    let msg: SocketEvent;
    try { msg = JSON.parse(raw); } catch { return; }
    if (typeof msg.seq === 'number') {
      if (msg.type === 'status') {
        // The greeting's seq is the server's current position: a baseline on first connect, never a reason to
        // skip the replay that follows it on a reconnect.
        if (this.lastSeq === null) this.lastSeq = msg.seq;
      } else {
        if (this.lastSeq !== null && msg.seq <= this.lastSeq) return; // already seen (replay overlap)
        this.lastSeq = msg.seq;
      }
    }
    this.log.push(`${msg.type}${typeof msg.seq === 'number' ? `#${msg.seq}` : ''}`);
    if (this.log.length > 300) this.log.shift();
    this.onEvent(msg);
  }

  private binary(buf: ArrayBuffer): void {
    const view = new DataView(buf);
    if (buf.byteLength < 8) return;
    const kind = view.getUint32(0);
    if (kind === 1) {
      const mime = view.getUint32(4) === 2 ? 'image/png' : 'image/jpeg';
      this.onPreview({ blob: new Blob([buf.slice(8)], { type: mime }), nodeId: null, promptId: null });
    } else if (kind === 4) {
      const len = view.getUint32(4);
      const meta = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, len)));
      this.onPreview({ blob: new Blob([buf.slice(8 + len)], { type: meta.image_type ?? 'image/jpeg' }), nodeId: meta.node_id ?? null, promptId: meta.prompt_id ?? null });
    }
  }
}
