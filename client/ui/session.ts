// Glue between the server and the editor, without React: websocket events -> canvas overlays, gallery, queue.
// React components subscribe to `version` bumps and read the fields they need.
import type { Editor } from '../canvas/editor.js';
import { runtime } from '../canvas/runtime-state.js';
import type { HttpApi, ImageRef, PromptError, QueueItem } from '../api/http.js';
import { PromptRejected } from '../api/http.js';
import type { ConnectionState, EventSocket, Preview, SocketEvent } from '../api/socket.js';
import { queueBody } from '../graph/to-api.js';
import { historyItems, type HistoryItem } from '../graph/history.js';

const NAME_KEY = 'tcd-studio.workflowName';
const MINE_KEY = 'tcd-studio.myPrompts';
const SAVED_KEY = 'tcd-studio.workflowSaved';
const PANEL_KEY = 'tcd-studio.sidePanel';

export interface GalleryImage {
  url: string;
  promptId: string;
  nodeId: string;
  filename: string;
}

export class Session {
  connection: ConnectionState = 'connecting';
  queueRunning: QueueItem[] = [];
  queuePending: QueueItem[] = [];
  queueRemaining = 0;
  gallery: GalleryImage[] = [];
  /** Messages shown in the side panel: validation and execution errors, file problems. */
  messages: { kind: 'error' | 'info'; text: string }[] = [];
  lastPromptId: string | null = null;
  /** GET /history as sidebar items, newest first. */
  history: HistoryItem[] = [];
  /** The image shown large (index into `gallery`), or null. */
  lightbox: number | null = null;
  private historyShownOnNodes = false;
  /** Prompts queued from this tab (kept across reloads: the server may restart while the page reloads too). */
  private readonly mine = new Set<string>(JSON.parse(sessionStorage.getItem(MINE_KEY) ?? '[]') as string[]);
  private readonly restartNoted = new Set<string>();
  /** The open workflow's name (a template's, or the one it was saved under). */
  workflowName: string = localStorage.getItem(NAME_KEY) ?? 'Unsaved workflow';
  /** The name is one the workflow was saved under on the server (Ctrl+S saves there without asking). */
  savedOnServer = localStorage.getItem(SAVED_KEY) === '1';
  /** The "save as" dialog is open. */
  askingName = false;
  /** How many times Queue queues the graph (seeds advance between them). */
  batchCount = 1;
  sidePanel = localStorage.getItem(PANEL_KEY) !== '0';
  private listeners = new Set<() => void>();
  private lastPreviewUrl: string | null = null;
  private executingPrompt: string | null = null;

