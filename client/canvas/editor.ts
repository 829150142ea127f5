// The litegraph adapter: owns the LGraph and its canvas, undo history, autosave, shortcuts and the
// execution overlays. React talks to this class only; it knows nothing about React.
import { LGraph, LGraphCanvas, LGraphNode, LiteGraph } from '@comfyorg/litegraph';
import type { ApiPrompt, ObjectInfo, Workflow, WorkflowNode } from '../graph/types.js';
import { MODE_ALWAYS, MODE_BYPASS, MODE_NEVER } from '../graph/types.js';
import { UndoStack } from '../graph/undo-stack.js';
import { fuzzySearch } from '../graph/fuzzy.js';
import { nextSeed } from '../graph/seed-control.js';
import { describeInputs, SEED_CONTROLS, type SeedControl } from '../graph/widget-spec.js';
import { readPngText } from '../graph/png-text.js';
import { CONTROL_WIDGET, registerNodeTypes } from './node-types.js';
import { runtime } from './runtime-state.js';
import { adoptPrimitives } from './primitive-node.js';
import { DomWidgetLayer, setDomWidgetLayer } from './dom-widgets.js';
import { loaderFor } from '../graph/model-loaders.js';
import { dropFile, pasteImage } from './image-drop.js';
import { isApiPrompt, promptToWorkflow } from './prompt-graph.js';
import { installMenuFilter } from './menu-filter.js';

const AUTOSAVE_KEY = 'tcd-studio.workflow';
const MODIFIED_KEY = 'tcd-studio.workflow.modified';

/**
 * The undo-relevant part of a workflow. Drops the viewport (panning is not an undo step) and lists nodes by id
 * without their execution `order`: clicking a node brings it to the front, which reorders the graph's node list and
 * can change the order litegraph derives from it (configure computes it again), and neither is an edit.
 */
function snapshotOf(wf: Workflow): string {
  const { extra, nodes, ...rest } = wf;
  const { ds: _ds, ...extraRest } = (extra ?? {}) as Record<string, unknown>;
  const byId = [...nodes].sort((a, b) => Number(a.id) - Number(b.id)).map(({ order: _order, ...n }: WorkflowNode) => n);
  return JSON.stringify({ ...rest, nodes: byId, extra: extraRest });
}

/**
 * One editor bound to a <canvas>.
 * @example const ed = new Editor(canvasEl, await api.objectInfo()); ed.load(defaultWorkflow());
 */
export class Editor {
  readonly graph = new LGraph();
  readonly canvas: LGraphCanvas;
  readonly history = new UndoStack();
  /** Called after each recorded change (for React to refresh undo buttons, title, ...). */
  onChange: () => void = () => {};
  /** Ctrl+Enter (Ctrl+Shift+Enter: to the front of the queue). */
  onQueueShortcut: (front?: boolean) => void = () => {};
  /** Ctrl+S: save on the server under the workflow's name. */
  onSaveShortcut: () => void = () => {};
  /** R: re-read model lists (ComfyUI's refresh). */
  onRefreshShortcut: () => void = () => {};
  /** A workflow was opened from a file (Open file, a dropped JSON or PNG): `name` is the file's, sans extension. */
  onFileOpened: (name: string) => void = () => {};
  private restoring = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** A mouse button is held: a drag (move, resize, link, widget slider) is recorded once, when it ends. */
  private pointerDown = false;

