/**
 * Prompt validation with ComfyUI's error types and 400 shape. Checks every node the output nodes need: classes
 * exist, required inputs are present, links point at existing outputs of a matching type, constants convert to
 * their widget type and respect min/max/choices (or the input's own validate), custom validators pass, and there is no
 * dependency cycle.
 */
import {
  errorItem,
  promptError,
  type ErrorItem,
  type NodeErrors,
  type PromptErrorBody,
} from '../../protocol/errors.js';
import {
  comboChoices,
  isWidgetType,
  typesMatch,
  type InputSpec,
  type NodeDefinition,
  type Registry,
} from './node-definition.js';
import { isLink, unwrapLiteral, type Prompt } from './prompt.js';

export interface ValidPrompt {
  ok: true;
  /** output node ids that passed validation, in prompt order */
  outputs: string[];
  /** constants converted to their declared types, per node */
  constants: Map<string, Record<string, unknown>>;
  /** node errors of outputs that failed while others passed (ComfyUI answers 200 with these) */
  nodeErrors: Record<string, NodeErrors>;
}
export type ValidationResult = ValidPrompt | { ok: false; body: PromptErrorBody };

const MAX_STRING = 1_000_000;

/** A max given as a double (2^64-1 rounds to 2^64) read as the integer it stands for. */
function maxBig(max: number): bigint {
  return max >= 2 ** 64 ? 2n ** 64n - 1n : BigInt(Math.trunc(max));
}

/** Convert a constant to a widget type; returns an error item when it cannot. */
const ECHO_LIMIT = 1000;

/** A received value as errors echo it: long strings and big or deep structures are cut, never sent back whole. */
function echoed(v: unknown): unknown {
  if (typeof v === 'string') return v.length > ECHO_LIMIT ? `${v.slice(0, ECHO_LIMIT)}... (${v.length} characters)` : v;
  if (v === null || typeof v !== 'object') return v;
  let text: string;
  try {
    text = JSON.stringify(v);
  } catch {
    return '(a value too deeply nested to show)';
  }
  return text.length > ECHO_LIMIT ? `${text.slice(0, ECHO_LIMIT)}... (${text.length} characters of JSON)` : v;
}

/**
 * Choice lists per input spec for one validation: a list can come from a folder listing, and a prompt may hold
 * thousands of nodes of one class. A list that threw is remembered as its error.
 */
export type ChoiceCache = Map<InputSpec, { set: Set<string>; list: string[] } | Error>;

function choicesOf(spec: InputSpec, services: unknown, cache?: ChoiceCache): { set: Set<string>; list: string[] } {
  let c = cache?.get(spec);
  if (!c) {
    try {
      const list = comboChoices(spec, services);
      c = { set: new Set(list.map(String)), list };
    } catch (e) {
      c = e as Error;
    }
    cache?.set(spec, c);
  }
  if (c instanceof Error) throw c;
  return c;
}

