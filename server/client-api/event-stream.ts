/**
 * The typed client's websocket: the protocol's EventSocket (protocol/event-socket.ts) over the ws package, given
 * the server's HTTP address. A 401 on the upgrade rejects open() with a message naming the token option.
 * Example:
 *   const s = new EventStream({ url: 'http://127.0.0.1:8188', clientId: 'me' });
 *   s.onEvent = (e) => console.log(e.type);
 *   await s.open();
 */
import WebSocket from 'ws';
import { EventSocket } from '../../protocol/event-socket.js';

export type { ServerMessage } from '../../protocol/events.js';
export type { PreviewFrame as Preview } from '../../protocol/preview.js';

export interface EventStreamOptions {
  url: string;
  clientId: string;
  token?: string;
  /** first reconnect delay; doubles up to 5 s */
  reconnectDelayMs?: number;
}

function openWs(url: string): WebSocket {
  const ws = new WebSocket(url);
  ws.on('unexpected-response', (_req, res) => {
    const why = res.statusCode === 401 ? 'the server needs an access token (token option)' : `HTTP ${res.statusCode}`;
    ws.emit('error', new Error(`websocket refused: ${why}`));
    ws.terminate();
  });
  return ws;
}

export class EventStream extends EventSocket {
  constructor(o: EventStreamOptions) {
    super({
      url: `${o.url.replace(/^http/, 'ws').replace(/\/+$/, '')}/ws`,
      clientId: o.clientId,
      token: o.token,
      reconnectDelayMs: o.reconnectDelayMs ?? 200,
      connect: openWs,
    });
  }
}
