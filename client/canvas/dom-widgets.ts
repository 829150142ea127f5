// Multiline STRING inputs as real <textarea>s laid over the canvas, as ComfyUI shows prompts: always editable in
// the node, every keystroke written to the widget value (so Ctrl+Enter queues what is on screen), native caret,
// selection, clipboard and IME. litegraph draws the node; the widget's draw() only moves its textarea to where the
// node is this frame, and the layer hides the textareas of nodes that were not drawn (off screen, collapsed,
// converted to an input) and drops those of nodes that left the graph. A textarea lies above the canvas, so the parts
// of it under nodes drawn later (one dragged over it, a new Primitive placed on it) are cut out of it.
import type { LGraph, LGraphNode } from '@comfyorg/litegraph';

const MARGIN = 10;

/** The textareas over one canvas. */
export class DomWidgetLayer {
  private readonly live = new Map<HTMLTextAreaElement, LGraphNode>();
  private drawn = new Set<HTMLTextAreaElement>();
  /** Graph-space rectangle [x, y, w, h] of each textarea drawn this frame. */
  private readonly rects = new Map<HTMLTextAreaElement, [number, number, number, number]>();
  /** The clip-path last set on each textarea. */
  private readonly clips = new Map<HTMLTextAreaElement, string>();

  constructor(
    readonly container: HTMLElement,
    readonly canvasEl: HTMLCanvasElement,
    readonly graph: LGraph,
  ) {}

  beginFrame(): void {
    this.drawn = new Set();
  }

  endFrame(): void {
    for (const [el, node] of this.live) {
      if (this.graph.getNodeById(node.id) !== node) {
        el.remove();
        this.live.delete(el);
        this.rects.delete(el);
        this.clips.delete(el);
      } else if (!this.drawn.has(el) && el.style.display !== 'none') {
        if (document.activeElement === el) el.blur();
        el.style.display = 'none';
      } else if (this.drawn.has(el)) {
        this.clip(el, node);
      }
    }
  }

  /** Cuts the parts covered by nodes drawn after `node` out of its textarea (CSS clip-path, even-odd holes). */
  private clip(el: HTMLTextAreaElement, node: LGraphNode): void {
    const [x, y, w, h] = this.rects.get(el)!;
    const nodes = this.graph._nodes;
    const holes: string[] = [];
    for (let i = nodes.indexOf(node) + 1; i < nodes.length; i++) {
      const [bx, by, bw, bh] = nodes[i].boundingRect;
      const x0 = Math.max(x, bx),
        y0 = Math.max(y, by),
        x1 = Math.min(x + w, bx + bw),
        y1 = Math.min(y + h, by + bh);
      if (x1 > x0 && y1 > y0) holes.push(`M${x0 - x} ${y0 - y}H${x1 - x}V${y1 - y}H${x0 - x}Z`);
    }
    // element-local units are graph units: the scale is the element's transform, applied after the clip
    const path = holes.length ? `path(evenodd, "M0 0H${w}V${h}H0Z${holes.join('')}")` : '';
    if (this.clips.get(el) === path) return; // (the browser re-serialises style values: compare what was set)
    this.clips.set(el, path);
    el.style.clipPath = path;
  }

  /** Puts `el` over the node-local rectangle (x, y, w, h) of the node being drawn with `ctx`. */
  place(
    el: HTMLTextAreaElement,
    node: LGraphNode,
    ctx: CanvasRenderingContext2D,
    rect: [number, number, number, number],
  ): void {
    if (!el.isConnected) this.container.appendChild(el);
    this.live.set(el, node);
    this.drawn.add(el);
    this.rects.set(el, [node.pos[0] + rect[0], node.pos[1] + rect[1], rect[2], rect[3]]);
    const t = ctx.getTransform();
    const dpr = this.canvasEl.width / Math.max(1, this.canvasEl.clientWidth);
    const scale = t.a / dpr;
    const [x, y, w, h] = rect;
    const left = (t.e + t.a * x) / dpr + this.canvasEl.offsetLeft;
    const top = (t.f + t.d * y) / dpr + this.canvasEl.offsetTop;
    el.style.display = '';
    el.style.width = `${w}px`;
    el.style.height = `${h}px`;
    el.style.transform = `translate(${left}px, ${top}px) scale(${scale})`;
    el.style.opacity = node.mode === 2 || node.mode === 4 ? '0.5' : '';
  }
}

let layer: DomWidgetLayer | null = null;

/** The editor sets the layer once its canvas exists. */
export function setDomWidgetLayer(l: DomWidgetLayer | null): void {
  layer = l;
}

/**
 * Adds a textarea widget for a multiline STRING input. `onEdit(true)` runs after each keystroke (the editor
 * records typing bursts as one undo step), so the graph always holds what the textarea shows.
 * @example addTextareaWidget(node, 'text', 'a red fox', (typing) => editor.scheduleCheckpoint(typing ? 400 : 30));
 */
export function addTextareaWidget(
  node: LGraphNode,
  name: string,
  initial: string,
  onEdit: (typing: boolean) => void,
): void {
  const el = document.createElement('textarea');
  el.className = 'node-textarea';
  el.spellcheck = false;
  el.dataset.input = name;
  el.setAttribute('aria-label', name);
  let value = initial;
  el.value = value;
  const widget = {
    type: 'customtext',
    name,
    y: 0,
    options: { multiline: true },
    element: el,
    get value() {
      return value;
    },
    // Loading, undo and paste set the value from outside: the textarea follows.
    set value(v: unknown) {
      value = v == null ? '' : String(v);
      if (el.value !== value) el.value = value;
    },
    computeLayoutSize: () => ({ minHeight: 60, minWidth: 200 }),
    draw(ctx: CanvasRenderingContext2D, n: LGraphNode, width: number, y: number) {
      const h = ((widget as { computedHeight?: number }).computedHeight ?? 60) - 4;
      el.dataset.node = String(n.id);
      layer?.place(el, n, ctx, [MARGIN, y, width - 2 * MARGIN, h]);
    },
  };
  el.addEventListener('input', () => {
    value = el.value;
    onEdit(true);
  });
  node.addCustomWidget(widget as never);
}
