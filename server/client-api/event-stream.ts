/**
 * The websocket half of the client: one socket to /ws?clientId=ID that reconnects by itself and asks the server to
 * replay what it missed (`since=SEQ`, the last `seq` seen). Logged frames carry `seq`; a replayed frame already
 * seen is dropped, so listeners see each event once. Binary frames (previews) are passed on as image bytes.
 * Example:
 *   const s = new EventStream({ url: 'http://127.0.0.1:8188', clientId: 'me' });
 *   s.onEvent = (e) => console.log(e.type);
 *   await s.open();
 */
import WebSocket from 'ws';

export interface ServerMessage { type: string; data: any; seq?: number }
export interface Preview { mime: 'image/jpeg' | 'image/png'; bytes: Uint8Array; promptId?: string; nodeId?: string }

export interface EventStreamOptions {
  url: string;
  clientId: string;
  token?: string;
  /** first reconnect delay; doubles up to 5 s */
  reconnectDelayMs?: number;
}

export class EventStream {
  onEvent: (m: ServerMessage) => void = () => {};
  onPreview: (p: Preview) => void = () => {};
  /** called after a lost connection is open again (and its replay requested) */
  onReconnect: () => void = () => {};
  /** the highest `seq` seen: the replay point after a reconnect */
  lastSeq: number | undefined;
  reconnects = 0;
  private ws: WebSocket | null = null;
  private closing = false;
  private opening: Promise<void> | null = null;

  constructor(private readonly o: EventStreamOptions) {}

  /** Opens the socket (once) and resolves after the server's `status` greeting. */
  open(): Promise<void> {
    this.closing = false;
    return (this.opening ??= this.connect().catch((e) => { this.opening = null; throw e; }));
  }

  /** The raw socket, for tests and advanced uses (null while disconnected). */
  get socket(): WebSocket | null { return this.ws; }

  close(): void {
    this.closing = true;
    this.opening = null;
    this.ws?.close();
    this.ws = null;
  }

  private wsUrl(): string {
    const u = new URL(this.o.url.replace(/^http/, 'ws').replace(/\/+$/, '') + '/ws');
    u.searchParams.set('clientId', this.o.clientId);
    if (this.lastSeq !== undefined) u.searchParams.set('since', String(this.lastSeq));
    if (this.o.token) u.searchParams.set('token', this.o.token);
    return u.toString();
  }

  private connect(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(this.wsUrl());
      let greeted = false;
      ws.on('unexpected-response', (_req, res) => {
        const why = res.statusCode === 401 ? 'the server needs an access token (token option)' : `HTTP ${res.statusCode}`;
        reject(new Error(`websocket refused: ${why}`));
        ws.terminate();
      });
      ws.on('error', (e) => { if (!greeted) reject(e); });
      ws.on('message', (raw, isBinary) => {
        if (isBinary) { this.binary(raw as Buffer); return; }
        let m: ServerMessage;
        try { m = JSON.parse(raw.toString()); } catch { return; }
        if (!greeted && m.type === 'status') {
          greeted = true;
          this.ws = ws;
          // the greeting's seq is the baseline on a first connect; on a reconnect the replay that follows decides
          if (this.lastSeq === undefined && typeof m.seq === 'number') this.lastSeq = m.seq;
          resolve();
          this.onEvent({ type: m.type, data: m.data });
          return;
        }
        if (typeof m.seq === 'number') {
          if (this.lastSeq !== undefined && m.seq <= this.lastSeq) return; // replayed and already seen
          this.lastSeq = m.seq;
        }
        this.onEvent(m);
      });
      ws.on('close', () => {
        if (this.ws === ws) this.ws = null;
        if (greeted && !this.closing) this.reconnect(this.o.reconnectDelayMs ?? 200);
      });
    });
  }

  private reconnect(delay: number): void {
    setTimeout(() => {
      if (this.closing) return;
      this.connect().then(() => { this.reconnects++; this.onReconnect(); }, () => this.reconnect(Math.min(delay * 2, 5000)));
    }, delay).unref?.();
  }

  /** Preview frames: type 1 = [u32 image type][image], type 4 = [u32 json length][json][image]. */
  private binary(buf: Buffer): void {
    if (buf.length < 8) return;
    const kind = buf.readUInt32BE(0);
    if (kind === 1) {
      this.onPreview({ mime: buf.readUInt32BE(4) === 2 ? 'image/png' : 'image/jpeg', bytes: new Uint8Array(buf.subarray(8)) });
    } else if (kind === 4) {
      const n = buf.readUInt32BE(4);
      try {
        const meta = JSON.parse(buf.subarray(8, 8 + n).toString());
        this.onPreview({ mime: meta.image_type === 'image/png' ? 'image/png' : 'image/jpeg', bytes: new Uint8Array(buf.subarray(8 + n)), promptId: meta.prompt_id, nodeId: meta.node_id });
      } catch { /* malformed preview: ignore */ }
    }
  }
}
