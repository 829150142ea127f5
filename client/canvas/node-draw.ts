// Per-node drawing on top of litegraph's: output images and live previews, error messages, mute/bypass tint.
import { LiteGraph, type LGraphNode } from '@comfyorg/litegraph';
import type { RuntimeState } from './runtime-state.js';

/** Where free space starts below a node's slots and widgets (node-local y). */
function contentTop(node: LGraphNode): number {
  const slotRows = Math.max(node.inputs.filter((i) => !i.widget).length, node.outputs.length);
  let y = slotRows * LiteGraph.NODE_SLOT_HEIGHT + 8;
  for (const w of node.widgets ?? []) y = Math.max(y, (w.y ?? 0) + LiteGraph.NODE_WIDGET_HEIGHT + 6);
  return y;
}

function drawImages(node: LGraphNode, ctx: CanvasRenderingContext2D, imgs: HTMLImageElement[]): void {
  const ready = imgs.filter((i) => i.complete && i.naturalWidth > 0);
  if (!ready.length) return;
  const top = contentTop(node);
  const [w, h] = [node.size[0], node.size[1] - top];
  if (h < 20) return;
  // Grid of equal cells; each image is fitted inside its cell keeping its aspect ratio.
  const cols = Math.ceil(Math.sqrt(ready.length));
  const rows = Math.ceil(ready.length / cols);
  const cw = w / cols,
    ch = h / rows;
  ready.forEach((img, i) => {
    const s = Math.min(cw / img.naturalWidth, ch / img.naturalHeight);
    const dw = img.naturalWidth * s,
      dh = img.naturalHeight * s;
    const x = (i % cols) * cw + (cw - dw) / 2;
    const y = top + Math.floor(i / cols) * ch + (ch - dh) / 2;
    ctx.drawImage(img, x, y, dw, dh);
  });
}

/**
 * Splits text into lines no wider than `width` (as `measure` says), breaking long tokens (paths, ids) too.
 * @example wrapText('a very long message', 60, (t) => t.length * 6) // ['a very', 'long', 'message']
 */
export function wrapText(text: string, width: number, measure: (t: string) => number): string[] {
  const lines: string[] = [];
  for (const para of text.split('\n')) {
    let line = '';
    for (const word of para.split(/(\s+)/)) {
      if (measure(line + word) <= width) {
        line += word;
        continue;
      }
      if (line.trim()) lines.push(line.trimEnd());
      line = word.trimStart();
      while (measure(line) > width && line.length > 1) {
        let cut = line.length - 1;
        while (cut > 1 && measure(line.slice(0, cut)) > width) cut--;
        lines.push(line.slice(0, cut));
        line = line.slice(cut);
      }
    }
    if (line.trim() || !lines.length) lines.push(line.trimEnd());
  }
  return lines;
}

function drawError(
  node: LGraphNode,
  ctx: CanvasRenderingContext2D,
  message: string,
  inputs: Record<string, string>,
  belowPreview: boolean,
): void {
  ctx.save();
  ctx.font = '12px sans-serif';
  ctx.fillStyle = '#ff6b6b';
  const texts = [message, ...Object.entries(inputs).map(([k, v]) => `${k}: ${v}`)].filter(Boolean);
  // Wrapped to the node's width, below the node (and below a live preview panel there).
  const lines = texts.flatMap((t) => wrapText(t, node.size[0] - 4, (x) => ctx.measureText(x).width)).slice(0, 12);
  const [, py, , ph] = previewRect(node);
  const below = belowPreview && py >= node.size[1] ? py + ph : node.size[1];
  lines.forEach((line, i) => ctx.fillText(line, 2, below + 18 + i * 15));
  // Mark offending inputs next to their slot or widget.
  for (const name of Object.keys(inputs)) {
    const slot = node.inputs.findIndex((s) => s.name === name);
    const widget = node.widgets?.find((w) => w.name === name);
    const y = widget
      ? (widget.y ?? 0) + LiteGraph.NODE_WIDGET_HEIGHT / 2
      : slot >= 0
        ? (slot + 0.5) * LiteGraph.NODE_SLOT_HEIGHT
        : null;
    if (y === null) continue;
    ctx.beginPath();
    ctx.arc(-10, y, 5, 0, Math.PI * 2);
    ctx.fill();
  }
  ctx.restore();
}

/** Smallest side of a live preview, in graph units (the latent2rgb frame is 1/8 of the image). */
export const PREVIEW_MIN = 256;

/**
 * Where a node's live preview goes (node-local [x, y, w, h]): the free space below its widgets when the node is
 * tall enough, else a panel reserved right below the node, as wide as the node and at least PREVIEW_MIN.
 * @example const [x, y, w, h] = previewRect(sampler); // [0, 300, 315, 315] for a 315x290 sampler
 */
export function previewRect(node: LGraphNode): [number, number, number, number] {
  const top = contentTop(node);
  const inside = node.size[1] - top;
  if (inside >= PREVIEW_MIN) return [0, top, node.size[0], inside];
  const side = Math.max(PREVIEW_MIN, node.size[0]);
  return [0, node.size[1] + 8, side, side];
}

function drawPreview(
  node: LGraphNode,
  ctx: CanvasRenderingContext2D,
  img: HTMLImageElement,
  progress: number | undefined,
): void {
  const [x, y, w, h] = previewRect(node);
  ctx.save();
  ctx.fillStyle = '#111';
  ctx.strokeStyle = '#2ecc40';
  ctx.lineWidth = 2;
  ctx.fillRect(x, y, w, h);
  ctx.strokeRect(x, y, w, h);
  // The frame is latent-sized (1/8 of the image): smooth upscaling reads better than blocky pixels.
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  const s = Math.min(w / img.naturalWidth, (h - 18) / img.naturalHeight);
  const dw = img.naturalWidth * s,
    dh = img.naturalHeight * s;
  ctx.drawImage(img, x + (w - dw) / 2, y + 18 + (h - 18 - dh) / 2, dw, dh);
  ctx.fillStyle = '#cfc';
  ctx.font = '12px sans-serif';
  ctx.fillText(`live preview${progress != null ? ` · ${Math.round(progress * 100)}%` : ''}`, x + 6, y + 13);
  ctx.restore();
}

/** Called from each node's onDrawForeground. */
export function drawNodeExtras(node: LGraphNode, ctx: CanvasRenderingContext2D, state: RuntimeState): void {
  const id = String(node.id);
  if (node.flags?.collapsed) return;
  const imgs = state.images.get(id);
  if (imgs) drawImages(node, ctx, imgs);
  const preview = state.previews.get(id);
  if (preview) drawPreview(node, ctx, preview, state.progress.get(id));
  const err = state.errors.get(id);
  if (err) drawError(node, ctx, err.message, err.inputs, state.previews.has(id));
  if (node.mode === 2 || node.mode === 4) {
    ctx.save();
    ctx.fillStyle = node.mode === 4 ? 'rgba(160, 60, 200, 0.35)' : 'rgba(20, 20, 20, 0.55)';
    ctx.fillRect(0, -LiteGraph.NODE_TITLE_HEIGHT, node.size[0], node.size[1] + LiteGraph.NODE_TITLE_HEIGHT);
    ctx.fillStyle = '#ddd';
    ctx.font = 'bold 12px sans-serif';
    ctx.fillText(node.mode === 4 ? 'BYPASSED' : 'MUTED', node.size[0] - 80, -8);
    ctx.restore();
  }
}
