/**
 * Bounds on what one client may make the server store or compute: everything a request carries ends up in SQLite rows,
 * events and /history answers, so each part has its own ceiling and a clear 4xx when it is crossed.
 */
import { errorItem, promptError, type PromptErrorBody } from '../../protocol/errors.js';

export const REQUEST_LIMITS = {
  /** client_id is copied into every event row of the prompt */
  clientIdChars: 256,
  /** extra_data (the UI workflow in extra_pnginfo, mostly) as JSON */
  extraDataBytes: 4 * 1024 * 1024,
};

export interface LimitRefusal {
  status: 400 | 413;
  body: PromptErrorBody;
}

type PromptBody = { client_id?: unknown; extra_data?: unknown };

/**
 * The client a prompt's events go to: `client_id`, else `extra_data.client_id` (ComfyUI routes by the latter, which a
 * top-level client_id overrides); null for none.
 */
export function promptClientId(body: PromptBody): string | null {
  if (typeof body.client_id === 'string') return body.client_id;
  const fromExtra = (body.extra_data as { client_id?: unknown } | null | undefined)?.client_id;
  return typeof fromExtra === 'string' ? fromExtra : null;
}

/** Checks client_id (wherever the prompt gives it) and extra_data of a POST /prompt body; null when within limits. */
export function promptBodyRefusal(body: PromptBody): LimitRefusal | null {
  const id = body.client_id;
  if (
    (id !== undefined && id !== null && typeof id !== 'string') ||
    (promptClientId(body)?.length ?? 0) > REQUEST_LIMITS.clientIdChars
  ) {
    const msg = `client_id must be a string of at most ${REQUEST_LIMITS.clientIdChars} characters`;
    return { status: 400, body: promptError(errorItem('invalid_prompt', msg)) };
  }
  if (body.extra_data !== undefined) {
    const bytes = Buffer.byteLength(JSON.stringify(body.extra_data) ?? '', 'utf8');
    if (bytes > REQUEST_LIMITS.extraDataBytes) {
      const msg = `extra_data is ${bytes} bytes as JSON; the limit is ${REQUEST_LIMITS.extraDataBytes}`;
      return { status: 413, body: promptError(errorItem('request_too_large', msg)) };
    }
  }
  return null;
}
