/**
 * Access control: an optional token (constant-time compare) guarding every route and the websocket, and ComfyUI's
 * origin rule: a request whose Origin is not the Host it was sent to, while the Host is loopback, is refused
 * (no drive-by prompts from a web page). CORS headers only when enabled.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Request, Response, NextFunction } from 'express';
import { httpError } from '../../protocol/errors.js';

export interface SecurityOptions {
  token?: string;
  corsOrigin?: string;
  /** the server listens on a loopback address: requests naming another Host are refused (DNS rebinding) */
  loopbackBound?: boolean;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export function tokenMatches(expected: string, given: string | undefined | null): boolean {
  if (!given) return false;
  return timingSafeEqual(digest(expected), digest(given));
}

/**
 * The request target as a URL, or null when it cannot be parsed (`//[` and the like): callers refuse with a 4xx
 * instead of letting `new URL` throw out of a handler.
 */
export function requestUrl(req: IncomingMessage): URL | null {
  try {
    return new URL(req.url ?? '/', 'http://x');
  } catch {
    return null;
  }
}

/**
 * The token from `Authorization: Bearer X`, `?token=X` or the `tcd_token` cookie. A malformed cookie (bad percent
 * escape) or an unparsable URL yields no token, so the request is refused as unauthenticated, never a 500.
 */
export function tokenFrom(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ')) return auth.slice(7).trim();
  const q = requestUrl(req)?.searchParams.get('token');
  if (q) return q;
  const cookie = req.headers.cookie
    ?.split(';')
    .map((s) => s.trim())
    .find((s) => s.startsWith('tcd_token='));
  if (!cookie) return undefined;
  try {
    return decodeURIComponent(cookie.slice('tcd_token='.length));
  } catch {
    return undefined;
  }
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);
function hostName(h: string): string {
  return h.startsWith('[') ? h.slice(0, h.indexOf(']') + 1) : h.split(':')[0].toLowerCase();
}

/** True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost). */
export function isLoopbackAddress(host: string): boolean {
  return LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * A server bound to loopback answers only requests whose Host is loopback: a web page that re-points its own
 * domain name at 127.0.0.1 (DNS rebinding) sends its own domain as Host and is refused here.
 */
export function hostRefusal(req: IncomingMessage, loopbackBound: boolean | undefined): string | null {
  const host = req.headers.host;
  if (!loopbackBound || !host) return null;
  return isLoopbackAddress(hostName(host)) ? null : `Host ${host} refused: this server listens on loopback only`;
}

/** ComfyUI's rule: refuse when Host is loopback and Origin's host:port differs from Host. Returns a reason or null. */
export function originRefusal(req: IncomingMessage, corsOrigin?: string): string | null {
  const origin = req.headers.origin;
  const host = req.headers.host;
  if (!origin || !host) return null;
  if (corsOrigin && (corsOrigin === '*' || corsOrigin === origin)) return null;
  let o: URL;
  try {
    o = new URL(origin);
  } catch {
    return `malformed Origin header`;
  }
  if (!LOOPBACK.has(hostName(host))) return null;
  if (o.host !== host) return `cross-origin request from ${origin} to loopback host ${host} refused`;
  return null;
}

export function securityMiddleware(opts: SecurityOptions) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (opts.corsOrigin) {
      res.setHeader('Access-Control-Allow-Origin', opts.corsOrigin);
      res.setHeader('Access-Control-Allow-Methods', 'GET, POST, DELETE, OPTIONS');
      res.setHeader('Access-Control-Allow-Headers', 'Content-Type, Authorization');
      if (req.method === 'OPTIONS') {
        res.status(204).end();
        return;
      }
    }
    const refused = hostRefusal(req, opts.loopbackBound) ?? originRefusal(req, opts.corsOrigin);
    if (refused) {
      res.status(403).json(httpError('forbidden_origin', refused));
      return;
    }
    if (opts.token && !tokenMatches(opts.token, tokenFrom(req))) {
      // the editor's static files stay reachable so it can ask for the token
      const open =
        req.method === 'GET' &&
        (req.path === '/' ||
          req.path.startsWith('/assets/') ||
          req.path === '/index.html' ||
          req.path === '/favicon.ico');
      if (!open) {
        res
          .status(401)
          .json(
            httpError(
              'unauthorized',
              'this server requires an access token (Authorization: Bearer TOKEN or ?token=TOKEN)',
            ),
          );
        return;
      }
    }
    next();
  };
}
