/**
 * UI-format workflow (litegraph, version 0.4) to API-format prompt: the one converter behind both the server
 * (server/workflow/convert.ts, over node definitions) and the editor (client/graph/to-api.ts, over object_info).
 * Muted nodes (mode 2) vanish and links from them are dropped; bypassed nodes (mode 4) hand an input of the link's
 * type through; Reroute, PrimitiveNode, notes and other frontend-only nodes are resolved away; a widget converted to
 * an input takes its link (or the primitive's value); `widgets_values` is read positionally over the widget inputs,
 * skipping the frontend-only companions (a seed's control_after_generate, an image upload button).
 * Pure and dependency-free: no Node or DOM imports, so Vite bundles it into the client.
 */

import { expandGroupNodes } from './group-nodes.js';

/** One input of a node class, in the node's input order (the order widgets_values follows). */
export interface SchemaInput {
  name: string;
  /** edited by a widget, so it takes a widgets_values slot (a link may still feed it) */
  widget: boolean;
  /** a seed's frontend-only control value (fixed/increment/...) may follow it in widgets_values */
  controlAfterGenerate?: boolean;
  /** an image picker's upload button value ('image', 'upload' or null) may follow it in widgets_values */
  imageUpload?: boolean;
}

/** What conversion needs to know about a node class. */
export interface ClassSchema {
  displayName?: string;
  inputs: SchemaInput[];
}

/** Looks a node class up by its type; undefined when the class is unknown. */
export type SchemaLookup = (classType: string) => ClassSchema | undefined;

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
export type UiLink =
  | [number, number | string, number, number | string, number, string]
  | {
      id: number;
      origin_id: number | string;
      origin_slot: number;
      target_id: number | string;
      target_slot: number;
      type: string;
    };
export interface UiWorkflow {
  nodes: UiNode[];
  links: UiLink[];
  [k: string]: unknown;
}

export interface ApiPromptNode {
  class_type: string;
  inputs: Record<string, unknown>;
  _meta: { title: string };
}
export type ApiPromptOut = Record<string, ApiPromptNode>;

export class WorkflowConversionError extends Error {
  constructor(
    message: string,
    readonly type = 'invalid_prompt',
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'WorkflowConversionError';
  }
}

export interface ConvertOptions {
  /**
   * true (the server): throw WorkflowConversionError on malformed nodes, unknown classes, links from missing nodes
   * and loops through reroutes or bypassed nodes, and send only the inputs the class declares.
   * false (the editor): skip what cannot be converted and let linked inputs the class does not declare travel
   * (unknown classes, dynamic inputs), so the server judges them.
   */
  strict: boolean;
  /** refuse (strict) workflows with more nodes than this */
  maxNodes?: number;
}

export const MODE_MUTED = 2;
export const MODE_BYPASS = 4;
const PRIMITIVES = new Set(['PrimitiveNode', 'PrimitiveString', 'PrimitiveInt']);
const FRONTEND_ONLY = new Set(['Reroute', 'Note', 'MarkdownNote', ...PRIMITIVES]);
const CONTROL_VALUES = new Set(['fixed', 'increment', 'decrement', 'randomize']);

type UiInput = NonNullable<UiNode['inputs']>[number];
interface LinkInfo {
  originId: string;
  originSlot: number;
  type: string;
}
/** What an input receives: a link into the prompt, a literal (from a primitive), or nothing. */
type Resolved = { link: [string, number] } | { value: unknown } | null;

function readLink(l: UiLink): [number, LinkInfo] {
  if (Array.isArray(l)) return [Number(l[0]), { originId: String(l[1]), originSlot: Number(l[2]), type: String(l[5]) }];
  return [Number(l.id), { originId: String(l.origin_id), originSlot: Number(l.origin_slot), type: String(l.type) }];
}

/** ComfyUI's loose type match: '*' or empty on either side, or comma-separated unions that overlap. */
function typesMatch(a: unknown, b: unknown): boolean {
  const x = String(a ?? ''),
    y = String(b ?? '');
  if (x === '*' || y === '*' || x === '' || y === '') return true;
  const ys = y.split(',');
  return x.split(',').some((t) => ys.includes(t));
}

const hasOwn = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

