// Wire types shared by the editor and its converter: ComfyUI's object_info, API prompt and UI workflow (0.4).
// Kept framework-free so server code can import them too.

/** One input spec from object_info: `["INT", {default, min, max}]` or a combo `[["a","b"], {default}]`. */
export type InputSpec = [string | readonly (string | number)[], Record<string, unknown>?];

/** One node class as GET /object_info describes it. */
export interface NodeInfo {
  input: {
    required?: Record<string, InputSpec>;
    optional?: Record<string, InputSpec>;
    hidden?: Record<string, unknown>;
  };
  input_order?: { required?: string[]; optional?: string[] };
  output: string[];
  output_is_list?: boolean[];
  output_name?: string[];
  name: string;
  display_name?: string;
  description?: string;
  category?: string;
  output_node?: boolean;
}

export type ObjectInfo = Record<string, NodeInfo>;

/** A link inside an API prompt: [origin node id, origin output index]. */
export interface ApiNode {
  class_type: string;
  inputs: Record<string, unknown>;
  _meta?: { title: string };
}

/** API format prompt: `{"3": {class_type, inputs}}`. */
export type ApiPrompt = Record<string, ApiNode>;

export interface WorkflowInput {
  name: string;
  type: string;
  link: number | null;
  widget?: { name: string };
  [extra: string]: unknown;
}

export interface WorkflowOutput {
  name: string;
  type: string;
  links: number[] | null;
  slot_index?: number;
  [extra: string]: unknown;
}

export interface WorkflowNode {
  id: number | string;
  type: string;
  pos: [number, number] | { 0: number; 1: number } | number[];
  size?: [number, number] | number[] | Record<string, number>;
  flags?: Record<string, unknown>;
  order?: number;
  mode?: number;
  inputs?: WorkflowInput[];
  outputs?: WorkflowOutput[];
  properties?: Record<string, unknown>;
  widgets_values?: unknown[] | Record<string, unknown>;
  title?: string;
  [extra: string]: unknown;
}

/** [id, origin_id, origin_slot, target_id, target_slot, type] */
export type WorkflowLink = [number, number | string, number, number | string, number, string];

export interface WorkflowGroup {
  title: string;
  bounding: number[];
  color?: string;
  [extra: string]: unknown;
}

/** UI format workflow, version 0.4 (what the editor saves and SaveImage embeds as the `workflow` tEXt chunk). */
export interface Workflow {
  last_node_id: number;
  last_link_id: number;
  nodes: WorkflowNode[];
  links: WorkflowLink[];
  groups?: WorkflowGroup[];
  config?: Record<string, unknown>;
  extra?: Record<string, unknown>;
  version: number;
  [extra: string]: unknown;
}

/** Node modes as litegraph numbers them. */
export const MODE_ALWAYS = 0;
export const MODE_NEVER = 2; // muted: skipped, consumers lose the link
export const MODE_BYPASS = 4; // bypassed: inputs pass through to same-typed outputs
