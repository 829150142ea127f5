// UI workflow (0.4) -> API prompt, as ComfyUI's frontend does it: muted nodes (mode 2) vanish, bypassed nodes
// (mode 4) hand their same-typed input through, frontend-only nodes (Note, Reroute, PrimitiveNode) are resolved away,
// and seed companion values (control_after_generate) are dropped. Framework-free: server code may import it.
import type { ApiPrompt, ObjectInfo, Workflow, WorkflowLink, WorkflowNode } from './types.js';
import { MODE_BYPASS, MODE_NEVER } from './types.js';
import { describeInputs, widgetValuesByName } from './widget-spec.js';

/** Nodes that only exist in the editor and never reach the server. */
const FRONTEND_ONLY = new Set(['Note', 'MarkdownNote', 'Reroute', 'PrimitiveNode']);

interface LinkInfo { originId: string; originSlot: number; targetId: string; targetSlot: number; type: string }

function readLinks(workflow: Workflow): Map<number, LinkInfo> {
  const map = new Map<number, LinkInfo>();
  for (const l of workflow.links ?? []) {
    // Newer exports may store links as objects; accept both shapes.
    const o = l as unknown as Record<string, unknown>;
    const [id, originId, originSlot, targetId, targetSlot, type] = Array.isArray(l)
      ? (l as WorkflowLink)
      : [o.id, o.origin_id, o.origin_slot, o.target_id, o.target_slot, o.type] as WorkflowLink;
    map.set(Number(id), { originId: String(originId), originSlot: Number(originSlot), targetId: String(targetId), targetSlot: Number(targetSlot), type: String(type) });
  }
  return map;
}

function typesMatch(a: string, b: string): boolean {
  if (a === '*' || b === '*' || a === '' || b === '') return true;
  const as = a.split(','), bs = b.split(',');
  return as.some((x) => bs.includes(x));
}

/** What an input receives: a link into the API prompt, a literal (from a PrimitiveNode), or nothing. */
type Resolved = { link: [string, number] } | { value: unknown } | null;

/**
 * Converts a UI-format workflow to an API prompt.
 * @example const prompt = workflowToPrompt(workflow, await (await fetch('/object_info')).json());
 *          // prompt['3'] -> { class_type: 'KSampler', inputs: { seed: 5, model: ['4', 0], ... }, _meta: { title } }
 */
export function workflowToPrompt(workflow: Workflow, objectInfo: ObjectInfo): ApiPrompt {
  const nodes = new Map<string, WorkflowNode>(workflow.nodes.map((n) => [String(n.id), n]));
  const links = readLinks(workflow);

  // Follows a link back to a real producer, through bypassed nodes and reroutes.
  const resolve = (linkId: number | null | undefined, seen: Set<string> = new Set()): Resolved => {
    if (linkId == null) return null;
    const link = links.get(Number(linkId));
    if (!link) return null;
    const origin = nodes.get(link.originId);
    if (!origin || seen.has(link.originId)) return null;
    seen.add(link.originId);
    if (origin.mode === MODE_NEVER) return null;
    if (origin.type === 'PrimitiveNode') {
      const wv = origin.widgets_values;
      return Array.isArray(wv) && wv.length ? { value: wv[0] } : null;
    }
    if (origin.type === 'Reroute') return resolve(origin.inputs?.[0]?.link, seen);
    if (origin.mode === MODE_BYPASS) {
      const ins = origin.inputs ?? [];
      // Same slot index first when its type fits, else the first input of a matching type (ComfyUI's rule).
      const same = ins[link.originSlot];
      const pick = same && same.link != null && typesMatch(same.type, link.type)
        ? same
        : ins.find((i) => i.link != null && typesMatch(i.type, link.type));
      return pick ? resolve(pick.link, seen) : null;
    }
    return { link: [link.originId, link.originSlot] };
  };

  const prompt: ApiPrompt = {};
  for (const node of workflow.nodes) {
    if (node.mode === MODE_NEVER || node.mode === MODE_BYPASS || FRONTEND_ONLY.has(node.type)) continue;
    const info = objectInfo[node.type];
    const inputs: Record<string, unknown> = {};
    const slots = new Map((node.inputs ?? []).map((s) => [s.name, s]));
    if (info) {
      const described = describeInputs(info);
      const { values } = widgetValuesByName(described, node.widgets_values);
      for (const d of described) {
        const r = resolve(slots.get(d.name)?.link);
        if (r && 'link' in r) inputs[d.name] = r.link;
        else if (r && 'value' in r) inputs[d.name] = wrap(r.value);
        else if (d.widget && d.name in values) inputs[d.name] = wrap(values[d.name]);
      }
    }
    // Linked inputs the class info does not list (unknown class, dynamic inputs) still travel, so the server can judge.
    for (const s of node.inputs ?? []) {
      if (s.name in inputs) continue;
      const r = resolve(s.link);
      if (r && 'link' in r) inputs[s.name] = r.link;
    }
    const title = node.title ?? info?.display_name ?? node.type;
    prompt[String(node.id)] = { class_type: node.type, inputs, _meta: { title } };
  }
  return prompt;
}

/** Array literals are wrapped so the server does not mistake them for links. */
function wrap(value: unknown): unknown {
  return Array.isArray(value) ? { __value__: value } : value;
}

/**
 * The body of POST /prompt, with the workflow attached so SaveImage embeds it in the PNG.
 * @example await fetch('/prompt', { method: 'POST', body: JSON.stringify(queueBody(wf, info, clientId)) })
 */
export function queueBody(workflow: Workflow, objectInfo: ObjectInfo, clientId: string) {
  return {
    client_id: clientId,
    prompt: workflowToPrompt(workflow, objectInfo),
    extra_data: { extra_pnginfo: { workflow } },
  };
}