export function convertConstant(
  spec: InputSpec,
  raw: unknown,
  services?: unknown,
  cache?: ChoiceCache,
): { value: unknown } | { error: ErrorItem } {
  const v = unwrapLiteral(raw);
  const shown = echoed(v);
  const extra = { input_name: spec.name, input_config: [spec.type, spec.options], received_value: shown };
  const bad = () => ({
    error: errorItem(
      'invalid_input_type',
      `Failed to convert an input value to a ${spec.type} value`,
      `${spec.name}, ${JSON.stringify(shown)}`,
      extra,
    ),
  });
  let value: unknown = v;
  switch (spec.type) {
    case 'INT':
    case 'FLOAT': {
      // integers beyond 2^53 (64-bit seeds) stay exact as decimal strings; range checks use BigInt
      if (spec.type === 'INT' && typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) && !Number.isSafeInteger(Number(v))) {
        const big = BigInt(v.trim());
        const { min, max } = spec.options;
        if (min !== undefined && big < BigInt(Math.trunc(min)))
          return {
            error: errorItem(
              'value_smaller_than_min',
              `Value ${big} smaller than min of ${min}`,
              `${spec.name}`,
              extra,
            ),
          };
        if (max !== undefined && big > maxBig(max))
          return {
            error: errorItem('value_bigger_than_max', `Value ${big} bigger than max of ${max}`, `${spec.name}`, extra),
          };
        return { value: big.toString() };
      }
      const n =
        typeof v === 'number'
          ? v
          : typeof v === 'string' && v.trim() !== ''
            ? Number(v)
            : typeof v === 'boolean'
              ? Number(v)
              : NaN;
      if (!Number.isFinite(n)) return bad();
      value = spec.type === 'INT' ? Math.trunc(n) : n;
      break;
    }
    case 'STRING':
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') return bad();
      value = String(v);
      if ((value as string).length > MAX_STRING)
        return {
          error: errorItem(
            'invalid_input_type',
            `Input value is too long (${(value as string).length} characters, at most ${MAX_STRING})`,
            spec.name,
            extra,
          ),
        };
      break;
    case 'BOOLEAN':
      if (typeof v === 'boolean') value = v;
      else if (v === 'true' || v === 'false') value = v === 'true';
      else return bad();
      break;
    case 'COMBO': {
      if (spec.validate) {
        if (typeof v !== 'string' && typeof v !== 'number') return bad();
        const refused = spec.validate(String(v), services);
        if (typeof refused === 'string')
          return {
            error: errorItem(
              'custom_validation_failed',
              'Custom validation failed for node',
              `${spec.name} - ${refused}`,
              { input_name: spec.name },
            ),
          };
        value = String(v);
        break;
      }
      const { set, list } = choicesOf(spec, services, cache);
      if (typeof v !== 'string' && typeof v !== 'number') return bad();
      if (!set.has(String(v))) {
        return {
          error: errorItem(
            'value_not_in_list',
            'Value not in list',
            `${spec.name}: '${String(shown)}' not in ${JSON.stringify(list.length > 20 ? [...list.slice(0, 20), '...'] : list)}`,
            extra,
          ),
        };
      }
      value = String(v);
      break;
    }
    default:
      return {
        error: errorItem(
          'invalid_input_type',
          `Input '${spec.name}' of type ${spec.type} must be linked to another node's output`,
          `${spec.name}, ${JSON.stringify(shown)?.slice(0, 100)}`,
          extra,
        ),
      };
  }
  if (typeof value === 'number') {
    const { min, max } = spec.options;
    if (min !== undefined && value < min)
      return {
        error: errorItem('value_smaller_than_min', `Value ${value} smaller than min of ${min}`, `${spec.name}`, extra),
      };
    if (max !== undefined && value > max)
      return {
        error: errorItem('value_bigger_than_max', `Value ${value} bigger than max of ${max}`, `${spec.name}`, extra),
      };
  }
  return { value };
}

/** Most nodes one prompt may hold: validation is linear, but a bound keeps one request's cost bounded too. */
export const MAX_PROMPT_NODES = 20_000;
/** dependent_outputs lists at most this many outputs per failing node (keeps the 400 body linear in the prompt). */
export const MAX_DEPENDENT_OUTPUTS = 64;

