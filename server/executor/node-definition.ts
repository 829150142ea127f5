/**
 * The shape of a node definition, as the executor sees it: typed inputs with widget options, typed outputs and one
 * function. Nothing here knows about diffusion; nodes/ builds definitions with the helpers in nodes/define.ts.
 */

/** Widget (constant) input kinds; everything else is a socket type such as MODEL or LATENT. */
export const WIDGET_KINDS = ['INT', 'FLOAT', 'STRING', 'BOOLEAN', 'COMBO'] as const;
export type WidgetKind = (typeof WIDGET_KINDS)[number];

export interface InputOptions {
  default?: unknown;
  min?: number;
  max?: number;
  step?: number;
  round?: number | false;
  multiline?: boolean;
  dynamicPrompts?: boolean;
  control_after_generate?: boolean;
  tooltip?: string;
  /** shows as a socket by default even though it is a widget type */
  forceInput?: boolean;
  image_upload?: boolean;
  label_on?: string;
  label_off?: string;
}

export interface InputSpec {
  name: string;
  /** 'INT' | 'FLOAT' | 'STRING' | 'BOOLEAN' | 'COMBO' or a socket type ('MODEL', 'LATENT', '*', 'A,B') */
  type: string;
  options: InputOptions;
  /** COMBO choices: a list, or a function evaluated when object_info is asked and when validating */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
  choices?: string[] | ((services: any) => string[]);
  optional?: boolean;
  /**
   * The input checks its own value (ComfyUI's VALIDATE_INPUTS naming this input): for a COMBO it replaces the
   * membership check, so values the list does not show can pass (a file in a subfolder). A string refuses the value.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (services generic)
  validate?(value: string, services: any): string | true | undefined;
}

export interface OutputSpec {
  type: string;
  name: string;
  isList?: boolean;
  tooltip?: string;
}

/** What a running node can do besides computing: report progress, send previews, notice interruption. */
export interface NodeContext<S = unknown> {
  nodeId: string;
  promptId: string;
  /** the whole API-format prompt and the extra_data it was queued with (extra_pnginfo...) */
  prompt: Record<string, unknown>;
  extraData: Record<string, unknown>;
  services: S;
  progress(value: number, max: number): void;
  preview(image: { format: 'jpeg' | 'png'; bytes: Uint8Array }): void;
  /** throws InterruptedError when the prompt was interrupted; long nodes call it between steps */
  checkInterrupted(): void;
  signal: AbortSignal;
  log(message: string): void;
}

export interface NodeResult {
  outputs: unknown[];
  /** UI output sent in `executed` and stored in history (e.g. { images: [...] }) */
  ui?: Record<string, unknown>;
}

export interface NodeDefinition<S = unknown> {
  id: string;
  displayName: string;
  category: string;
  description: string;
  inputs: InputSpec[];
  hidden?: Record<string, string>;
  outputs: OutputSpec[];
  outputNode: boolean;
  /**
   * ComfyUI's INPUT_IS_LIST: the node runs once with every input as the whole list (widgets too, as lists of one);
   * otherwise it runs once per list item (list-map.ts). An output's isList is OUTPUT_IS_LIST.
   */
  inputIsList?: boolean;
  /** like ComfyUI's IS_CHANGED: extra text mixed into the cache key (e.g. an input file's hash) */
  fingerprint?(args: Record<string, unknown>, services: S): string | Promise<string>;
  /**
   * extra checks beyond types and ranges; return a message to refuse. `linked`: per linked input, the static facts
   * of the output it is linked to (see staticFacts), for checks across nodes before anything runs.
   */
  validate?(args: Record<string, unknown>, services: S, linked: Record<string, unknown>): string | true | undefined;
  /**
   * Facts about each output known at validation time from constants and headers only (e.g. a loader's model
   * family), one entry per output. Without it an output carries the facts of the first linked input of its type.
   */
  staticFacts?(args: Record<string, unknown>, services: S, linked: Record<string, unknown>): unknown[];
  execute(args: Record<string, unknown>, ctx: NodeContext<S>): Promise<NodeResult> | NodeResult;
  /** python_module in object_info */
  module?: string;
  deprecated?: boolean;
  experimental?: boolean;
}

export function isWidgetType(type: string): type is WidgetKind {
  return (WIDGET_KINDS as readonly string[]).includes(type);
}

export function comboChoices(spec: InputSpec, services?: unknown): string[] {
  const c = spec.choices;
  return typeof c === 'function' ? c(services) : (c ?? []);
}

/** ComfyUI's type match: equal, '*' on either side, or comma-separated unions that overlap. */
export function typesMatch(outputType: string, inputType: string): boolean {
  if (outputType === inputType || outputType === '*' || inputType === '*') return true;
  const a = outputType.split(',').map((s) => s.trim());
  const b = new Set(inputType.split(',').map((s) => s.trim()));
  return a.some((x) => b.has(x));
}

export class InterruptedError extends Error {
  constructor() {
    super('Processing interrupted');
    this.name = 'InterruptedError';
  }
}

export type Registry<S = unknown> = Map<string, NodeDefinition<S>>;
