// "Convert <widget> to input" / "Convert <widget> to widget", as ComfyUI's frontend offers them. Every widget already
// owns an input slot (`widget: {name}`); converting hides the widget and shows its slot as a labelled socket, so a
// link (e.g. from a Primitive node) can drive the value. The converted set is kept in node.properties, so it
// survives save, reload and undo. Converting back drops the link and shows the widget again.
import { LiteGraph, type LGraphNode } from '@comfyorg/litegraph';
import type { IContextMenuValue } from '@comfyorg/litegraph';

export const CONTROL_WIDGET = 'control_after_generate';
const PROP = 'converted_widgets';

type Menu = IContextMenuValue<unknown> | null;

/** Names of the node's widgets currently shown as input sockets. */
export function convertedWidgets(node: LGraphNode): string[] {
  const v = (node.properties as Record<string, unknown>)?.[PROP];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** Hides converted widgets (and a seed's control companion) and shows the rest. */
export function applyConverted(node: LGraphNode): void {
  const converted = new Set(convertedWidgets(node));
  const ws = node.widgets ?? [];
  ws.forEach((w, i) => {
    const isControl = w.name === CONTROL_WIDGET && i > 0;
    w.hidden = converted.has(isControl ? ws[i - 1].name : w.name);
    // A hidden seed control takes no row; the converted widget keeps its row for the labelled socket.
    const sized = w as { computeSize?: () => [number, number] };
    if (isControl && w.hidden) sized.computeSize = () => [0, -4];
    else if (isControl && Object.hasOwn(sized, 'computeSize')) delete sized.computeSize;
  });
  node.setDirtyCanvas(true, true);
}

/**
 * Turns a widget into a socket (`toInput`) or back into a widget.
 * @example setConverted(sampler, 'seed', true); // the seed row now is an INT input socket
 */
export function setConverted(node: LGraphNode, name: string, toInput: boolean): void {
  const set = new Set(convertedWidgets(node));
  if (toInput) set.add(name);
  else {
    set.delete(name);
    const slot = node.inputs.findIndex((s) => s.widget?.name === name);
    if (slot >= 0 && node.inputs[slot].link != null) node.disconnectInput(slot);
  }
  const props = node.properties as Record<string, unknown>;
  if (set.size) props[PROP] = [...set];
  else delete props[PROP];
  applyConverted(node);
  node.graph?.afterChange();
}

/** Widgets that may become inputs: those with a slot, not a seed's control companion. */
function convertible(node: LGraphNode): string[] {
  return (node.widgets ?? [])
    .filter((w) => w.name !== CONTROL_WIDGET && node.inputs.some((s) => s.widget?.name === w.name))
    .map((w) => w.name);
}

/**
 * Context-menu entries: a "Convert Widget to Input" submenu, and one "Convert <name> to widget" per converted input.
 * @example node.getExtraMenuOptions = () => widgetInputMenu(node);
 */
export function widgetInputMenu(node: LGraphNode): Menu[] {
  const converted = convertedWidgets(node);
  const open = convertible(node).filter((n) => !converted.includes(n));
  const items: Menu[] = [];
  if (open.length) {
    items.push({
      content: 'Convert Widget to Input',
      has_submenu: true,
      submenu: {
        options: open.map((name) => ({
          content: `Convert ${name} to input`,
          callback: () => setConverted(node, name, true),
        })),
      },
    });
  }
  for (const name of converted) {
    items.push({ content: `Convert ${name} to widget`, callback: () => setConverted(node, name, false) });
  }
  return items;
}

/** Draws each converted input's label and, while unlinked, its socket (litegraph draws linked ones). */
export function drawConvertedInputs(node: LGraphNode, ctx: CanvasRenderingContext2D): void {
  const converted = convertedWidgets(node);
  if (!converted.length || node.flags?.collapsed) return;
  ctx.save();
  ctx.font = '12px sans-serif';
  for (const name of converted) {
    const w = node.widgets?.find((x) => x.name === name);
    const slot = node.inputs.find((s) => s.widget?.name === name);
    if (!w || !slot) continue;
    const y = (w.y ?? 0) + LiteGraph.NODE_WIDGET_HEIGHT / 2;
    if (slot.link == null) {
      ctx.beginPath();
      ctx.arc(LiteGraph.NODE_SLOT_HEIGHT * 0.5, y, 4, 0, Math.PI * 2);
      ctx.strokeStyle = '#9ab';
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
    ctx.fillStyle = '#aab';
    ctx.textBaseline = 'middle';
    ctx.fillText(`${name}  (${slot.type})`, LiteGraph.NODE_SLOT_HEIGHT + 4, y);
  }
  ctx.restore();
}
