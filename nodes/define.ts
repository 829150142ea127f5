/**
 * Declarative node definitions, ComfyUI-style: one object per node with typed inputs, outputs and one function.
 * The function's arguments are typed from the declared inputs (INT/FLOAT -> number, STRING/COMBO -> string,
 * BOOLEAN -> boolean, sockets -> their value type from SocketValues, optional -> | undefined): validation has
 * already converted every constant, so nodes need neither casts nor Number()/String().
 * Example:
 *   export const EmptyLatentImage = defineNode({
 *     id: 'EmptyLatentImage', category: 'latent',
 *     inputs: [t.int('width', { default: 512, min: 16, max: 16384, step: 8 }), ...],
 *     outputs: [t.out('LATENT')],
 *     execute: ({ width, height }) => ({ outputs: [...] }),   // width: number
 *   });
 */
import type {
  InputOptions,
  InputSpec,
  NodeContext,
  NodeDefinition,
  NodeResult,
  OutputSpec,
} from '../server/executor/node-definition.js';
import type { Tensor } from '../server/engine/tensor.js';
import type { NodeServices } from './services.js';
import type {
  ClipValue,
  Conditioning,
  ControlNetValue,
  LatentValue,
  ModelValue,
  SamplerValue,
  SigmasValue,
  UpscaleModelValue,
  VaeValue,
} from './types.js';

type Opts = Omit<InputOptions, 'default'>;

/** What each socket type carries between nodes. Types not listed here arrive as unknown. */
export interface SocketValues {
  MODEL: ModelValue;
  CLIP: ClipValue;
  VAE: VaeValue;
  CONDITIONING: Conditioning;
  LATENT: LatentValue;
  IMAGE: Tensor;
  MASK: Tensor;
  SAMPLER: SamplerValue;
  SIGMAS: SigmasValue;
  CONTROL_NET: ControlNetValue;
  UPSCALE_MODEL: UpscaleModelValue;
}
type SocketValue<T extends string> = T extends keyof SocketValues ? SocketValues[T] : unknown;

/** An input spec that remembers its name and the type of value the node function receives (phantom field). */
export interface TypedInput<N extends string = string, V = unknown> extends InputSpec {
  name: N;
  readonly __value?: V;
}

const spec = <N extends string, V>(s: InputSpec & { name: N }): TypedInput<N, V> => s;

export const t = {
  int: <N extends string>(name: N, o: Opts & { default?: number } = {}) =>
    spec<N, number>({ name, type: 'INT', options: { step: 1, ...o } }),
  float: <N extends string>(name: N, o: Opts & { default?: number } = {}) =>
    spec<N, number>({ name, type: 'FLOAT', options: o }),
  string: <N extends string>(name: N, o: Opts & { default?: string } = {}) =>
    spec<N, string>({ name, type: 'STRING', options: o }),
  boolean: <N extends string>(name: N, o: Opts & { default?: boolean } = {}) =>
    spec<N, boolean>({ name, type: 'BOOLEAN', options: o }),
  /** a fixed list types the value as its members; a list computed from the services (file names) as string */
  combo: <N extends string, const C extends string = string>(
    name: N,
    choices: readonly C[] | ((services: NodeServices) => string[]),
    o: Opts & { default?: C } = {},
  ) => spec<N, C>({ name, type: 'COMBO', options: o, choices: typeof choices === 'function' ? choices : [...choices] }),
  /** a socket input of a non-widget type (MODEL, CLIP, VAE, CONDITIONING, LATENT, IMAGE, MASK, SAMPLER, SIGMAS ...) */
  socket: <T extends string, N extends string>(type: T, name: N, o: Opts = {}) =>
    spec<N, SocketValue<T>>({ name, type, options: o }),
  optional: <N extends string, V>(s: TypedInput<N, V>): TypedInput<N, V | undefined> & { optional: true } => ({
    ...s,
    optional: true,
  }),
  /**
   * An input that checks its own value instead of the COMBO list (ComfyUI's VALIDATE_INPUTS for it): `check` returns
   * a message to refuse. The list still fills the widget; any value `check` accepts runs.
   */
  checked: <N extends string, V>(
    s: TypedInput<N, V>,
    check: (value: string, services: NodeServices) => string | true | undefined,
  ): TypedInput<N, V> => ({ ...s, validate: check }),
  out: (type: string, name: string = type, tooltip?: string): OutputSpec => ({ type, name, tooltip }),
};

