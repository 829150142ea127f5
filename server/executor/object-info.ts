/** GET /object_info, generated from node definitions in ComfyUI's exact shape. */
import { comboChoices, type NodeDefinition, type InputSpec } from './node-definition.js';

function inputEntry(spec: InputSpec, services: unknown): unknown[] {
  const opts: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(spec.options)) if (v !== undefined) opts[k] = v;
  if (spec.type === 'COMBO') return [comboChoices(spec, services), opts];
  return Object.keys(opts).length ? [spec.type, opts] : [spec.type];
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
export function objectInfoFor(def: NodeDefinition<any>, services?: unknown): Record<string, unknown> {
  const required: Record<string, unknown> = {};
  const optional: Record<string, unknown> = {};
  for (const spec of def.inputs) (spec.optional ? optional : required)[spec.name] = inputEntry(spec, services);
  const input: Record<string, unknown> = { required };
  if (Object.keys(optional).length) input.optional = optional;
  if (def.hidden) input.hidden = def.hidden;
  return {
    input,
    input_order: {
      required: def.inputs.filter((s) => !s.optional).map((s) => s.name),
      ...(Object.keys(optional).length ? { optional: def.inputs.filter((s) => s.optional).map((s) => s.name) } : {}),
      ...(def.hidden ? { hidden: Object.keys(def.hidden) } : {}),
    },
    is_input_list: !!def.inputIsList,
    output: def.outputs.map((o) => o.type),
    output_is_list: def.outputs.map((o) => !!o.isList),
    output_name: def.outputs.map((o) => o.name),
    output_tooltips: def.outputs.map((o) => o.tooltip ?? ''),
    name: def.id,
    display_name: def.displayName,
    description: def.description,
    python_module: def.module ?? 'nodes',
    category: def.category,
    output_node: def.outputNode,
    ...(def.deprecated ? { deprecated: true } : {}),
    ...(def.experimental ? { experimental: true } : {}),
  };
}

/** Every node's entry; a node whose info cannot be built (e.g. its combo list throws) is left out, like ComfyUI. */
export function objectInfo(
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
  registry: Map<string, NodeDefinition<any>>,
  services?: unknown,
  log?: (m: string) => void,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [id, def] of registry) {
    try {
      out[id] = objectInfoFor(def, services);
    } catch (e) {
      log?.(`object_info: left out ${id}: ${(e as Error).message}`);
    }
  }
  return out;
}