/** A primitive node's value: its first widget value, or undefined when it holds none. */
function primitiveValue(wv: UiNode['widgets_values']): unknown {
  if (Array.isArray(wv)) return wv[0];
  return wv && typeof wv === 'object' ? Object.values(wv)[0] : undefined;
}

/**
 * Widget values by input name. Positional arrays skip the frontend-only companions when present, so workflows
 * saved without them still map; object-shaped widgets_values (some tools) are read by name.
 */
export function widgetValues(inputs: SchemaInput[], wv: UiNode['widgets_values']): Map<string, unknown> {
  const out = new Map<string, unknown>();
  if (Array.isArray(wv)) {
    // ComfyUI's frontend saves every companion, whatever its value (older versions saved a seed's as `true`): when
    // the array is long enough to hold them all, each is skipped by position; a shorter array (saved without them)
    // skips only values that can only be a companion
    const widgets = inputs.filter((x) => x.widget);
    const companions =
      widgets.filter((x) => x.controlAfterGenerate).length + widgets.filter((x) => x.imageUpload).length;
    const allPresent = companions > 0 && wv.length >= widgets.length + companions;
    let i = 0;
    for (const input of widgets) {
      if (i >= wv.length) break;
      out.set(input.name, wv[i++]);
      if (
        input.controlAfterGenerate &&
        (allPresent || (typeof wv[i] === 'string' && CONTROL_VALUES.has(wv[i] as string)))
      )
        i++;
      if (input.imageUpload && (allPresent || wv[i] === 'image' || wv[i] === 'upload' || wv[i] === null)) i++;
    }
  } else if (wv && typeof wv === 'object') {
    for (const input of inputs)
      if (input.widget && hasOwn(wv, input.name)) out.set(input.name, (wv as Record<string, unknown>)[input.name]);
  }
  return out;
}

/** Array literals are wrapped so the server does not mistake them for links. */
function wrap(value: unknown): unknown {
  return Array.isArray(value) ? { __value__: value } : value;
}

/**
 * Converts a UI-format workflow to an API prompt over a schema of node classes.
 * @example const prompt = uiWorkflowToPrompt(wf, (t) => ({ inputs: [{ name: 'seed', widget: true, controlAfterGenerate: true }] }), { strict: false });
 *          // prompt['3'] -> { class_type: 'KSampler', inputs: { seed: 5, model: ['4', 0], ... }, _meta: { title: 'KSampler' } }
 */
