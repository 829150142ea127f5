/**
 * UI-format workflow (litegraph, version 0.4) to API-format prompt, on the server (ComfyUI only does this in its
 * frontend). Honours muted nodes (mode 2: dropped, links from them removed), bypassed nodes (mode 4: an input of
 * the link's type passes through), Reroute and PrimitiveNode (frontend-only nodes) and widgets converted to inputs.
 * `widgets_values` is positional over the node's widget inputs; a seed's control_after_generate value and an
 * image upload button occupy an extra slot that is never sent.
 */
import { isWidgetType, type InputSpec, type Registry } from '../executor/node-definition.js';
import type { Prompt } from '../executor/prompt.js';

export interface UiNode {
  id: number | string;
  type: string;
  mode?: number;
  title?: string;
  order?: number;
  inputs?: { name: string; type: string; link: number | null; widget?: { name: string } }[];
  outputs?: { name: string; type: string; links?: number[] | null; slot_index?: number }[];
  widgets_values?: unknown[] | Record<string, unknown>;
  properties?: Record<string, unknown>;
}
export type UiLink = [number, number | string, number, number | string, number, string] | { id: number; origin_id: number | string; origin_slot: number; target_id: number | string; target_slot: number; type: string };
export interface UiWorkflow { nodes: UiNode[]; links: UiLink[]; [k: string]: unknown }

export class WorkflowConversionError extends Error {
  constructor(message: string, readonly type = 'invalid_prompt', readonly extra: Record<string, unknown> = {}) { super(message); this.name = 'WorkflowConversionError'; }
}

export const MODE_MUTED = 2;
export const MODE_BYPASS = 4;
const VIRTUAL = new Set(['Reroute', 'PrimitiveNode', 'Note', 'MarkdownNote', 'PrimitiveString', 'PrimitiveInt']);
const CONTROL_VALUES = new Set(['fixed', 'increment', 'decrement', 'randomize']);

export function isUiWorkflow(v: unknown): v is UiWorkflow {
  return !!v && typeof v === 'object' && Array.isArray((v as UiWorkflow).nodes) && Array.isArray((v as UiWorkflow).links);
}

function linkTuple(l: UiLink): { id: number; originId: string; originSlot: number; type: string } {
  if (Array.isArray(l)) return { id: Number(l[0]), originId: String(l[1]), originSlot: Number(l[2]), type: String(l[5]) };
  return { id: Number(l.id), originId: String(l.origin_id), originSlot: Number(l.origin_slot), type: String(l.type) };
}

/** The widget inputs of a definition, in order, each with the number of widgets_values slots it takes. */
export function widgetSlots(inputs: InputSpec[]): { spec: InputSpec; slots: number }[] {
  return inputs.filter((s) => isWidgetType(s.type) && !s.options.forceInput)
    .map((spec) => ({ spec, slots: 1 + (spec.options.control_after_generate ? 1 : 0) + (spec.options.image_upload ? 1 : 0) }));
}

