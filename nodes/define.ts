/**
 * Declarative node definitions, ComfyUI-style: one object per node with typed inputs, outputs and one function.
 * Example:
 *   export const EmptyLatentImage = defineNode({
 *     id: 'EmptyLatentImage', category: 'latent',
 *     inputs: [t.int('width', { default: 512, min: 16, max: 16384, step: 8 }), ...],
 *     outputs: [t.out('LATENT')],
 *     execute: ({ width, height }) => ({ outputs: [...] }),
 *   });
 */
import type { InputOptions, InputSpec, NodeDefinition, OutputSpec } from '../server/executor/node-definition.js';
import type { NodeServices } from './services.js';

type Opts = Omit<InputOptions, 'default'>;

export const t = {
  int: (name: string, o: Opts & { default?: number } = {}): InputSpec => ({ name, type: 'INT', options: { step: 1, ...o } }),
  float: (name: string, o: Opts & { default?: number } = {}): InputSpec => ({ name, type: 'FLOAT', options: o }),
  string: (name: string, o: Opts & { default?: string } = {}): InputSpec => ({ name, type: 'STRING', options: o }),
  boolean: (name: string, o: Opts & { default?: boolean } = {}): InputSpec => ({ name, type: 'BOOLEAN', options: o }),
  combo: (name: string, choices: string[] | ((services: NodeServices) => string[]), o: Opts & { default?: string } = {}): InputSpec => ({ name, type: 'COMBO', options: o, choices }),
  /** a socket input of a non-widget type (MODEL, CLIP, VAE, CONDITIONING, LATENT, IMAGE, MASK, SAMPLER, SIGMAS ...) */
  socket: (type: string, name: string, o: Opts = {}): InputSpec => ({ name, type, options: o }),
  optional: (spec: InputSpec): InputSpec => ({ ...spec, optional: true }),
  out: (type: string, name: string = type, tooltip?: string): OutputSpec => ({ type, name, tooltip }),
};

/**
 * A seed input's value as a uint64. JSON numbers above 2^53 are already rounded by the client, so exact 64-bit seeds
 * travel as decimal strings (validation keeps them exact); 2^64 from a rounded 2^64-1 is read as 2^64-1.
 */
export function seedValue(v: unknown): bigint {
  const b = typeof v === 'bigint' ? v : typeof v === 'string' ? BigInt(v) : BigInt(Math.trunc(Number(v)));
  const max = 2n ** 64n - 1n;
  return b > max ? max : b < 0n ? 0n : b;
}

/** The seed input every sampler shares: INT 0..2^64-1 with control_after_generate. */
export const seedInput = (name = 'seed', tooltip = 'The random seed used for creating the noise.'): InputSpec =>
  t.int(name, { default: 0, min: 0, max: 0xffffffffffffffff, control_after_generate: true, tooltip });

type Def = Omit<NodeDefinition<NodeServices>, 'displayName' | 'description' | 'outputNode'> &
  Partial<Pick<NodeDefinition<NodeServices>, 'displayName' | 'description' | 'outputNode'>>;

export function defineNode(def: Def): NodeDefinition<NodeServices> {
  return { displayName: def.id, description: '', outputNode: false, ...def };
}