/** The node function's argument object for a list of typed inputs. */
export type ArgsOf<I extends readonly TypedInput[]> = {
  [S in I[number] as S['name']]: S extends TypedInput<string, infer V>
    ? S extends { optional: true }
      ? V | undefined
      : V
    : never;
};

/**
 * A seed input's value as a uint64. JSON numbers above 2^53 are already rounded by the client, so exact 64-bit seeds
 * travel as decimal strings (validation keeps them exact); 2^64 from a rounded 2^64-1 is read as 2^64-1.
 */
export function seedValue(v: number | string | bigint): bigint {
  const b = typeof v === 'bigint' ? v : typeof v === 'string' ? BigInt(v) : BigInt(Math.trunc(v));
  const max = 2n ** 64n - 1n;
  return b > max ? max : b < 0n ? 0n : b;
}

/** The seed input every sampler shares: INT 0..2^64-1 with control_after_generate; beyond 2^53 a decimal string. */
export const seedInput = <N extends string = 'seed'>(
  name: N = 'seed' as N,
  tooltip = 'The random seed used for creating the noise.',
) =>
  spec<N, number | string>({
    name,
    type: 'INT',
    options: { step: 1, default: 0, min: 0, max: 0xffffffffffffffff, control_after_generate: true, tooltip },
  });

type Services = NodeServices;
interface Def<I extends readonly TypedInput[]> extends Omit<
  NodeDefinition<Services>,
  'displayName' | 'description' | 'outputNode' | 'inputs' | 'execute' | 'validate' | 'fingerprint' | 'staticFacts'
> {
  displayName?: string;
  description?: string;
  outputNode?: boolean;
  inputs: I;
  fingerprint?(args: ArgsOf<I>, services: Services): string | Promise<string>;
  validate?(args: ArgsOf<I>, services: Services, linked: Record<string, unknown>): string | true | undefined;
  /** validation-time facts of each output (node-definition.ts staticFacts) */
  staticFacts?(args: ArgsOf<I>, services: Services, linked: Record<string, unknown>): unknown[];
  execute(args: ArgsOf<I>, ctx: NodeContext<Services>): Promise<NodeResult> | NodeResult;
}

export function defineNode<const I extends readonly TypedInput[]>(def: Def<I>): NodeDefinition<Services> {
  // the executor passes validated values keyed by input name, which is exactly ArgsOf<I>
  return {
    displayName: def.id,
    description: '',
    outputNode: false,
    ...def,
    inputs: [...def.inputs],
  } as unknown as NodeDefinition<Services>;
}

/** ArgsOf with every value a list: what a node declared inputIsList (ComfyUI's INPUT_IS_LIST) receives. */
export type ListArgsOf<I extends readonly TypedInput[]> = { [K in keyof ArgsOf<I>]: ArgsOf<I>[K][] };

interface ListDef<I extends readonly TypedInput[]> extends Omit<Def<I>, 'execute' | 'inputIsList'> {
  execute(args: ListArgsOf<I>, ctx: NodeContext<Services>): Promise<NodeResult> | NodeResult;
}

/** defineNode for an INPUT_IS_LIST node: it runs once and gets each input as the whole list (widgets too). */
export function defineListNode<const I extends readonly TypedInput[]>(def: ListDef<I>): NodeDefinition<Services> {
  return defineNode({ ...def, inputIsList: true } as unknown as Def<I>);
}