export function validatePrompt<S>(
  prompt: unknown,
  registry: Registry<S>,
  services: S,
  targets?: string[],
): ValidationResult {
  if (!prompt || typeof prompt !== 'object' || Array.isArray(prompt)) {
    return {
      ok: false,
      body: promptError(
        errorItem('invalid_prompt', 'Invalid prompt: the prompt must be an object of nodes keyed by id', '', {}),
      ),
    };
  }
  const p = prompt as Prompt;
  const count = Object.keys(p).length;
  if (count > MAX_PROMPT_NODES) {
    return {
      ok: false,
      body: promptError(
        errorItem('invalid_prompt', `Prompt has ${count} nodes; at most ${MAX_PROMPT_NODES} are accepted`, '', {
          node_count: count,
          max_nodes: MAX_PROMPT_NODES,
        }),
      ),
    };
  }
  for (const [id, node] of Object.entries(p)) {
    // a key that is special to plain JS objects would silently vanish from outputs/history maps downstream
    if (id === '__proto__')
      return {
        ok: false,
        body: promptError(
          errorItem('invalid_prompt', 'Node id __proto__ is reserved', `Node ID '#${id}'`, { node_id: id }),
        ),
      };
    if (!node || typeof node !== 'object' || typeof (node as { class_type?: unknown }).class_type !== 'string') {
      return {
        ok: false,
        body: promptError(
          errorItem(
            'invalid_prompt',
            `Cannot execute because node ${id} is missing the class_type property.`,
            `Node ID '#${id}'`,
            { node_id: id },
          ),
        ),
      };
    }
    if (!registry.has(node.class_type)) {
      return {
        ok: false,
        body: promptError(
          errorItem(
            'invalid_prompt',
            `Cannot execute because node ${node.class_type} does not exist.`,
            `Node ID '#${id}'`,
            { node_id: id, class_type: node.class_type },
          ),
        ),
      };
    }
    if (
      node.inputs !== undefined &&
      (typeof node.inputs !== 'object' || node.inputs === null || Array.isArray(node.inputs))
    ) {
      return {
        ok: false,
        body: promptError(
          errorItem(
            'invalid_prompt',
            `Node ${id} (${node.class_type}) has inputs that are not an object.`,
            `Node ID '#${id}'`,
            { node_id: id },
          ),
        ),
      };
    }
  }
  let outputs = Object.keys(p).filter((id) => registry.get(p[id].class_type)!.outputNode);
  if (targets && targets.length) {
    const wanted = new Set(targets);
    outputs = outputs.filter((id) => wanted.has(id));
  }
  if (outputs.length === 0)
    return { ok: false, body: promptError(errorItem('prompt_no_outputs', 'Prompt has no outputs', '', {})) };

  const constants = new Map<string, Record<string, unknown>>();
  const state = new Map<string, 'visiting' | 'ok' | 'failed'>();
  const errorsByNode = new Map<string, ErrorItem[]>();
  const sourcesOf = new Map<string, string[]>();
  const choiceCache: ChoiceCache = new Map();
  const addError = (id: string, e: ErrorItem) => {
    (errorsByNode.get(id) ?? errorsByNode.set(id, []).get(id)!).push(e);
  };

  /** Own checks of one node (classes, inputs, links, constants); the linked sources it depends on. */
  const checkOwn = (
    id: string,
  ): {
    valid: boolean;
    values: Record<string, unknown>;
    sources: string[];
    links: Record<string, [string, number]>;
  } => {
    const node = p[id];
    const def = registry.get(node.class_type) as NodeDefinition<S>;
    const inputs = (node.inputs ?? {}) as Record<string, unknown>;
    const values: Record<string, unknown> = {};
    const sources: string[] = [];
    const links: Record<string, [string, number]> = {};
    let valid = true;
    for (const spec of def.inputs) {
      const raw = inputs[spec.name];
      if (raw === undefined || raw === null) {
        if (!spec.optional) {
          addError(
            id,
            errorItem('required_input_missing', 'Required input is missing', spec.name, { input_name: spec.name }),
          );
          valid = false;
        }
        continue;
      }
      if (isLink(raw)) {
        const src = String(raw[0]),
          idx = raw[1];
        const srcNode = Object.hasOwn(p, src) ? p[src] : undefined;
        if (!srcNode) {
          addError(
            id,
            errorItem('bad_linked_input', `Bad linked input: node ${src} does not exist`, spec.name, {
              input_name: spec.name,
              received_value: echoed(raw),
            }),
          );
          valid = false;
          continue;
        }
        const srcDef = registry.get(srcNode.class_type)!;
        if (idx < 0 || idx >= srcDef.outputs.length) {
          addError(
            id,
            errorItem(
              'bad_linked_input',
              `Bad linked input: node ${src} (${srcNode.class_type}) has no output ${idx}`,
              spec.name,
              { input_name: spec.name, received_value: echoed(raw) },
            ),
          );
          valid = false;
          continue;
        }
        const outType = srcDef.outputs[idx].type;
        // as ComfyUI: a COMBO input takes a link of its own type (or '*') only; a STRING output is refused, since the
        // text may be no choice at all (the editor's PrimitiveNode feeding a combo arrives as a constant, not a link)
        if (!typesMatch(outType, spec.type)) {
          addError(
            id,
            errorItem(
              'return_type_mismatch',
              'Return type mismatch between linked nodes',
              `${spec.name}, received_type(${outType}) mismatch input_type(${spec.type})`,
              {
                input_name: spec.name,
                input_config: [spec.type, spec.options],
                received_type: outType,
                linked_node: raw,
              },
            ),
          );
          valid = false;
          continue;
        }
        sources.push(src);
        links[spec.name] = [src, idx];
        continue;
      }
      if (!isWidgetType(spec.type)) {
        addError(
          id,
          errorItem('bad_linked_input', 'Bad linked input, must be a length-2 list of [string, int]', spec.name, {
            input_name: spec.name,
            input_config: [spec.type, spec.options],
            received_value: echoed(raw),
          }),
        );
        valid = false;
        continue;
      }
      let res;
      try {
        res = convertConstant(spec, raw, services, choiceCache);
      } catch (e) {
        res = {
          error: errorItem(
            'exception_during_validation',
            `Exception when validating inner node: ${(e as Error).message}`,
            spec.name,
            { input_name: spec.name },
          ),
        };
      }
      if ('error' in res) {
        addError(id, res.error);
        valid = false;
      } else values[spec.name] = res.value;
    }
    return { valid, values, sources, links };
  };

  /**
   * Static facts of each node's outputs (node-definition.ts staticFacts): its own, or what the first linked input of
   * the output's type carries (pass-through nodes). A node whose facts cannot be read just has none.
   */
  const facts = new Map<string, unknown[]>();
  const linkedFacts = (links: Record<string, [string, number]>): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [name, [src, idx]] of Object.entries(links)) {
      const f = facts.get(src)?.[idx];
      if (f !== undefined) out[name] = f;
    }
    return out;
  };
  const outputFacts = (def: NodeDefinition<S>, values: Record<string, unknown>, linked: Record<string, unknown>) => {
    if (def.staticFacts) {
      try {
        return def.staticFacts(values, services, linked);
      } catch {
        return [];
      }
    }
    return def.outputs.map((o) => {
      const from = def.inputs.find((i) => i.type === o.type && linked[i.name] !== undefined);
      return from ? linked[from.name] : undefined;
    });
  };

  /** Custom validation, once the node's own inputs and all its sources are valid. */
  const finish = (id: string, own: ReturnType<typeof checkOwn>): void => {
    const def = registry.get(p[id].class_type) as NodeDefinition<S>;
    let valid = own.valid && own.sources.every((src) => state.get(src) === 'ok');
    const linked = linkedFacts(own.links);
    if (valid && def.validate) {
      try {
        const r = def.validate(own.values, services, linked);
        if (typeof r === 'string') {
          addError(id, errorItem('custom_validation_failed', 'Custom validation failed for node', `${r}`, {}));
          valid = false;
        }
      } catch (e) {
        addError(
          id,
          errorItem('exception_during_validation', 'Exception when validating node', (e as Error).message, {}),
        );
        valid = false;
      }
    }
    if (valid) facts.set(id, outputFacts(def, own.values, linked));
    constants.set(id, own.values);
    sourcesOf.set(id, own.sources);
    state.set(id, valid ? 'ok' : 'failed');
  };

  // depth-first over links with an explicit stack: prompts with chains of thousands of nodes must not overflow
  const visit = (root: string): boolean => {
    const stack: { id: string; own?: ReturnType<typeof checkOwn> }[] = [{ id: root }];
    while (stack.length) {
      const frame = stack[stack.length - 1];
      if (frame.own) {
        stack.pop();
        finish(frame.id, frame.own);
        continue;
      }
      const st = state.get(frame.id);
      if (st === 'ok' || st === 'failed') {
        stack.pop();
        continue;
      }
      if (st === 'visiting') {
        // only ancestors of the frames above are 'visiting': this is a cycle
        addError(
          frame.id,
          errorItem(
            'dependency_cycle',
            'Dependency cycle detected',
            `Node ${frame.id} depends on itself through its inputs`,
            { node_id: frame.id },
          ),
        );
        stack.pop();
        continue;
      }
      state.set(frame.id, 'visiting');
      frame.own = checkOwn(frame.id);
      for (let i = frame.own.sources.length - 1; i >= 0; i--) stack.push({ id: frame.own.sources[i] });
    }
    return state.get(root) === 'ok';
  };

  const good: string[] = [];
  const failed: string[] = [];
  for (const out of outputs) (visit(out) ? good : failed).push(out);
  // every node with errors lists the failing outputs that depend on it, all found in one pass over the graph
  const dependents = dependentOutputs(failed, (id) => sourcesOf.get(id) ?? [], MAX_DEPENDENT_OUTPUTS);
  const nodeErrors: Record<string, NodeErrors> = {};
  for (const [nid, errs] of errorsByNode) {
    const deps = dependents.get(nid);
    if (!deps?.length) continue;
    nodeErrors[nid] = { errors: errs, dependent_outputs: deps, class_type: p[nid].class_type };
  }
  if (good.length === 0) {
    const first = Object.values(nodeErrors)[0]?.errors[0];
    const details = Object.entries(nodeErrors)
      .map(([nid, ne]) => ne.errors.map((e) => `${e.message}: ${e.details} (node ${nid} ${ne.class_type})`).join('\n'))
      .join('\n');
    return {
      ok: false,
      body: promptError(
        errorItem(
          'prompt_outputs_failed_validation',
          'Prompt outputs failed validation',
          details || (first?.message ?? ''),
          {},
        ),
        nodeErrors,
      ),
    };
  }
  return { ok: true, outputs: good, constants, nodeErrors };
}

