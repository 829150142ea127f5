// Turns object_info input specs into an ordered list of sockets and widgets. Both the canvas (to build nodes)
// and the converter (to read widgets_values positionally) use this, so they always agree on widget order.
import type { InputSpec, NodeInfo } from './types.js';

export type SeedControl = 'fixed' | 'increment' | 'decrement' | 'randomize';
export const SEED_CONTROLS: readonly SeedControl[] = ['fixed', 'increment', 'decrement', 'randomize'];

export type WidgetKind = 'number' | 'combo' | 'text' | 'toggle';

/** One input of a node class, in the node's input order. */
export interface InputDescriptor {
  name: string;
  /** Socket type: INT, FLOAT, STRING, BOOLEAN, COMBO for widget inputs; MODEL, LATENT, ... for sockets. */
  type: string;
  optional: boolean;
  /** Present when the input is edited by a widget (it can still be fed by a link). */
  widget?: {
    kind: WidgetKind;
    default: unknown;
    min?: number;
    max?: number;
    step?: number;
    round?: number;
    precision?: number;
    integer?: boolean;
    multiline?: boolean;
    options?: (string | number)[];
    /** Seeds: a frontend-only companion value (fixed/increment/...) follows this one in widgets_values. */
    controlAfterGenerate?: boolean;
    /** Image combos: an upload button follows, saved as the value "image" in widgets_values (ComfyUI's format). */
    imageUpload?: boolean;
  };
}

const WIDGET_TYPES = new Set(['INT', 'FLOAT', 'STRING', 'BOOLEAN']);

function describe(name: string, spec: InputSpec, optional: boolean): InputDescriptor {
  const [type, opts = {}] = spec;
  if (Array.isArray(type) || type === 'COMBO') {
    const options = (Array.isArray(type) ? type : (opts.options as (string | number)[] | undefined)) ?? [];
    return {
      name,
      type: 'COMBO',
      optional,
      widget: {
        kind: 'combo',
        options: [...options],
        default: opts.default ?? options[0] ?? '',
        imageUpload: opts.image_upload === true,
      },
    };
  }
  const t = type as string;
  if (!WIDGET_TYPES.has(t) || opts.forceInput === true) return { name, type: t, optional };
  if (t === 'BOOLEAN') return { name, type: t, optional, widget: { kind: 'toggle', default: opts.default ?? false } };
  if (t === 'STRING') {
    return {
      name,
      type: t,
      optional,
      widget: { kind: 'text', default: opts.default ?? '', multiline: opts.multiline === true },
    };
  }
  const integer = t === 'INT';
  const seedLike = name === 'seed' || name === 'noise_seed';
  return {
    name,
    type: t,
    optional,
    widget: {
      kind: 'number',
      integer,
      default: opts.default ?? 0,
      min: opts.min as number | undefined,
      max: opts.max as number | undefined,
      step: (opts.step as number | undefined) ?? (integer ? 1 : 0.01),
      round: opts.round as number | undefined,
      controlAfterGenerate:
        integer && (opts.control_after_generate === true || (seedLike && opts.control_after_generate !== false)),
    },
  };
}

/**
 * Ordered inputs of a node class (required then optional, honouring input_order when present).
 * @example describeInputs(info.KSampler).map((d) => d.name) // ['model', 'seed', 'steps', ...]
 */
export function describeInputs(info: NodeInfo): InputDescriptor[] {
  const out: InputDescriptor[] = [];
  for (const group of ['required', 'optional'] as const) {
    const specs = info.input[group] ?? {};
    const order = info.input_order?.[group] ?? Object.keys(specs);
    for (const name of order) {
      const spec = specs[name];
      if (spec) out.push(describe(name, spec, group === 'optional'));
    }
  }
  return out;
}

/**
 * Maps a node's positional widgets_values to widget input names. The seed companion value
 * (control_after_generate) is consumed and reported separately, never as an input.
 * Tolerates workflows saved without the companion value.
 * @example widgetValuesByName(describeInputs(info.KSampler), [5, 'fixed', 20, ...]).values.seed // 5
 */
export function widgetValuesByName(
  inputs: InputDescriptor[],
  widgetsValues: unknown[] | Record<string, unknown> | undefined,
): { values: Record<string, unknown>; controls: Record<string, SeedControl> } {
  const values: Record<string, unknown> = {};
  const controls: Record<string, SeedControl> = {};
  if (!widgetsValues) return { values, controls };
  if (!Array.isArray(widgetsValues)) {
    // Some tools save widgets_values as an object keyed by input name.
    for (const d of inputs) if (d.widget && d.name in widgetsValues) values[d.name] = widgetsValues[d.name];
    return { values, controls };
  }
  let i = 0;
  for (const d of inputs) {
    if (!d.widget) continue;
    if (i >= widgetsValues.length) break;
    values[d.name] = widgetsValues[i++];
    if (d.widget.controlAfterGenerate && SEED_CONTROLS.includes(widgetsValues[i] as SeedControl)) {
      controls[d.name] = widgetsValues[i++] as SeedControl;
    }
    if (
      d.widget.imageUpload &&
      (widgetsValues[i] === 'image' || widgetsValues[i] === 'upload' || widgetsValues[i] === null)
    )
      i++;
  }
  return { values, controls };
}
