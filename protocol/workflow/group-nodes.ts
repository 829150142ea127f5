/**
 * ComfyUI's legacy group nodes: a node of type `workflow/NAME` (or `workflow>NAME`, frontend >= 1.2.63) stands for
 * the nodes stored in the workflow's `extra.groupNodes[NAME]` ({nodes, links: [from, slot, to, slot, id, type],
 * external: [node, slot, type]}). Expanding replaces each instance by its inner nodes, with ids `INSTANCE:INDEX`
 * (the ids ComfyUI's frontend sends), so the converter sees a flat graph. The instance's layout follows ComfyUI's
 * frontend: its widgets are the inner nodes' unconverted widgets in order (a seed with its control companion, an
 * upload button after an image picker, a linked PrimitiveNode's value with its control), its input slots the inner
 * sockets not linked inside (per node, then the converted widgets of all nodes), its outputs every inner output not
 * used only inside. Reroutes used only inside take no slots. Pure: no Node or DOM imports.
 */
import {
  WorkflowConversionError,
  type ClassSchema,
  type SchemaLookup,
  type UiLink,
  type UiNode,
  type UiWorkflow,
} from './ui-to-api.js';

type GroupLink = [number, number, number, number, unknown?, string?];
interface SlotConfig {
  name?: string;
  visible?: boolean;
}
interface GroupDef {
  nodes: UiNode[];
  links?: GroupLink[];
  external?: [number, number, string][];
  config?: Record<string, { input?: Record<string, SlotConfig>; output?: Record<string, SlotConfig> }>;
}

const GROUP_TYPE = /^workflow[/>](.+)$/;
const SEEDS = new Set(['seed', 'noise_seed']);

export function isGroupNodeType(type: string): boolean {
  return GROUP_TYPE.test(type);
}

function linkParts(l: UiLink): {
  id: number;
  origin: string;
  slot: number;
  target: string;
  tslot: number;
  type: string;
} {
  if (Array.isArray(l))
    return {
      id: Number(l[0]),
      origin: String(l[1]),
      slot: Number(l[2]),
      target: String(l[3]),
      tslot: Number(l[4]),
      type: String(l[5]),
    };
  return {
    id: Number(l.id),
    origin: String(l.origin_id),
    slot: Number(l.origin_slot),
    target: String(l.target_id),
    tslot: Number(l.target_slot),
    type: String(l.type),
  };
}

/**
 * A stored definition as expandOne reads it: lists that are not lists read as empty, malformed links and slots as
 * unlinked placeholders (slots keep their positions, which links refer to). A damaged workflow then gets a
 * conversion error that names the group node, never a TypeError.
 */
function wellFormed(g: UiNode, def: GroupDef): GroupDef {
  const list = <T>(v: unknown): T[] => (Array.isArray(v) ? v : []);
  const slot = <T>(x: T | null | undefined, empty: T): T => (x && typeof x === 'object' ? x : empty);
  const nodes = list<UiNode>(def.nodes).map((n) => {
    if (!n || typeof n !== 'object' || typeof n.type !== 'string')
      throw new WorkflowConversionError(`group node ${g.type} (node id ${g.id}) holds a node without a type`);
    const inputs = list<NonNullable<UiNode['inputs']>[number]>(n.inputs).map((x) =>
      slot(x, { name: '', type: '*', link: null }),
    );
    const outputs = list<NonNullable<UiNode['outputs']>[number]>(n.outputs).map((x) =>
      slot(x, { name: '', type: '*' }),
    );
    return { ...n, inputs, outputs };
  });
  return {
    ...def,
    nodes,
    links: list<GroupLink>(def.links).filter((l) => Array.isArray(l)),
    external: list<[number, number, string]>(def.external).filter((l) => Array.isArray(l)),
  };
}