/**
 * For every node reachable from `outputs` through `sources`, the outputs that depend on it (itself included), in
 * `outputs` order, at most `cap` each. Linear: nodes are visited consumers-first and each link merges one capped list.
 */
export function dependentOutputs(
  outputs: string[],
  sources: (id: string) => string[],
  cap: number,
): Map<string, string[]> {
  const rank = new Map(outputs.map((o, i) => [o, i]));
  // post-order (sources before consumers); reversed, every consumer comes before its sources
  const order: string[] = [];
  const seen = new Set<string>();
  for (const o of outputs) {
    if (seen.has(o)) continue;
    seen.add(o);
    const stack: { id: string; next: number; links: string[] }[] = [{ id: o, next: 0, links: sources(o) }];
    while (stack.length) {
      const f = stack[stack.length - 1];
      if (f.next < f.links.length) {
        const src = f.links[f.next++];
        if (!seen.has(src)) {
          seen.add(src);
          stack.push({ id: src, next: 0, links: sources(src) });
        }
        continue;
      }
      stack.pop();
      order.push(f.id);
    }
  }
  const deps = new Map<string, number[]>();
  for (const o of outputs) deps.set(o, [rank.get(o)!]);
  for (let i = order.length - 1; i >= 0; i--) {
    const mine = deps.get(order[i]);
    if (!mine) continue;
    for (const src of sources(order[i])) {
      const theirs = deps.get(src);
      deps.set(src, theirs ? mergeCapped(theirs, mine, cap) : mine.slice(0, cap));
    }
  }
  const out = new Map<string, string[]>();
  for (const [id, ranks] of deps)
    out.set(
      id,
      ranks.map((r) => outputs[r]),
    );
  return out;
}

