/**
 * Request bodies as ComfyUI reads them: JSON whatever the Content-Type (some clients send `text/plain`, or no type:
 * a fetch with a string body). Multipart uploads and the raw /userdata bodies are left to their routes.
 *
 * Why a second origin rule: a browser sends a cross-origin POST with a "simple" content type (text/plain, a form)
 * without asking first. While only application/json was parsed, such a request could never carry a prompt; now it
 * can, so any body-carrying request whose content type a cross-site form could send, and whose Origin is not the
 * server's own (or the configured CORS origin), is refused, whatever the Host.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import type { IncomingMessage } from 'node:http';
import { httpError } from '../../protocol/errors.js';
import { isUserdataPath } from './comfy-frontend/userdata-routes.js';

const isMultipart = (req: IncomingMessage) => /^multipart\//i.test(req.headers['content-type'] ?? '');

/** express.json for every content type but multipart and the userdata paths. */
export function jsonBody(limit: number): express.RequestHandler {
  return express.json({ limit, strict: false, type: (req) => !isMultipart(req) && !isUserdataPath(req.url ?? '') });
}

/** Content types a page can POST cross-origin without a CORS preflight (the fetch spec's "CORS-safelisted"). */
function isSimpleContentType(ct: string | undefined): boolean {
  if (!ct) return true;
  const type = ct.split(';')[0].trim().toLowerCase();
  return type === 'text/plain' || type === 'application/x-www-form-urlencoded' || type === 'multipart/form-data';
}

/** A reason to refuse a cross-origin "simple" request that carries a body, or null. */
export function crossSiteBodyRefusal(req: IncomingMessage, corsOrigin?: string): string | null {
  if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return null;
  if (!isSimpleContentType(req.headers['content-type'])) return null;
  const origin = req.headers.origin;
  if (!origin) {
    // no Origin: not a browser page (curl, scripts), unless the browser says the request came from another site
    return req.headers['sec-fetch-site'] === 'cross-site' ? 'cross-site request refused' : null;
  }
  if (corsOrigin && (corsOrigin === '*' || corsOrigin === origin)) return null;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return 'malformed Origin header';
  }
  return host === req.headers.host
    ? null
    : `cross-origin ${req.method} from ${origin} with a simple content type refused`;
}

export function crossSiteBodyGuard(corsOrigin?: string) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const refused = crossSiteBodyRefusal(req, corsOrigin);
    if (refused) {
      res.status(403).json(httpError('forbidden_origin', refused));
      return;
    }
    next();
  };
}