export function uiWorkflowToPrompt(
  workflow: UiWorkflow,
  lookup: SchemaLookup,
  { strict, maxNodes }: ConvertOptions,
): ApiPromptOut {
  const wf = expandGroupNodes(workflow, lookup, strict);
  const count = Array.isArray(wf.nodes) ? wf.nodes.length : 0;
  if (strict && maxNodes !== undefined && count > maxNodes) {
    throw new WorkflowConversionError(
      `workflow has ${count} nodes; at most ${maxNodes} are accepted`,
      'invalid_prompt',
      { node_count: count, max_nodes: maxNodes },
    );
  }
  const nodes = new Map<string, UiNode>();
  for (const raw of Array.isArray(wf.nodes) ? wf.nodes : []) {
    const bad =
      !raw || typeof raw !== 'object' || raw.id === undefined || raw.id === null || typeof raw.type !== 'string'
        ? 'workflow has a node without id or type'
        : String(raw.id) === '__proto__'
          ? 'node id __proto__ is reserved'
          : '';
    if (bad) {
      if (strict) throw new WorkflowConversionError(bad);
      continue;
    }
    // a hand-written or damaged workflow may hold anything here: keep only well-formed input slots
    const inputs = Array.isArray(raw.inputs)
      ? raw.inputs.filter((i) => !!i && typeof i === 'object' && typeof i.name === 'string')
      : [];
    nodes.set(String(raw.id), { ...raw, inputs });
  }
  const links = new Map<number, LinkInfo>();
  for (const l of Array.isArray(wf.links) ? wf.links : [])
    if (l) {
      const [id, info] = readLink(l);
      links.set(id, info);
    }

  // Follows a link back to a real producer, through reroutes and bypassed nodes. A link resolves the same wherever
  // it is met, so results are memoized (a Reroute chain feeding many inputs is walked once), the walk is a loop
  // (a chain may be thousands long), and meeting a link twice on one walk is a cycle.
  const memo = new Map<number, Resolved>();
  const resolve = (linkId: unknown): Resolved => {
    if (linkId == null) return null;
    const path: number[] = [];
    const onPath = new Set<number>();
    let result: Resolved = null;
    for (let cur: unknown = linkId; ;) {
      if (cur == null) {
        result = null;
        break;
      }
      const id = Number(cur);
      if (memo.has(id)) {
        result = memo.get(id)!;
        break;
      }
      const l = links.get(id);
      if (!l) {
        result = null;
        break;
      }
      const origin = nodes.get(l.originId);
      if (!origin) {
        if (strict)
          throw new WorkflowConversionError(
            `link ${cur} comes from node ${l.originId}, which is not in the workflow`,
            'bad_linked_input',
            { node_id: l.originId },
          );
        result = null;
        break;
      }
      if (onPath.has(id)) {
        if (strict)
          throw new WorkflowConversionError(
            'workflow links form a loop through reroute or bypassed nodes',
            'dependency_cycle',
          );
        result = null;
        break;
      }
      onPath.add(id);
      path.push(id);
      if (origin.mode === MODE_MUTED) {
        result = null;
        break;
      }
      if (origin.type === 'Reroute') {
        cur = origin.inputs?.[0]?.link;
        continue;
      }
      if (PRIMITIVES.has(origin.type)) {
        const value = primitiveValue(origin.widgets_values);
        result = value === undefined ? null : { value };
        break;
      }
      if (origin.mode === MODE_BYPASS) {
        // the same slot index when its type fits, else the first linked input of a matching type (ComfyUI's rule)
        const ins = origin.inputs ?? [];
        const same = ins[l.originSlot];
        const pick =
          same && same.link != null && typesMatch(same.type, l.type)
            ? same
            : ins.find((i) => i.link != null && typesMatch(i.type, l.type));
        if (!pick) {
          result = null;
          break;
        }
        cur = pick.link;
        continue;
      }
      result = { link: [l.originId, l.originSlot] };
      break;
    }
    for (const id of path) memo.set(id, result);
    return result;
  };

  const prompt: ApiPromptOut = {};
  const ordered = [...nodes.values()].sort((a, b) => (a.order ?? 0) - (b.order ?? 0));
  for (const n of ordered) {
    if (n.mode === MODE_MUTED || n.mode === MODE_BYPASS || FRONTEND_ONLY.has(n.type)) continue;
    const schema = lookup(n.type);
    if (!schema && strict)
      throw new WorkflowConversionError(
        `Node type ${n.type} (node id ${n.id}) is not known to this server`,
        'invalid_prompt',
        { node_id: String(n.id), class_type: n.type },
      );
    const slots = n.inputs ?? [];
    // first slot per name and per converted-widget name, so each schema input finds its slot in O(1)
    const byName = new Map<string, number>(),
      byWidget = new Map<string, number>();
    slots.forEach((s, i) => {
      if (!byName.has(s.name)) byName.set(s.name, i);
      const w = s.widget?.name;
      if (typeof w === 'string' && !byWidget.has(w)) byWidget.set(w, i);
    });
    const used = new Set<UiInput>();
    const inputs: Record<string, unknown> = {};
    if (schema) {
      const values = widgetValues(schema.inputs, n.widgets_values);
      for (const input of schema.inputs) {
        // a converted widget's slot may carry the widget's name in `widget.name` only
        const at = Math.min(byName.get(input.name) ?? Infinity, byWidget.get(input.name) ?? Infinity);
        const slot = at === Infinity ? undefined : slots[at];
        if (slot) used.add(slot);
        const r = slot ? resolve(slot.link) : null;
        if (r && 'link' in r) inputs[input.name] = r.link;
        else if (r) inputs[input.name] = wrap(r.value);
        // nothing linked, or linked from a muted node: the widget's own value, as ComfyUI's frontend sends it
        else if (input.widget && values.get(input.name) !== undefined)
          inputs[input.name] = wrap(values.get(input.name));
      }
    }
    if (!strict) {
      for (const s of slots) {
        if (used.has(s) || hasOwn(inputs, s.name) || s.name === '__proto__') continue;
        const r = resolve(s.link);
        if (r && 'link' in r) inputs[s.name] = r.link;
      }
    }
    prompt[String(n.id)] = { class_type: n.type, inputs, _meta: { title: n.title ?? schema?.displayName ?? n.type } };
  }
  return prompt;
}
