// HTTP side of the ComfyUI protocol. Every call goes through `request`, which adds the token and, on a 401,
// waits for the user to supply one (the UI registers `onUnauthorized`) and retries.
import type { ApiPrompt, ObjectInfo, Workflow } from '../graph/types.js';
import type { PromptErrorBody } from '../../protocol/errors.js';
import type { ImageRef } from '../../protocol/images.js';
import { getToken, setToken } from './token.js';
import type { HistoryEntry } from '../graph/history.js';

/** ComfyUI's 400 answer to POST /prompt (the protocol's PromptErrorBody). */
export type PromptError = PromptErrorBody;

export class PromptRejected extends Error {
  constructor(readonly body: PromptError) {
    super(body.error?.message ?? 'prompt rejected');
  }
}

/** [number, prompt_id, prompt, extra_data, outputs_to_execute] */
export type QueueItem = [number, string, ApiPrompt, Record<string, unknown>, string[]];

export interface TemplateInfo {
  file: string;
  title: string;
  description: string;
}
export interface CatalogModel {
  name: string;
  folder: string;
  filename: string;
  description: string;
  size: number | null;
  installed: boolean;
}

export type { ImageRef } from '../../protocol/images.js';

/**
 * Thin client for the server's HTTP routes (ComfyUI's, under /api).
 * @example const api = new HttpApi(); const info = await api.objectInfo();
 */
export class HttpApi {
  /**
   * Called on 401 with the token the server refused (null when none was sent); resolves once a token was entered
   * (the request is then retried).
   */
  onUnauthorized: ((refused: string | null) => Promise<void>) | null = null;

  constructor(readonly base = new URL('./', location.href).pathname) {}

  url(path: string): string {
    return `${this.base}api${path}`;
  }

