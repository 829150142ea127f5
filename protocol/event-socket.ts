/**
 * The one websocket client of the protocol, used by the editor (browser WebSocket) and the typed client (the ws
 * package): one socket to /ws?clientId=ID that reconnects by itself and asks the server to replay what it missed
 * (`since=SEQ`, the last `seq` seen). A replayed frame already seen is dropped, so listeners see each event once;
 * binary frames are decoded into previews.
 * Example:
 *   const s = new EventSocket({ url: 'ws://127.0.0.1:8188/ws', clientId: 'me', open: (u) => new WebSocket(u) });
 *   s.onEvent = (m) => console.log(m.type);
 *   await s.open(); // resolves after the server's `status` greeting
 */
import type { FeatureFlags, ServerMessage } from './events.js';
import { decodePreviewFrame, type PreviewFrame } from './preview.js';

/** The part of the WebSocket interface used here; the browser's and the ws package's both have it. */
export interface WebSocketLike {
  binaryType: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
  onopen: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
  onmessage: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
  onclose: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
  onerror: ((ev: any) => void) | null;
  send(data: string): void;
  close(): void;
}

export type ConnectionState = 'connecting' | 'open' | 'reconnecting';

export interface EventSocketOptions {
  /** address of the /ws endpoint (ws: or wss:) */
  url: string;
  clientId: string;
  /** access token sent as `?token=` (a browser cannot set websocket headers); a function is asked on each connect */
  token?: string | null | (() => string | null | undefined);
  /** opens a socket: the browser's WebSocket or the ws package's */
  connect: (url: string) => WebSocketLike;
  /** announced in the first message after each open (e.g. supports_preview_metadata for type 4 previews) */
  featureFlags?: FeatureFlags;
  /** first reconnect delay in ms (default 500); doubles up to 5 s while the server stays away */
  reconnectDelayMs?: number;
  /** keep retrying when the very first connection fails (the editor) instead of rejecting open() (the typed client) */
  retryFirst?: boolean;
}

const MAX_DELAY_MS = 5000;

export class EventSocket {
  onEvent: (m: ServerMessage) => void = () => {};
  onPreview: (p: PreviewFrame) => void = () => {};
  onState: (s: ConnectionState) => void = () => {};
  /** called after a lost connection is open again (and its replay requested) */
  onReconnect: () => void = () => {};
  /** highest `seq` seen: the replay point after a reconnect; null until the server's greeting shows one */
  lastSeq: number | null = null;
  reconnects = 0;
  /** recent event names (with seq), for diagnostics and tests */
  readonly log: string[] = [];
  private ws: WebSocketLike | null = null;
  private delay: number;
  private closing = false;
  private greetedOnce = false;
  private opening: Promise<void> | null = null;

  constructor(private readonly o: EventSocketOptions) {
    this.delay = o.reconnectDelayMs ?? 500;
  }

  get id(): string {
    return this.o.clientId;
  }

  /** The live socket (null while disconnected), for tests and advanced uses. */
  get socket(): WebSocketLike | null {
    return this.ws;
  }

  /** Opens the socket (once) and resolves after the server's `status` greeting. */
  open(): Promise<void> {
    this.closing = false;
    return (this.opening ??= new Promise<void>((resolve, reject) => this.attempt(resolve, reject)).catch((e) => {
      this.opening = null;
      throw e;
    }));
  }

  /** open() without waiting; failures are retried when `retryFirst` is set, otherwise ignored. */
  connect(): void {
    void this.open().catch(() => {});
  }

  /** Drops the connection on purpose (tests use it to prove catch-up); it reconnects unless close() was called. */
  drop(): void {
    this.ws?.close();
  }

  close(): void {
    this.closing = true;
    this.opening = null;
    this.ws?.close();
    this.ws = null;
  }

  private url(): string {
    const u = new URL(this.o.url);
    u.searchParams.set('clientId', this.o.clientId);
    if (this.lastSeq !== null) u.searchParams.set('since', String(this.lastSeq));
    const token = typeof this.o.token === 'function' ? this.o.token() : this.o.token;
    if (token) u.searchParams.set('token', token);
    return u.toString();
  }

  /** One connection. `settle` reports the first greeting or a failure before it (once per open()). */
  private attempt(resolve?: () => void, reject?: (e: unknown) => void): void {
    const ws = this.o.connect(this.url());
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    let greeted = false;
    this.onState(this.greetedOnce || this.delay !== (this.o.reconnectDelayMs ?? 500) ? 'reconnecting' : 'connecting');
    ws.onopen = () => {
      if (this.o.featureFlags) ws.send(JSON.stringify({ type: 'feature_flags', data: this.o.featureFlags }));
      this.onState('open');
    };
    ws.onerror = (ev) => {
      if (greeted) return;
      const err =
        ev?.error instanceof Error ? ev.error : new Error(`websocket error${ev?.message ? `: ${ev.message}` : ''}`);
      reject?.(err);
      reject = undefined;
    };
    ws.onmessage = (m) => {
      if (typeof m.data !== 'string') {
        const p = decodePreviewFrame(m.data as ArrayBuffer);
        if (p) this.onPreview(p);
        return;
      }
      const msg = this.accept(m.data);
      if (!msg) return;
      if (!greeted && msg.type === 'status') {
        greeted = true;
        this.delay = this.o.reconnectDelayMs ?? 500;
        const again = this.greetedOnce;
        this.greetedOnce = true;
        resolve?.();
        resolve = undefined;
        if (again) {
          this.reconnects++;
          this.onReconnect();
        }
      }
      this.onEvent(msg);
    };
    ws.onclose = () => {
      if (this.ws === ws) this.ws = null;
      if (!greeted && reject) {
        reject(new Error('websocket closed before the server greeted'));
        reject = undefined;
      }
      if (this.ws !== null || this.closing || !(this.greetedOnce || this.o.retryFirst)) return;
      this.onState('reconnecting');
      const t: unknown = setTimeout(() => {
        if (!this.closing && this.ws === null) this.attempt(resolve, reject);
      }, this.delay);
      (t as { unref?: () => void } | undefined)?.unref?.(); // a Node process may exit while the server is away
      this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
    };
  }

  /** Parses a text frame and drops what a replay sent twice; null for a frame to skip. */
  private accept(raw: string): ServerMessage | null {
    let msg: ServerMessage;
    try {
      msg = JSON.parse(raw);
    } catch {
      return null;
    }
    if (typeof msg.seq === 'number') {
      if (msg.type === 'status') {
        // The greeting's seq is the server's current position: a baseline on first connect, never a reason to
        // skip the replay that follows it on a reconnect.
        if (this.lastSeq === null) this.lastSeq = msg.seq;
      } else {
        if (this.lastSeq !== null && msg.seq <= this.lastSeq) return null; // already seen (replay overlap)
        this.lastSeq = msg.seq;
      }
    }
    this.log.push(`${msg.type}${typeof msg.seq === 'number' ? `#${msg.seq}` : ''}`);
    if (this.log.length > 300) this.log.shift();
    return msg;
  }
}