  constructor(
    readonly el: HTMLCanvasElement,
    public objectInfo: ObjectInfo,
  ) {
    registerNodeTypes(objectInfo, this.onWidgetEdit);
    LiteGraph.release_link_on_empty_shows_menu = true;
    this.canvas = new LGraphCanvas(el, this.graph, { autoresize: false } as never);
    el.tabIndex = 0;
    this.canvas.show_info = false;
    this.canvas.render_canvas_border = false;
    this.canvas.onSearchBox = (_helper, str) => this.search(str, this.searchSlot);
    // The link-release menu's "Search" calls showSearchBox unbound (litegraph reads `this.ds` on its options and
    // throws); bound here, and the dragged link's type kept so the results are nodes that can take it.
    const showSearchBox = this.canvas.showSearchBox.bind(this.canvas);
    this.canvas.showSearchBox = (event, opts) => {
      const o = opts as { type_filter_in?: unknown; type_filter_out?: unknown } | undefined;
      this.searchSlot = o?.type_filter_in
        ? { input: String(o.type_filter_in) }
        : o?.type_filter_out
          ? { output: String(o.type_filter_out) }
          : null;
      return showSearchBox(event, opts);
    };
    // "Convert to Subgraph" deletes the selection and throws in this litegraph build: not offered.
    const noSubgraph = <T extends { content?: string } | null>(opts: T[]) =>
      opts.filter((o) => !o?.content?.startsWith('Convert to Subgraph'));
    const canvasMenu = this.canvas.getCanvasMenuOptions.bind(this.canvas);
    const nodeMenu = this.canvas.getNodeMenuOptions.bind(this.canvas);
    this.canvas.getCanvasMenuOptions = () => noSubgraph(canvasMenu() as never[]);
    this.canvas.getNodeMenuOptions = (node) => noSubgraph(nodeMenu(node) as never[]);
    const layer = new DomWidgetLayer(el.parentElement!, el, this.graph);
    setDomWidgetLayer(layer);
    this.canvas.onRender = () => layer.beginFrame();
    this.canvas.onDrawOverlay = () => layer.endFrame();
    runtime.onChange = () => this.canvas.setDirty(true, true);
    this.graph.onAfterChange = () => this.scheduleCheckpoint();
    this.graph.on_change = () => this.scheduleCheckpoint();
    // Menus (add node/group, convert widget) live outside the canvas element, so listen on the whole document;
    // wheel zoom changes only the viewport, which is saved with the workflow but is no undo step. An edit still
    // being debounced lands before a gesture starts, so it stays a step of its own.
    document.addEventListener(
      'pointerdown',
      () => {
        this.landPending();
        this.pointerDown = true;
      },
      true,
    );
    const released = () => {
      this.pointerDown = false;
      this.scheduleCheckpoint();
    };
    document.addEventListener('pointerup', released, true);
    document.addEventListener('pointercancel', released, true);
    window.addEventListener('blur', () => this.pointerDown && released()); // released outside the window
    el.addEventListener('wheel', () => this.scheduleCheckpoint(), { passive: true });
    document.addEventListener('keydown', (e) => this.onKey(e), true);
    document.addEventListener('paste', (e) => pasteImage(this, e));
    installMenuFilter();
    this.resize();
    new ResizeObserver(() => this.resize()).observe(el.parentElement!);
  }

  /** The type of the link the open search box was opened from (released on empty canvas), or null. */
  private searchSlot: { input: string } | { output: string } | null = null;

  /**
   * Node type names ranked by fuzzy match on type, title and category; with `slot`, only those with an input
   * (or output) that takes that type, and Reroute.
   */
  search(query: string, slot: { input: string } | { output: string } | null = null): string[] {
    const info = this.objectInfo;
    const fits = (t: string): boolean => {
      if (!slot || t === 'Reroute') return true;
      const node = info[t];
      if (!node) return false;
      if ('output' in slot) return node.output.some((o) => LiteGraph.isValidConnection(o, slot.output));
      const specs = [...Object.values(node.input.required ?? {}), ...Object.values(node.input.optional ?? {})];
      return specs.some(([type]) => typeof type === 'string' && LiteGraph.isValidConnection(slot.input, type));
    };
    const types = Object.keys(LiteGraph.registered_node_types).filter(fits);
    return fuzzySearch(query, types, (t) => [t, info[t]?.display_name ?? t, `${info[t]?.category ?? ''}/${t}`], 30);
  }

  resize(): void {
    const parent = this.el.parentElement!;
    this.canvas.resize(parent.clientWidth, parent.clientHeight);
  }