  async request(path: string, init: RequestInit = {}): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const headers = new Headers(init.headers);
      const token = getToken();
      if (token) headers.set('Authorization', `Bearer ${token}`);
      if (init.body && typeof init.body === 'string') headers.set('Content-Type', 'application/json');
      let res: Response;
      try {
        res = await fetch(this.url(path), { ...init, headers });
      } catch {
        // fetch() rejects with a bare "Failed to fetch": say what it means (the socket retries meanwhile).
        throw new Error('server unreachable, retrying the connection');
      }
      // Each retry waits for the user, so the bound only guards against a server that refuses every token.
      if (res.status !== 401 || !this.onUnauthorized || attempt > 20) return res;
      if (token) setToken(null); // a refused token is not kept
      await this.onUnauthorized(token);
    }
  }

  async json<T>(path: string, init?: RequestInit): Promise<T> {
    const res = await this.request(path, init);
    if (!res.ok) throw new Error(`${init?.method ?? 'GET'} ${path}: HTTP ${res.status}`);
    return (await res.json()) as T;
  }

  post(path: string, body: unknown): Promise<Response> {
    return this.request(path, { method: 'POST', body: JSON.stringify(body) });
  }

  /**
   * A POST whose answer carries nothing: throws on an error status. The body is read to its end, or the browser
   * counts the request as cancelled (net::ERR_ABORTED in its network log).
   */
  async postOk(path: string, body: unknown): Promise<void> {
    const res = await this.post(path, body);
    const text = await res.text().catch(() => '');
    if (!res.ok) throw new Error(`POST ${path}: HTTP ${res.status}${text ? ` ${text.slice(0, 200)}` : ''}`);
  }

  objectInfo(): Promise<ObjectInfo> {
    return this.json('/object_info');
  }

  /** Queues a prompt; throws PromptRejected with node_errors on a 400. */
  async queuePrompt(body: {
    client_id: string;
    prompt: ApiPrompt;
    extra_data: unknown;
    front?: boolean;
  }): Promise<{ prompt_id: string; number: number }> {
    const res = await this.post('/prompt', body);
    const data = await res.json();
    if (res.status === 400) throw new PromptRejected(data as PromptError);
    if (!res.ok) throw new Error(`POST /prompt: HTTP ${res.status}`);
    return data;
  }

  /** Stores an image in the server's input folder (POST /upload/image); returns the name it was stored under. */
  async uploadImage(file: File): Promise<string> {
    const form = new FormData();
    form.append('image', file, file.name);
    const res = await this.request('/upload/image', { method: 'POST', body: form });
    const data = await res.json().catch(() => null);
    if (!res.ok) throw new Error(data?.error?.message ?? data?.message ?? `HTTP ${res.status}`);
    return data.subfolder ? `${data.subfolder}/${data.name}` : data.name;
  }

  /** GET /history, newest entries last (ComfyUI's order); `maxItems` keeps the newest ones. */
  history(maxItems = 64): Promise<Record<string, HistoryEntry>> {
    return this.json(`/history?max_items=${maxItems}`);
  }
  async deleteHistory(ids: string[]): Promise<void> {
    await this.postOk('/history', { delete: ids });
  }

  queue(): Promise<{ queue_running: QueueItem[]; queue_pending: QueueItem[] }> {
    return this.json('/queue');
  }
  async cancel(promptId: string): Promise<void> {
    await this.postOk('/queue', { delete: [promptId] });
  }
  async interrupt(promptId?: string): Promise<void> {
    await this.postOk('/interrupt', promptId ? { prompt_id: promptId } : {});
  }

  /** Names of ready workflows (templates); [] when the server has none. */
  async workflows(): Promise<string[]> {
    const res = await this.request('/workflows');
    if (!res.ok) return [];
    const data = await res.json();
    return Array.isArray(data) ? data.map((d) => (typeof d === 'string' ? d : String(d.name))) : [];
  }

  /** Titles and descriptions of the templates (GET /templates/index.json, ComfyUI's template index). */
  async templateIndex(): Promise<TemplateInfo[]> {
    const res = await this.request('/templates/index.json');
    const mods = res.ok ? await res.json().catch(() => []) : [];
    const out: TemplateInfo[] = [];
    for (const m of Array.isArray(mods) ? mods : [])
      for (const t of m.templates ?? []) {
        out.push({
          file: `${t.name}.json`,
          title: String(t.title ?? t.name),
          description: String(t.description ?? ''),
        });
      }
    if (out.length) return out;
    return (await this.workflows()).map((file) => ({
      file,
      title: file.replace(/\.json$/, '').replace(/[-_]/g, ' '),
      description: '',
    }));
  }

  /** Models `models pull` knows (GET /model_catalog); [] when the server has no pull route. */
  async modelCatalog(): Promise<CatalogModel[]> {
    const res = await this.request('/model_catalog');
    return res.ok ? res.json() : [];
  }

  /** Downloads one catalog model on the server (POST /models/pull); throws with the server's reason. */
  async pullModel(name: string): Promise<void> {
    const res = await this.post('/models/pull', { name });
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
    }
  }

  /** File names in one model folder (GET /models/FOLDER). */
  async modelFiles(folder: string): Promise<string[]> {
    const res = await this.request(`/models/${encodeURIComponent(folder)}`);
    return res.ok ? res.json() : [];
  }

  /** The model folders the server knows (GET /models). */
  async modelFolders(): Promise<string[]> {
    return this.json('/models');
  }

  /** Saves a workflow under the user's workflows/ folder (ComfyUI's POST /userdata/workflows%2FNAME.json). */
  async saveUserWorkflow(name: string, wf: Workflow): Promise<void> {
    const res = await this.request(`/userdata/${encodeURIComponent(`workflows/${name}.json`)}?overwrite=true`, {
      method: 'POST',
      body: JSON.stringify(wf),
      headers: { 'Content-Type': 'application/json' },
    });
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
    }
  }

  /** Names of the workflows saved on the server (GET /userdata?dir=workflows), without ".json". */
  async userWorkflows(): Promise<string[]> {
    const res = await this.request('/userdata?dir=workflows&recurse=true&split=false');
    if (!res.ok) return [];
    const files = (await res.json()) as string[];
    return files
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -5))
      .sort();
  }

  userWorkflow(name: string): Promise<Workflow> {
    return this.json(`/userdata/${encodeURIComponent(`workflows/${name}.json`)}`);
  }

  /**
   * Renames a saved workflow (ComfyUI's POST /userdata/{src}/move/{dest}?overwrite=false); a name another saved
   * workflow has is refused (409 there) with a message that says so, and nothing is replaced.
   */
  async renameUserWorkflow(from: string, to: string): Promise<void> {
    const src = encodeURIComponent(`workflows/${from}.json`);
    const dest = encodeURIComponent(`workflows/${to}.json`);
    const res = await this.request(`/userdata/${src}/move/${dest}?overwrite=false`, { method: 'POST' });
    if (res.status === 409) throw new Error(`“${to}” is already saved on the server: choose another name`);
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
    }
  }

  /** Deletes a saved workflow (ComfyUI's DELETE /userdata/workflows%2FNAME.json). */
  async deleteUserWorkflow(name: string): Promise<void> {
    const res = await this.request(`/userdata/${encodeURIComponent(`workflows/${name}.json`)}`, { method: 'DELETE' });
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
    }
  }

  workflow(name: string): Promise<Workflow> {
    return this.json(`/workflows/${encodeURIComponent(name)}`);
  }

  /** URL for an output image; carries the token as a query parameter since <img> cannot send headers. */
  viewUrl(img: ImageRef, preview = false): string {
    const q = new URLSearchParams({
      filename: img.filename,
      subfolder: img.subfolder ?? '',
      type: img.type ?? 'output',
    });
    if (preview) q.set('preview', 'webp;90');
    const token = getToken();
    if (token) q.set('token', token);
    return `${this.url('/view')}?${q}`;
  }
}
