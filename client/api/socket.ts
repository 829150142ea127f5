// The editor's websocket: the protocol's reconnecting EventSocket (protocol/event-socket.ts) over the browser's
// WebSocket, at this page's base path, with the stored token and type 4 previews (node and prompt ids) requested.
import { EventSocket } from '../../protocol/event-socket.js';
import { getToken } from './token.js';

export type { ConnectionState, EventSocket } from '../../protocol/event-socket.js';
export type { PreviewFrame as Preview } from '../../protocol/preview.js';

/** The editor reads events loosely: a server may send event types this build does not know. */
export interface SocketEvent {
  type: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
  data: any;
  seq?: number;
}

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
 * A websocket to /ws that never gives up (it retries even when the first connection fails).
 * @example const s = editorSocket(clientId()); s.onEvent = (e) => console.log(e.type); s.connect();
 */
export function editorSocket(id: string, base = new URL('./', location.href).pathname): EventSocket {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  return new EventSocket({
    url: `${proto}://${location.host}${base}ws`,
    clientId: id,
    token: getToken,
    connect: (url) => new WebSocket(url),
    featureFlags: { supports_preview_metadata: true },
    retryFirst: true,
  });
}