  /** Replaces the node set (after reconnecting to a server whose object_info changed). */
  setObjectInfo(info: ObjectInfo): void {
    const wf = this.serialize();
    this.objectInfo = info;
    registerNodeTypes(info, this.onWidgetEdit);
    this.load(wf, { keepHistory: true });
  }

  serialize(): Workflow {
    return this.graph.serialize() as unknown as Workflow;
  }

  /** The snapshot last saved or opened: the workflow is "modified" while the present one differs. */
  private clean: string | null = null;

  get modified(): boolean {
    return this.clean !== null && this.history.present !== this.clean;
  }

  /** After saving (or opening): what is on the canvas now counts as unmodified. */
  markClean(): void {
    this.clean = this.history.present;
    this.rememberModified();
    this.onChange();
  }

  /** Kept across reloads as a flag: a reloaded graph serialises a little differently from the one saved. */
  private rememberModified(): void {
    try {
      localStorage.setItem(MODIFIED_KEY, this.modified ? '1' : '0');
    } catch {
      /* private mode */
    }
  }

  /**
   * Loads a UI workflow; unknown node types are kept (litegraph shows them as missing). `resume`: the autosaved
   * workflow of a previous visit, which keeps its modified state.
   */
  load(wf: Workflow, opts: { keepHistory?: boolean; resume?: boolean } = {}): void {
    this.landPending(); // an edit still being debounced is the step before the new graph, not part of it
    this.restoring = true;
    try {
      this.graph.configure(structuredClone(wf) as never);
      adoptPrimitives(this.graph);
      this.settleLayout();
      const ds = (wf.extra as { ds?: { scale: number; offset: [number, number] } } | undefined)?.ds;
      if (ds) {
        this.canvas.ds.scale = ds.scale;
        this.canvas.ds.offset = [ds.offset[0], ds.offset[1]];
      }
    } finally {
      this.restoring = false;
    }
    runtime.errors.clear();
    runtime.images.clear();
    runtime.progress.clear();
    runtime.clearPreviews();
    const snap = snapshotOf(this.serialize());
    if (opts.keepHistory) this.history.record(snap);
    else this.history.reset(snap);
    if (opts.resume && localStorage.getItem(MODIFIED_KEY) === '1')
      this.clean = ''; // modified before the reload
    else this.markClean();
    this.save();
    this.canvas.setDirty(true, true);
    this.onChange();
  }

  /** The autosaved workflow from a previous visit, if any. */
  static restore(): Workflow | null {
    try {
      const raw = localStorage.getItem(AUTOSAVE_KEY);
      return raw ? (JSON.parse(raw) as Workflow) : null;
    } catch {
      return null;
    }
  }

  private lastSaved = '';

  save(wf: Workflow = this.serialize()): void {
    const text = JSON.stringify(wf);
    if (text === this.lastSaved) return;
    this.lastSaved = text;
    try {
      localStorage.setItem(AUTOSAVE_KEY, text);
    } catch {
      /* quota: keep working */
    }
  }

  /** Widget callbacks: a typing burst in a textarea becomes one undo step, other edits one step each. */
  private readonly onWidgetEdit = (typing?: boolean) => this.scheduleCheckpoint(typing ? 500 : 30);