/** One instance expanded: its inner nodes, the links between them, and where its outputs come from. */
function expandOne(g: UiNode, stored: GroupDef, lookup: SchemaLookup, nextLinkId: () => number, strict: boolean) {
  const def = wellFormed(g, stored);
  const inner = def.nodes;
  const linksTo = new Map<string, GroupLink>();
  const linksFrom = new Map<number, Set<number>>();
  for (const l of def.links ?? []) {
    if (!Array.isArray(l) || l[0] == null) continue;
    linksTo.set(`${l[2]}:${l[3]}`, l);
    if (!linksFrom.has(l[0])) linksFrom.set(l[0], new Set());
    linksFrom.get(l[0])!.add(l[1]);
  }
  const external = new Set((def.external ?? []).map(([n, s]) => `${n}:${s}`));
  const schemaOf = (n: UiNode): ClassSchema | undefined => lookup(n.type);
  const counted = (n: UiNode, i: number): boolean => {
    if (n.type === 'PrimitiveNode') return linksFrom.has(i);
    // a reroute linked on both sides inside the group is invisible from outside
    if (n.type === 'Reroute') return !(linksTo.has(`${i}:0`) && linksFrom.has(i) && !external.has(`${i}:0`));
    return !!schemaOf(n);
  };

  // widgets of the instance, in order
  const wv = Array.isArray(g.widgets_values) ? g.widgets_values : [];
  let w = 0;
  const innerValues: (unknown[] | undefined)[] = [];
  inner.forEach((n, i) => {
    if (n.type === 'PrimitiveNode') {
      if (!counted(n, i)) return;
      innerValues[i] = w < wv.length ? [wv[w]] : (n.widgets_values as unknown[] | undefined);
      w += 2; // value + its control_after_generate
      return;
    }
    const schema = schemaOf(n);
    if (!schema) return;
    const converted = new Set((n.inputs ?? []).map((x) => x.widget?.name).filter((x): x is string => !!x));
    const template = Array.isArray(n.widgets_values) ? n.widgets_values : [];
    let t = 0;
    const values: unknown[] = [];
    for (const input of schema.inputs) {
      if (!input.widget) continue;
      const companions = (input.controlAfterGenerate || SEEDS.has(input.name) ? 1 : 0) + (input.imageUpload ? 1 : 0);
      const own = template[t];
      t += 1 + (template.length > t + 1 && companions ? companions : 0);
      values.push(converted.has(input.name) || w >= wv.length ? own : wv[w]);
      if (!converted.has(input.name)) w += 1 + companions;
      if (input.controlAfterGenerate) values.push('fixed');
      if (input.imageUpload) values.push('image');
    }
    innerValues[i] = values;
  });

  // input slots of the instance: unlinked sockets per node, then unlinked converted widgets of every node
  const inputSlot = new Map<string, number>();
  let k = 0;
  const visible = (i: number, name: string) => def.config?.[i]?.input?.[name]?.visible !== false;
  for (const pass of ['socket', 'converted'] as const) {
    inner.forEach((n, i) => {
      if (!counted(n, i) || n.type === 'PrimitiveNode') return;
      (n.inputs ?? []).forEach((x, s) => {
        if (!!x.widget !== (pass === 'converted') || linksTo.has(`${i}:${s}`) || !visible(i, x.name)) return;
        inputSlot.set(`${i}:${s}`, k++);
      });
    });
  }

  // output slots of the instance
  const outputs: [number, number][] = [];
  inner.forEach((n, i) => {
    if (!counted(n, i)) return;
    const count = n.outputs?.length ?? (n.type === 'Reroute' ? 1 : 0);
    for (let o = 0; o < count; o++) {
      const usedInside = linksFrom.get(i)?.has(o) && !external.has(`${i}:${o}`);
      if (def.config?.[i]?.output?.[o]?.visible ?? !usedInside) outputs.push([i, o]);
    }
  });

  const id = (i: number) => `${g.id}:${i}`;
  const newLinks: UiLink[] = [];
  const nodes: UiNode[] = inner.map((n, i) => {
    const inputs = (n.inputs ?? []).map((x, s) => {
      const internal = linksTo.get(`${i}:${s}`);
      if (internal) {
        const lid = nextLinkId();
        newLinks.push([lid, id(internal[0]), internal[1], id(i), s, String(internal[5] ?? x.type)]);
        return { ...x, link: lid };
      }
      const slot = inputSlot.get(`${i}:${s}`);
      return { ...x, link: slot === undefined ? null : (g.inputs?.[slot]?.link ?? null) };
    });
    const mode = g.mode === 2 || g.mode === 4 ? g.mode : n.mode;
    return { ...n, id: id(i), mode, order: g.order, inputs, widgets_values: innerValues[i] ?? n.widgets_values };
  });
  if (strict && w < wv.length - 1) {
    // more widget values than the group's nodes take: the definition does not match this server's node classes
    throw new WorkflowConversionError(
      `group node ${g.type} (node id ${g.id}) has ${wv.length} widget values, its nodes take ${w}`,
    );
  }
  return { nodes, newLinks, outputs };
}

/**
 * The workflow with every group-node instance replaced by its inner nodes (nested groups too); the input is not
 * changed. Without group nodes the workflow itself is returned.
 */
export function expandGroupNodes(wf: UiWorkflow, lookup: SchemaLookup, strict: boolean): UiWorkflow {
  const defs = (wf.extra as { groupNodes?: Record<string, GroupDef> } | undefined)?.groupNodes ?? {};
  let nodes = Array.isArray(wf.nodes) ? wf.nodes : [];
  if (!nodes.some((n) => n && typeof n.type === 'string' && isGroupNodeType(n.type))) return wf;
  let links = (Array.isArray(wf.links) ? wf.links : []).filter(Boolean);
  let maxId = links.reduce((m, l) => Math.max(m, linkParts(l).id || 0), 0);
  const nextLinkId = () => ++maxId;
  for (let depth = 0; depth < 8 && nodes.some((n) => n && isGroupNodeType(String(n.type))); depth++) {
    const out: UiNode[] = [];
    const rewire = new Map<string, [string, number]>(); // "instance:slot" -> inner producer
    for (const n of nodes) {
      const m = n && typeof n.type === 'string' ? GROUP_TYPE.exec(n.type) : null;
      if (!m) {
        out.push(n);
        continue;
      }
      const def = Object.prototype.hasOwnProperty.call(defs, m[1]) ? defs[m[1]] : undefined;
      if (!def || !Array.isArray(def.nodes)) {
        if (strict)
          throw new WorkflowConversionError(
            `group node ${n.type} (node id ${n.id}) is not defined in the workflow's extra.groupNodes`,
            'invalid_prompt',
            { node_id: String(n.id), class_type: n.type },
          );
        continue;
      }
      const e = expandOne(n, def, lookup, nextLinkId, strict);
      out.push(...e.nodes);
      links = links.concat(e.newLinks);
      e.outputs.forEach(([i, o], slot) => rewire.set(`${n.id}:${slot}`, [`${n.id}:${i}`, o]));
    }
    links = links.map((l) => {
      const p = linkParts(l);
      const to = rewire.get(`${p.origin}:${p.slot}`);
      return to ? [p.id, to[0], to[1], p.target, p.tslot, p.type] : l;
    });
    nodes = out;
  }
  return { ...wf, nodes, links };
}
