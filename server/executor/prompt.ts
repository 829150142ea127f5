/** API-format prompts: `{ "3": { class_type, inputs: { seed: 5, model: ["4", 0] }, _meta } }`. */

export interface PromptNode {
  class_type: string;
  inputs: Record<string, unknown>;
  _meta?: { title?: string };
}
export type Prompt = Record<string, PromptNode>;

/** A link is `[node_id, output_index]`; ComfyUI accepts numeric ids too. */
export function isLink(v: unknown): v is [string | number, number] {
  return (
    Array.isArray(v) &&
    v.length === 2 &&
    (typeof v[0] === 'string' || typeof v[0] === 'number') &&
    typeof v[1] === 'number' &&
    Number.isInteger(v[1])
  );
}

/** Array literals travel wrapped as `{ "__value__": [...] }` so they are not mistaken for links. */
export function unwrapLiteral(v: unknown): unknown {
  if (v && typeof v === 'object' && !Array.isArray(v) && '__value__' in (v as object))
    return (v as { __value__: unknown }).__value__;
  return v;
}