  scheduleCheckpoint(delay = 30): void {
    if (this.restoring) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      // litegraph reports changes on pointer-down and while dragging: the pointer-up records the gesture's end
      if (!this.pointerDown) this.checkpoint();
    }, delay);
  }

  /**
   * Lays nodes out as their next draw would (litegraph grows a node to fit its widgets when it draws it), so a
   * snapshot is what the canvas shows, and a first draw after loading or undoing changes nothing.
   */
  private settleLayout(): void {
    for (const node of this.graph._nodes) {
      if (node.flags?.collapsed) continue;
      node._setConcreteSlots();
      node.arrange();
    }
  }

  /** Records the current graph as an undo step (if it changed) and autosaves. */
  checkpoint(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.restoring) return;
    this.settleLayout();
    const wf = this.serialize();
    const changed = this.history.record(snapshotOf(wf));
    if (changed) this.rememberModified();
    this.save(wf); // also when only the viewport (extra.ds) moved
    if (changed) this.onChange();
  }

  undo(): void {
    this.landPending();
    this.restoreSnapshot(this.history.undo());
  }
  redo(): void {
    this.landPending();
    this.restoreSnapshot(this.history.redo());
  }

  private restoreSnapshot(snap: string | null): void {
    if (snap === null) return;
    const wf = JSON.parse(snap) as Workflow;
    // Snapshots list nodes by id; nodes on the canvas now keep their drawing order (z-order is no undo step).
    const z = new Map(this.graph._nodes.map((n, i) => [String(n.id), i]));
    const rank = (id: unknown) => z.get(String(id)) ?? z.size;
    wf.nodes.sort((a, b) => rank(a.id) - rank(b.id));
    const offset = [...this.canvas.ds.offset],
      scale = this.canvas.ds.scale;
    this.restoring = true;
    try {
      this.graph.configure(wf as never);
      adoptPrimitives(this.graph);
      this.settleLayout();
    } finally {
      this.restoring = false;
    }
    // History's present is what the graph serialises to now, so a later checkpoint (a click, a widget sync, a
    // debounced edit) finds no change that was never made and leaves the redo stack alone.
    this.history.replacePresent(snapshotOf(this.serialize()));
    this.canvas.ds.offset = offset as [number, number];
    this.canvas.ds.scale = scale;
    this.rememberModified();
    this.save();
    this.canvas.setDirty(true, true);
    this.onChange();
  }

  /** A pending debounced edit (typing) lands before undo, so undo reverts it rather than losing it. */
  private landPending(): void {
    if (this.timer) this.checkpoint();
  }

  selectedNodes(): LGraphNode[] {
    return Object.values(this.canvas.selected_nodes ?? {});
  }

  /** Ctrl+M / Ctrl+B: toggles mute or bypass on the selection. */
  toggleMode(mode: typeof MODE_NEVER | typeof MODE_BYPASS): void {
    const nodes = this.selectedNodes();
    if (!nodes.length) return;
    const allSet = nodes.every((n) => n.mode === mode);
    for (const n of nodes) n.mode = (allSet ? MODE_ALWAYS : mode) as never;
    this.canvas.setDirty(true, true);
    this.checkpoint();
  }

  /** control_after_generate: advances seed widgets after a successful queue (ComfyUI does it after queueing). */
  applySeedControls(): void {
    for (const node of this.graph._nodes) {
      const ws = node.widgets ?? [];
      ws.forEach((w, i) => {
        const next = ws[i + 1];
        if (next?.name !== CONTROL_WIDGET || !SEED_CONTROLS.includes(next.value as SeedControl)) return;
        const input = node.inputs.find((s) => s.name === w.name);
        if (input?.link != null) return; // driven by a link: leave it
        const o = w.options as { min?: number; max?: number };
        w.value = nextSeed(Number(w.value), next.value as SeedControl, { min: o.min, max: o.max }) as never;
      });
    }
    this.canvas.setDirty(true, true);
    this.checkpoint();
  }

  /** A dropped file (a client point) or pasted image (no point): see image-drop.ts. Returns an error or null. */
  dropFile(file: File, at?: [number, number]): Promise<string | null> {
    return dropFile(this, file, at);
  }

  /**
   * New lists from the server (uploads, models added): combos on the canvas offer them at once, and nodes added
   * later are built from the new object_info; values already chosen are kept.
   */
  refreshLists(info: ObjectInfo): void {
    this.objectInfo = info;
    registerNodeTypes(info, this.onWidgetEdit);
    for (const node of this.graph._nodes) {
      const described = info[node.type ?? ''] ? describeInputs(info[node.type ?? '']) : [];
      for (const d of described) {
        if (d.widget?.kind !== 'combo') continue;
        const w = node.widgets?.find((x) => x.name === d.name);
        if (w) (w.options as { values?: unknown[] }).values = [...(d.widget.options ?? [])];
      }
    }
    this.canvas.setDirty(true, true);
    this.onChange();
  }

  /**
   * Adds the loader node for a model file (dropped from the model library at a client point, or the view's centre).
   * @example editor.addModelLoader('checkpoints', 'sd_xl_base_1.0.safetensors', [400, 300]);
   */
  addModelLoader(folder: string, file: string, at?: [number, number]): LGraphNode | null {
    const loader = loaderFor(folder, file, this.objectInfo);
    if (!loader) return null;
    return this.addNode(loader.type, at, (node) => {
      const w = node.widgets?.find((x) => x.name === loader.input);
      if (w) w.value = file as never;
    });
  }

  /** Adds a node of `type` at a client point, or at the view's centre; one undo step. */
  addNode(type: string, at?: [number, number], init?: (node: LGraphNode) => void): LGraphNode | null {
    const node = LiteGraph.createNode(type);
    if (!node) return null;
    init?.(node);
    const [cx, cy] = this.canvas.ds.convertCanvasToOffset([this.el.clientWidth / 2, this.el.clientHeight / 2]);
    const pos = at ? this.toGraph(at) : [cx - node.size[0] / 2, cy - node.size[1] / 2];
    node.pos = [pos[0], pos[1]];
    this.restoring = true;
    try {
      this.graph.add(node);
    } finally {
      this.restoring = false;
    }
    this.canvas.selectItems([node]);
    this.checkpoint();
    return node;
  }

  /** The graph-space box around all nodes (title bars included), or null for an empty graph. */
  private nodeBounds(): [number, number, number, number] | null {
    const nodes = this.graph._nodes;
    if (!nodes.length) return null;
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const n of nodes) {
      x0 = Math.min(x0, n.pos[0]);
      y0 = Math.min(y0, n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT);
      x1 = Math.max(x1, n.pos[0] + n.size[0]);
      y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    return [x0, y0, x1, y1];
  }

  /** Fits the whole graph into the view (the `.` key), at most at 100% and at least at `minScale`. */
  fitView(minScale = 0): void {
    const box = this.nodeBounds();
    if (!box) return;
    const [x0, y0, x1, y1] = box;
    const pad = 40,
      w = this.el.clientWidth,
      h = this.el.clientHeight;
    const fit = Math.min(1, (w - 2 * pad) / Math.max(1, x1 - x0), (h - 2 * pad) / Math.max(1, y1 - y0));
    const scale = Math.max(minScale, fit);
    this.canvas.ds.scale = scale;
    this.canvas.ds.offset = [(w / scale - (x1 - x0)) / 2 - x0, (h / scale - (y1 - y0)) / 2 - y0];
    this.canvas.setDirty(true, true);
    this.scheduleCheckpoint();
  }

  /**
   * The first view of a graph: when some node lies outside the canvas at the stored zoom (a window narrower than
   * the one the graph was laid out for), fits it, though never below the zoom at which litegraph stops drawing
   * widget text, nor above the stored zoom.
   */
  fitIfCut(): void {
    this.resize(); // the side panel may have appeared since the last resize
    const box = this.nodeBounds();
    if (!box) return;
    const [ax, ay] = this.canvas.ds.convertOffsetToCanvas([box[0], box[1]]);
    const [bx, by] = this.canvas.ds.convertOffsetToCanvas([box[2], box[3]]);
    if (ax >= 0 && ay >= 0 && bx <= this.el.clientWidth && by <= this.el.clientHeight) return;
    const stored = this.canvas.ds.scale;
    this.fitView(this.canvas.low_quality_zoom_threshold ?? 0.6);
    if (this.canvas.ds.scale > stored) this.canvas.ds.scale = stored;
  }

  /** Graph-space point of a client point. */
  toGraph([x, y]: [number, number]): [number, number] {
    const r = this.el.getBoundingClientRect();
    const p = this.canvas.ds.convertCanvasToOffset([x - r.left, y - r.top]);
    return [p[0], p[1]];
  }

  /** Opens an API prompt as a graph (prompt-graph.ts), fitted to the view; returns the node types left out. */
  loadPrompt(prompt: ApiPrompt): string[] {
    const { workflow, unknown } = promptToWorkflow(prompt);
    this.load(workflow, { keepHistory: true });
    this.fitView(this.canvas.low_quality_zoom_threshold);
    return unknown;
  }

  /** Loads a dropped or opened file: workflow JSON, or a PNG carrying one. Returns an error message or null. */
  async loadFile(file: File): Promise<string | null> {
    const bytes = new Uint8Array(await file.arrayBuffer());
    let note: string | null = null;
    try {
      const png = bytes[0] === 0x89 && bytes[1] === 0x50;
      const text = png ? readPngText(bytes) : null;
      // a PNG carries the UI workflow, or only the API prompt when it was queued without one (ComfyUI opens both)
      const data: unknown = JSON.parse(
        png ? (text!.workflow ?? text!.prompt ?? 'null') : new TextDecoder().decode(bytes),
      );
      if (Array.isArray((data as { nodes?: unknown } | null)?.nodes))
        this.load(data as Workflow, { keepHistory: true });
      else if (isApiPrompt(data)) {
        const unknown = this.loadPrompt(data);
        if (unknown.length) note = `${file.name}: no such node type here, left out: ${unknown.join(', ')}`;
      } else return png ? `${file.name} carries no workflow` : `${file.name} is neither a workflow nor an API prompt`;
      this.onFileOpened(file.name.replace(/\.(json|png)$/i, ''));
      return note;
    } catch (e) {
      return `${file.name}: ${(e as Error).message}`;
    }
  }

  private onKey(e: KeyboardEvent): void {
    const t = e.target as HTMLElement | null;
    const typing = t && (t.localName === 'input' || t.localName === 'textarea' || t.isContentEditable);
    const mod = e.ctrlKey || e.metaKey;
    if (mod && e.key === 'Enter') {
      e.preventDefault();
      this.onQueueShortcut(e.shiftKey);
      return;
    }
    if (mod && (e.key === 's' || e.key === 'S')) {
      e.preventDefault();
      e.stopPropagation();
      this.onSaveShortcut();
      return;
    }
    if (typing) return;
    if (!mod && !e.altKey) {
      if (e.key === 'r' || e.key === 'R') this.onRefreshShortcut();
      else if (e.key === '.') this.fitView();
      return;
    }
    if (!mod) return;
    const key = e.key.toLowerCase();
    if (key === 'z' && !e.shiftKey) {
      e.preventDefault();
      this.undo();
    } else if (key === 'y' || (key === 'z' && e.shiftKey)) {
      e.preventDefault();
      this.redo();
    } else if (key === 'm') {
      e.preventDefault();
      this.toggleMode(MODE_NEVER);
    } else if (key === 'b') {
      e.preventDefault();
      this.toggleMode(MODE_BYPASS);
    } else if (t !== this.el && key === 'c') {
      this.canvas.copyToClipboard();
    } else if (t !== this.el && key === 'v') {
      this.canvas.pasteFromClipboard({ connectInputs: e.shiftKey });
      this.checkpoint();
    } else return;
    e.stopPropagation();
  }

  /** Client coordinates of a graph-space point (tests drive the mouse with it). */
  toClient([x, y]: [number, number]): [number, number] {
    const r = this.el.getBoundingClientRect();
    const [cx, cy] = this.canvas.ds.convertOffsetToCanvas([x, y]);
    return [r.left + cx, r.top + cy];
  }

  nodeById(id: string | number): LGraphNode | null {
    return this.graph.getNodeById(id as never) ?? null;
  }
}