export function uiToApi<S>(wf: UiWorkflow, registry: Registry<S>): Prompt {
  const nodes = new Map<string, UiNode>();
  for (const raw of wf.nodes) {
    if (!raw || typeof raw !== 'object' || raw.id === undefined || raw.id === null || typeof raw.type !== 'string') throw new WorkflowConversionError('workflow has a node without id or type');
    if (String(raw.id) === '__proto__') throw new WorkflowConversionError('node id __proto__ is reserved');
    // a hand-written or damaged workflow may hold anything here: keep only well-formed input slots
    const inputs = Array.isArray(raw.inputs) ? raw.inputs.filter((i) => !!i && typeof i === 'object' && typeof i.name === 'string') : [];
    nodes.set(String(raw.id), { ...raw, inputs });
  }
  const links = new Map<number, ReturnType<typeof linkTuple>>();
  for (const l of wf.links) { if (l) { const t = linkTuple(l); links.set(t.id, t); } }

  /** Follow a link through reroutes and bypassed nodes to a real output, a constant, or nothing. */
  const resolve = (linkId: number, depth = 0): { link: [string, number] } | { value: unknown } | null => {
    if (depth > 64) throw new WorkflowConversionError('workflow links form a loop through reroute or bypassed nodes', 'dependency_cycle');
    const l = links.get(linkId);
    if (!l) return null;
    const origin = nodes.get(l.originId);
    if (!origin) throw new WorkflowConversionError(`link ${linkId} comes from node ${l.originId}, which is not in the workflow`, 'bad_linked_input', { node_id: l.originId });
    if (origin.mode === MODE_MUTED) return null;
    if (origin.type === 'Reroute') {
      const inLink = origin.inputs?.[0]?.link;
      return inLink == null ? null : resolve(inLink, depth + 1);
    }
    if (origin.type === 'PrimitiveNode' || origin.type === 'PrimitiveString' || origin.type === 'PrimitiveInt') {
      const wv = origin.widgets_values;
      return { value: Array.isArray(wv) ? wv[0] : wv ? Object.values(wv)[0] : undefined };
    }
    if (origin.mode === MODE_BYPASS) {
      const ins = origin.inputs ?? [];
      const same = ins[l.originSlot]?.type === l.type && ins[l.originSlot]?.link != null ? ins[l.originSlot] : ins.find((i) => i.link != null && (i.type === l.type || i.type === '*'));
      return same?.link == null ? null : resolve(same.link, depth + 1);
    }
    return { link: [String(origin.id), l.originSlot] };
  };

  const prompt: Prompt = {};
  const ordered = [...nodes.values()].sort((a, b) => (a.order ?? 0) - (b.order ?? 0));
  for (const n of ordered) {
    if (n.mode === MODE_MUTED || n.mode === MODE_BYPASS || VIRTUAL.has(n.type)) continue;
    const def = registry.get(n.type);
    if (!def) throw new WorkflowConversionError(`Node type ${n.type} (node id ${n.id}) is not known to this server`, 'invalid_prompt', { node_id: String(n.id), class_type: n.type });
    const inputs: Record<string, unknown> = {};
    const wv = n.widgets_values;
    let wi = 0;
    const uiInput = (name: string) => n.inputs?.find((i) => i.name === name || i.widget?.name === name);
    const slots = new Map(widgetSlots(def.inputs).map((w) => [w.spec.name, w.slots]));
    for (const spec of def.inputs) {
      const ui = uiInput(spec.name);
      if (slots.has(spec.name)) {
        let value: unknown;
        if (Array.isArray(wv)) {
          value = wv[wi];
          wi += 1;
          // control_after_generate and upload slots are frontend-only
          if (spec.options.control_after_generate && typeof wv[wi] === 'string' && CONTROL_VALUES.has(wv[wi] as string)) wi += 1;
          if (spec.options.image_upload && (wv[wi] === 'image' || wv[wi] === 'upload' || wv[wi] === null)) wi += 1;
        } else if (wv && typeof wv === 'object') value = (wv as Record<string, unknown>)[spec.name];
        if (ui?.link != null) {
          const r = resolve(ui.link);
          if (r && 'link' in r) { inputs[spec.name] = r.link; continue; }
          if (r && 'value' in r) { inputs[spec.name] = r.value; continue; }
          // a muted source leaves the widget's own value in force, as ComfyUI's frontend sends it
        }
        if (value !== undefined) inputs[spec.name] = Array.isArray(value) ? { __value__: value } : value;
        continue;
      }
      if (ui?.link != null) {
        const r = resolve(ui.link);
        if (r && 'link' in r) inputs[spec.name] = r.link;
        else if (r && 'value' in r) inputs[spec.name] = r.value;
      }
    }
    prompt[String(n.id)] = { class_type: n.type, inputs, _meta: { title: n.title ?? def.displayName } };
  }
  return prompt;
}
