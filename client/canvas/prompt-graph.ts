// An API-format prompt (what POST /prompt takes, what "Export (API)" writes) opened as a graph, as ComfyUI opens such
// files: one node per entry with its widget values and links, laid out in columns by depth. The node ids are kept, so
// errors the server names by id point at the right node.
import { LGraph, LiteGraph, type LGraphNode } from '@comfyorg/litegraph';
import type { ApiPrompt, Workflow } from '../graph/types.js';

/** `data` looks like an API prompt: an object of {class_type, inputs} entries. */
export function isApiPrompt(data: unknown): data is ApiPrompt {
  if (!data || typeof data !== 'object' || Array.isArray(data)) return false;
  const entries = Object.values(data as Record<string, unknown>);
  return (
    entries.length > 0 &&
    entries.every((e) => {
      const entry = e as { class_type?: unknown; inputs?: unknown } | null;
      return typeof entry?.class_type === 'string' && typeof entry.inputs === 'object' && entry.inputs !== null;
    })
  );
}

const isLink = (v: unknown): v is [string | number, number] =>
  Array.isArray(v) &&
  v.length === 2 &&
  (typeof v[0] === 'string' || typeof v[0] === 'number') &&
  typeof v[1] === 'number';

/**
 * Builds the UI workflow of an API prompt over the registered node types. Unknown class types are reported, not
 * guessed at.
 * @example const { workflow, unknown } = promptToWorkflow(JSON.parse(text)); editor.load(workflow);
 */
export function promptToWorkflow(prompt: ApiPrompt): { workflow: Workflow; unknown: string[] } {
  const graph = new LGraph();
  const nodes = new Map<string, LGraphNode>();
  const unknown: string[] = [];
  for (const [id, entry] of Object.entries(prompt)) {
    const node = LiteGraph.createNode(entry.class_type);
    if (!node) {
      unknown.push(`#${id} ${entry.class_type}`);
      continue;
    }
    if (/^\d+$/.test(id)) node.id = Number(id);
    const title = (entry as { _meta?: { title?: string } })._meta?.title;
    if (title) node.title = title;
    graph.add(node);
    nodes.set(id, node);
  }
  for (const [id, entry] of Object.entries(prompt)) {
    const node = nodes.get(id);
    if (!node) continue;
    for (const [name, value] of Object.entries(entry.inputs ?? {})) {
      if (isLink(value)) {
        const from = nodes.get(String(value[0]));
        const slot = node.findInputSlot(name);
        if (from && slot >= 0) from.connect(value[1], node, slot);
        continue;
      }
      const widget = node.widgets?.find((w) => w.name === name);
      if (widget) widget.value = value as never;
    }
  }
  layOut(graph, prompt, nodes);
  return { workflow: graph.serialize() as unknown as Workflow, unknown };
}

/** Columns by depth (a node right of everything it reads from), nodes stacked top to bottom in each. */
function layOut(graph: LGraph, prompt: ApiPrompt, nodes: Map<string, LGraphNode>): void {
  const depth = new Map<string, number>();
  const depthOf = (id: string, seen = new Set<string>()): number => {
    if (depth.has(id)) return depth.get(id)!;
    if (seen.has(id)) return 0; // a cycle: the server will say so
    seen.add(id);
    const sources = Object.values(prompt[id]?.inputs ?? {})
      .filter(isLink)
      .map((l) => String(l[0]))
      .filter((s) => nodes.has(s));
    const d = sources.length ? 1 + Math.max(...sources.map((s) => depthOf(s, seen))) : 0;
    depth.set(id, d);
    return d;
  };
  const columns: LGraphNode[][] = [];
  for (const id of nodes.keys()) (columns[depthOf(id)] ??= []).push(nodes.get(id)!);
  let x = 0;
  for (const column of columns) {
    if (!column) continue;
    let y = LiteGraph.NODE_TITLE_HEIGHT;
    for (const node of column) {
      node.pos = [x, y];
      y += node.size[1] + LiteGraph.NODE_TITLE_HEIGHT + 30;
    }
    x += Math.max(...column.map((n) => n.size[0])) + 50;
  }
  graph.setDirtyCanvas(true, true);
}