  constructor(
    readonly api: HttpApi,
    readonly socket: EventSocket,
    readonly editor: Editor,
  ) {
    socket.onEvent = (e) => this.onEvent(e);
    socket.onPreview = (p) => this.onPreview(p);
    socket.onState = (s) => {
      this.connection = s;
      if (s === 'open') {
        void this.refreshQueue();
        void this.refreshHistory();
        void this.refreshModels();
      }
      this.emit();
    };
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(): void {
    for (const fn of this.listeners) fn();
  }

  note(kind: 'error' | 'info', text: string): void {
    this.messages = [...this.messages.slice(-9), { kind, text }];
    this.emit();
  }

  /** The model library: files per model folder (GET /models/FOLDER), refreshed by R or the Refresh button. */
  models: Record<string, string[]> = {};

  /** Re-reads the model folders and object_info, so library and combos list new files without a page reload. */
  async refreshModels(): Promise<void> {
    try {
      const folders = await this.api.modelFolders();
      const lists = await Promise.all(folders.map((f) => this.api.modelFiles(f)));
      this.models = Object.fromEntries(folders.map((f, i) => [f, lists[i]]));
      this.editor.refreshLists(await this.api.objectInfo());
    } catch (e) {
      this.note('error', `model lists: ${(e as Error).message}`);
    }
    this.emit();
  }

  private remember(promptId: string): void {
    this.mine.add(promptId);
    try {
      sessionStorage.setItem(MINE_KEY, JSON.stringify([...this.mine].slice(-200)));
    } catch {
      /* full */
    }
  }

  setWorkflowName(name: string, savedOnServer = false): void {
    this.workflowName = name;
    this.savedOnServer = savedOnServer;
    try {
      localStorage.setItem(NAME_KEY, name);
      localStorage.setItem(SAVED_KEY, savedOnServer ? '1' : '0');
    } catch {
      /* private mode */
    }
    this.emit();
  }

  /** Ctrl+S: saves on the server under the workflow's name, asking for one first when it has none there yet. */
  async save(name?: string): Promise<boolean> {
    const n = name ?? (this.savedOnServer ? this.workflowName : null);
    if (!n) {
      this.askingName = true;
      this.emit();
      return false;
    }
    this.editor.checkpoint(); // a typing burst still pending is part of what gets saved
    try {
      await this.api.saveUserWorkflow(n, this.editor.serialize());
    } catch (e) {
      this.note('error', `Save failed: ${(e as Error).message}`);
      return false;
    }
    this.askingName = false;
    this.setWorkflowName(n, true);
    this.editor.markClean();
    return true;
  }

  cancelSave(): void {
    this.askingName = false;
    this.emit();
  }

  async openSaved(name: string): Promise<void> {
    try {
      this.editor.load(await this.api.userWorkflow(name), { keepHistory: true });
      this.setWorkflowName(name, true);
    } catch (e) {
      this.note('error', `${name}: ${(e as Error).message}`);
    }
  }

  /** Renames a workflow saved on the server; the open one, if it is that workflow, takes the new name. */
  async renameSaved(from: string, to: string): Promise<void> {
    await this.api.renameUserWorkflow(from, to);
    if (this.savedOnServer && this.workflowName === from) this.setWorkflowName(to, true);
  }

  /** Deletes a workflow saved on the server; the open one, if it is that workflow, becomes unsaved (Ctrl+S asks). */
  async deleteSaved(name: string): Promise<void> {
    await this.api.deleteUserWorkflow(name);
    if (this.savedOnServer && this.workflowName === name) this.setWorkflowName('Unsaved workflow');
  }

  setBatchCount(n: number): void {
    this.batchCount = Math.max(1, Math.min(100, Math.floor(n) || 1));
    this.emit();
  }

  toggleSidePanel(): void {
    this.sidePanel = !this.sidePanel;
    try {
      localStorage.setItem(PANEL_KEY, this.sidePanel ? '1' : '0');
    } catch {
      /* private mode */
    }
    this.emit();
  }

  /** The tab title: progress while a prompt runs, the workflow's name with * while modified. */
  title(): string {
    const p = runtime.running ? runtime.progress.get(runtime.running) : undefined;
    const busy = runtime.running ? `[${p !== undefined ? Math.round(p * 100) : 0}%] ` : '';
    return `${busy}${this.editor.modified ? '*' : ''}${this.workflowName} - tcd-studio`;
  }

  /** Clears the messages and the error marks on the nodes with them. */
  clearMessages(): void {
    this.messages = [];
    runtime.errors.clear();
    this.editor.canvas.setDirty(true, true);
    this.emit();
  }

  /** Queues the graph `batchCount` times (Queue button, Ctrl+Enter); returns the last prompt id. */
  async queue(opts: { front?: boolean } = {}): Promise<string | null> {
    let id: string | null = null;
    for (let i = 0; i < this.batchCount; i++) {
      id = await this.queueOnce(opts);
      if (!id) break;
    }
    return id;
  }

  /** Converts the open graph, queues it once, then advances seeds (control_after_generate). */
  private async queueOnce(opts: { front?: boolean }): Promise<string | null> {
    const wf = this.editor.serialize();
    runtime.errors.clear();
    this.editor.canvas.setDirty(true, true);
    try {
      const res = await this.api.queuePrompt({
        ...queueBody(wf, this.editor.objectInfo, this.socket.id),
        ...(opts.front ? { front: true } : {}),
      });
      this.lastPromptId = res.prompt_id;
      this.remember(res.prompt_id);
      this.editor.applySeedControls();
      void this.refreshQueue();
      return res.prompt_id;
    } catch (e) {
      if (e instanceof PromptRejected) this.showPromptErrors(e.body);
      else this.note('error', `Queue failed: ${(e as Error).message}`);
      return null;
    }
  }

  /** Marks each offending node and input with the server's messages (400 node_errors). */
  showPromptErrors(body: PromptError): void {
    runtime.errors.clear();
    const lines: string[] = [body.error?.message ?? 'Prompt rejected'];
    for (const [id, ne] of Object.entries(body.node_errors ?? {})) {
      const inputs: Record<string, string> = {};
      for (const err of ne.errors ?? []) {
        const name = err.extra_info?.input_name;
        const text = err.details ? `${err.message}: ${err.details}` : err.message;
        if (name) inputs[name] = text;
        lines.push(`#${id} ${ne.class_type ?? ''} ${name ? `${name}: ` : ''}${text}`);
      }
      runtime.errors.set(id, {
        message: (ne.errors ?? [])
          .filter((e) => !e.extra_info?.input_name)
          .map((e) => e.message)
          .join('; '),
        inputs,
      });
    }
    this.editor.canvas.setDirty(true, true);
    this.note('error', lines.join('\n'));
  }

  async refreshHistory(): Promise<void> {
    try {
      this.history = historyItems(await this.api.history());
    } catch {
      return;
    }
    for (const h of this.history) {
      // A prompt the server lost to a crash or restart: said once, with its number.
      if (h.status !== 'error' || !h.error || !/restart|crash/i.test(h.error) || this.restartNoted.has(h.promptId))
        continue;
      this.restartNoted.add(h.promptId);
      if (this.mine.has(h.promptId))
        this.note('error', `Prompt #${h.number} was stopped by a server restart: queue it again to re-run it.`);
    }
    const fromHistory = this.history.flatMap((h) =>
      h.images.map(({ nodeId, image }) => ({
        url: this.api.viewUrl(image),
        promptId: h.promptId,
        nodeId,
        filename: image.filename,
      })),
    );
    const known = new Set(fromHistory.map((g) => g.url));
    const live = this.gallery.filter((g) => !known.has(g.url) && this.history.every((h) => h.promptId !== g.promptId));
    // A cached re-run lists the same file again: one gallery entry per image.
    const seen = new Set<string>();
    this.gallery = [...live, ...fromHistory].filter((g) => !seen.has(g.url) && seen.add(g.url)).slice(0, 200);
    // After a reload the newest outputs go back on their nodes, as if they had just run.
    if (!this.historyShownOnNodes) {
      this.historyShownOnNodes = true;
      const newest = this.history.find((h) => h.images.length);
      const byNode = new Map<string, string[]>();
      for (const { nodeId, image } of newest?.images ?? [])
        byNode.set(nodeId, [...(byNode.get(nodeId) ?? []), this.api.viewUrl(image)]);
      for (const [id, urls] of byNode)
        if (this.editor.nodeById(id) && !runtime.images.has(id)) runtime.setImages(id, urls);
    }
    this.emit();
  }

  /** Opens the workflow that made a history item (kept in its extra_pnginfo). */
  loadHistory(item: HistoryItem): void {
    // A prompt queued without its workflow (through the API) opens from the prompt itself, as ComfyUI does.
    if (item.workflow) this.editor.load(item.workflow, { keepHistory: true });
    else {
      const unknown = this.editor.loadPrompt(item.prompt);
      if (unknown.length)
        this.note('error', `prompt #${item.number}: no such node type here, left out: ${unknown.join(', ')}`);
    }
    // Maybe not the graph saved under the present name: unnamed, so Ctrl+S asks rather than replacing that one.
    this.setWorkflowName('Unsaved workflow');
  }

  /** Queues a history item's prompt again, exactly as it ran. */
  async rerun(item: HistoryItem): Promise<void> {
    try {
      const res = await this.api.queuePrompt({
        client_id: this.socket.id,
        prompt: item.prompt,
        extra_data: item.extraData,
      });
      this.lastPromptId = res.prompt_id;
      this.remember(res.prompt_id);
      void this.refreshQueue();
    } catch (e) {
      if (e instanceof PromptRejected) this.showPromptErrors(e.body);
      else this.note('error', (e as Error).message);
    }
  }

  async deleteHistory(item: HistoryItem): Promise<void> {
    try {
      await this.api.deleteHistory([item.promptId]);
    } catch (e) {
      return this.note('error', `Delete failed: ${(e as Error).message}`);
    }
    this.gallery = this.gallery.filter((g) => g.promptId !== item.promptId);
    await this.refreshHistory();
  }

  openLightbox(url: string): void {
    this.lightbox = Math.max(
      0,
      this.gallery.findIndex((g) => g.url === url),
    );
    this.emit();
  }
  closeLightbox(): void {
    this.lightbox = null;
    this.emit();
  }
  /** Arrows in the lightbox: -1 newer, +1 older; wraps around. */
  stepLightbox(delta: number): void {
    if (this.lightbox === null || !this.gallery.length) return;
    this.lightbox = (this.lightbox + delta + this.gallery.length) % this.gallery.length;
    this.emit();
  }

  async refreshQueue(): Promise<void> {
    try {
      const q = await this.api.queue();
      this.queueRunning = q.queue_running ?? [];
      this.queuePending = q.queue_pending ?? [];
      this.emit();
    } catch {
      /* offline: the indicator already says so */
    }
  }

  async cancel(promptId: string): Promise<void> {
    try {
      await this.api.cancel(promptId);
    } catch (e) {
      this.note('error', `Cancel failed: ${(e as Error).message}`);
    }
    await this.refreshQueue();
  }

  async interrupt(): Promise<void> {
    const running = this.queueRunning[0]?.[1];
    try {
      await this.api.interrupt(running);
    } catch (e) {
      this.note('error', `Interrupt failed: ${(e as Error).message}`);
    }
    await this.refreshQueue();
  }

  private onEvent({ type, data }: SocketEvent): void {
    switch (type) {
      case 'status':
        this.queueRemaining = data?.status?.exec_info?.queue_remaining ?? 0;
        void this.refreshQueue();
        void this.refreshHistory(); // a finished prompt is in history by the time the queue says so
        break;
      case 'execution_start':
        this.executingPrompt = data.prompt_id;
        runtime.errors.clear();
        runtime.clearPreviews(); // the last frame of the previous prompt stays up until the next one starts
        break;
      case 'executing':
        if (runtime.running) runtime.progress.delete(runtime.running);
        runtime.running = data.node ?? null;
        if (data.node == null) {
          runtime.progress.clear();
          void this.refreshQueue();
          void this.refreshHistory();
        }
        break;
      case 'progress':
        runtime.progress.set(String(data.node ?? runtime.running), data.value / Math.max(1, data.max));
        break;
      case 'executed': {
        const images = (data.output?.images ?? []) as ImageRef[];
        const nodeId = String(data.display_node ?? data.node);
        runtime.setImages(
          nodeId,
          images.map((i) => this.api.viewUrl(i)),
        );
        const fresh = images.map((i) => ({
          url: this.api.viewUrl(i),
          promptId: data.prompt_id,
          nodeId,
          filename: i.filename,
        }));
        const seen = new Set(fresh.map((g) => g.url));
        this.gallery = [...fresh.reverse(), ...this.gallery.filter((g) => !seen.has(g.url))].slice(0, 200);
        break;
      }
      case 'execution_error': {
        if (data.exception_type === 'ServerRestart') {
          void this.refreshHistory();
          break;
        } // labelled there
        const inputs: Record<string, string> = {};
        runtime.errors.set(String(data.node_id), {
          message: `${data.exception_type}: ${data.exception_message}`,
          inputs,
        });
        this.note('error', `#${data.node_id} ${data.node_type}: ${data.exception_message}`);
        void this.refreshHistory();
        break;
      }
      case 'execution_interrupted':
        this.note('info', `Interrupted at #${data.node_id ?? '?'} ${data.node_type ?? ''}`);
        void this.refreshHistory();
        break;
      case 'execution_success':
        this.executingPrompt = null;
        void this.refreshHistory();
        break;
      default:
        return;
    }
    this.editor.canvas.setDirty(true, true);
    this.emit();
  }

  private onPreview(p: Preview): void {
    const nodeId = p.nodeId ?? runtime.running;
    if (!nodeId) return;
    const previous = this.lastPreviewUrl;
    this.lastPreviewUrl = URL.createObjectURL(new Blob([p.bytes as Uint8Array<ArrayBuffer>], { type: p.mime }));
    runtime.setPreview(nodeId, this.lastPreviewUrl);
    // The previous frame stays on screen until the new one decoded.
    if (previous) setTimeout(() => URL.revokeObjectURL(previous), 2000);
  }
}