/** The union of two ascending lists, ascending, cut at `cap`. */
function mergeCapped(a: number[], b: number[], cap: number): number[] {
  const out: number[] = [];
  let i = 0,
    j = 0;
  while (out.length < cap && (i < a.length || j < b.length)) {
    const x = i < a.length ? a[i] : Infinity,
      y = j < b.length ? b[j] : Infinity;
    if (x <= y) {
      out.push(x);
      i++;
      if (x === y) j++;
    } else {
      out.push(y);
      j++;
    }
  }
  return out;
}

/**
 * Dependency order (sources first) of everything the given outputs need. Assumes a validated, acyclic prompt. With
 * a registry only the inputs a node's class declares count: validation never looks at the others, so a stray link
 * there (to a missing node, or back into the graph) must not reorder or break the run.
 */
export function executionOrder<S>(p: Prompt, outputs: string[], registry?: Registry<S>): string[] {
  const order: string[] = [];
  const done = new Set<string>();
  // explicit stack (post-order, inputs in declaration order) so long chains cannot overflow the call stack
  for (const o of outputs) {
    if (done.has(o)) continue;
    done.add(o);
    const stack: { id: string; links: string[]; next: number }[] = [{ id: o, links: linksOf(p, o, registry), next: 0 }];
    while (stack.length) {
      const f = stack[stack.length - 1];
      if (f.next < f.links.length) {
        const src = f.links[f.next++];
        if (!done.has(src)) {
          done.add(src);
          stack.push({ id: src, links: linksOf(p, src, registry), next: 0 });
        }
        continue;
      }
      stack.pop();
      order.push(f.id);
    }
  }
  return order;
}

function linksOf<S>(p: Prompt, id: string, registry?: Registry<S>): string[] {
  const inputs = p[id].inputs ?? {};
  return declaredInputs(p[id].class_type, inputs, registry)
    .map((name) => inputs[name])
    .filter(isLink)
    .map((v) => String(v[0]));
}

/** The names of a node's inputs its class declares (all of them without a registry), in the prompt's order. */
export function declaredInputs<S>(
  classType: string,
  inputs: Record<string, unknown>,
  registry?: Registry<S>,
): string[] {
  if (!registry) return Object.keys(inputs);
  const names = new Set(registry.get(classType)?.inputs.map((spec) => spec.name) ?? []);
  return Object.keys(inputs).filter((name) => names.has(name));
}
