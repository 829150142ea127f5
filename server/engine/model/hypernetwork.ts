/**
 * Hypernetworks with ComfyUI's semantics (comfy_extras/nodes_hypernetwork.py): per attention input width, two small
 * MLPs, one for the keys' input and one for the values' input. In every transformer block, self-attention (width =
 * the block's channels) and cross-attention (width = the context's) feed to_k with k + mlp0(k) * strength and to_v
 * with v + mlp1(v) * strength when the hypernetwork has that width; several hypernetworks chain in order.
 * An MLP is its Linear layers in index order, each followed by the activation (but not the last layer's unless
 * activate_output), and when is_layer_norm by the next stored layer as a LayerNorm (ComfyUI's walk over the layer
 * names; with layer norm the last Linear also gets the activation, as there). Dropout is identity here: ComfyUI
 * builds its Dropout layers in training mode, so with use_dropout its results vary from run to run; tcd-studio gives
 * the inference result (without use_dropout the two agree).
 *
 * Files: A1111's pickled .pt dicts, as ComfyUI reads them, through a restricted unpickler that only rebuilds
 * tensors and plain values (io/torch-pickle.ts: nothing in the file runs); or the same content as .safetensors:
 * tensors named `{width}.{0|1}.{layer}.weight|bias` (0: keys, 1: values; e.g. `768.0.linear.0.weight`) and the
 * options as metadata strings (activation_func, is_layer_norm, activate_output, ...).
 * Example:
 *   const hn = readHypernetwork(openHypernetworkSource(path), 0.8);
 *   const { k, v } = hypernetworkKV(g, [hn], x, 768) ?? { k: x, v: x };
 */
import { readTorchFile, type TorchTensor } from '../io/torch-pickle.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { FloatAttr, type GraphBuilder, type Value } from '../onnx/graph.js';
import type { WeightSource } from '../onnx/weights.js';
import { layerNorm, linear } from './blocks.js';

export const HYPERNETWORK_ACTIVATIONS = [
  'linear',
  'relu',
  'leakyrelu',
  'elu',
  'swish',
  'tanh',
  'sigmoid',
  'softsign',
  'mish',
] as const;
export type HypernetworkActivation = (typeof HYPERNETWORK_ACTIVATIONS)[number];

type Layer = { kind: 'linear' | 'norm'; name: string } | { kind: 'act' };

export interface Hypernetwork {
  strength: number;
  activation: HypernetworkActivation;
  /** width -> [keys MLP, values MLP], layers named by their stored prefix (`768.0.linear.0`) */
  modules: Map<number, [Layer[], Layer[]]>;
  /** the stored tensors, by name */
  weights: WeightSource;
}

export class HypernetworkFormatError extends Error {}

const truthy = (v: string | undefined) => v !== undefined && /^(true|1)$/i.test(v.trim());

/** Layer names of one MLP in index order: `linear.0`, `linear.2`, ... (by every number in the name). */
function layerNames(keys: string[]): string[] {
  const names = keys.filter((k) => k.endsWith('.weight')).map((k) => k.slice(0, -'.weight'.length));
  const nums = (s: string) => (s.match(/\d+/g) ?? []).map(Number);
  return names.sort((a, b) => {
    const x = nums(a),
      y = nums(b);
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
    return x.length - y.length || a.localeCompare(b);
  });
}

/** ComfyUI's walk: Linear, activation unless last (or activate_output), LayerNorm taking the next name. */
function mlp(names: string[], activation: HypernetworkActivation, layerNormOn: boolean, activateOutput: boolean) {
  const layers: Layer[] = [];
  for (let i = 0; i < names.length; i++) {
    const last = i === names.length - 1;
    layers.push({ kind: 'linear', name: names[i] });
    if (activation !== 'linear' && (!last || activateOutput)) layers.push({ kind: 'act' });
    if (layerNormOn) {
      i++;
      if (i >= names.length) throw new HypernetworkFormatError(`layer norm after ${names[i - 1]} is missing`);
      layers.push({ kind: 'norm', name: names[i] });
    }
  }
  return layers;
}

/** What a hypernetwork is read from: a SafetensorsFile, or a .pt's content (torchHypernetworkSource). */
export interface HypernetworkSource {
  metadata: Record<string, string>;
  keys(): string[];
  shape(name: string): number[];
  readFloat32(name: string): Float32Array;
  has(name: string): boolean;
}

/**
 * A pickled A1111/ComfyUI .pt hypernetwork ({width: (keys state dict, values state dict), activation_func: ...}) as a
 * source in the .safetensors layout, read with the restricted unpickler (no code runs).
 */
export function torchHypernetworkSource(path: string): HypernetworkSource {
  const sd = readTorchFile(path);
  if (!(sd instanceof Map)) throw new HypernetworkFormatError('the .pt file does not hold a dict');
  const tensors = new Map<string, TorchTensor>();
  const metadata: Record<string, string> = {};
  for (const [k, v] of sd) {
    const width = typeof k === 'number' ? k : /^\d+$/.test(String(k)) ? Number(k) : null;
    if (width === null) {
      if (typeof v === 'string' || typeof v === 'number') metadata[String(k)] = String(v);
      else if (typeof v === 'boolean') metadata[String(k)] = v ? 'True' : 'False';
      continue;
    }
    if (!Array.isArray(v) || v.length < 2) throw new HypernetworkFormatError(`width ${width} is not a pair of modules`);
    (v as unknown[]).slice(0, 2).forEach((m, i) => {
      if (!(m instanceof Map)) throw new HypernetworkFormatError(`width ${width} module ${i} is not a state dict`);
      for (const [name, t] of m) tensors.set(`${width}.${i}.${String(name)}`, t as TorchTensor);
    });
  }
  const get = (n: string) => {
    const t = tensors.get(n);
    if (!t) throw new HypernetworkFormatError(`no tensor ${n}`);
    return t;
  };
  return {
    metadata,
    keys: () => [...tensors.keys()],
    shape: (n) => [...get(n).shape],
    readFloat32: (n) => get(n).data,
    has: (n) => tensors.has(n),
  };
}

/** The source of a hypernetwork file: .safetensors directly, anything else as a torch.save pickle. */
export function openHypernetworkSource(path: string): HypernetworkSource {
  return /\.(safetensors|sft)$/i.test(path) ? SafetensorsFile.open(path) : torchHypernetworkSource(path);
}

/** A hypernetwork at `strength`; throws HypernetworkFormatError for what it cannot read. */
export function readHypernetwork(file: HypernetworkSource, strength: number): Hypernetwork {
  const meta = file.metadata;
  const activation = (meta.activation_func ?? 'linear') as HypernetworkActivation;
  if (!HYPERNETWORK_ACTIVATIONS.includes(activation))
    throw new HypernetworkFormatError(`activation_func "${activation}" is not one ComfyUI supports`);
  const byModule = new Map<string, string[]>();
  for (const k of file.keys()) {
    const m = /^(\d+)\.([01])\.(.+)$/.exec(k);
    if (!m) throw new HypernetworkFormatError(`tensor "${k}" is not named {width}.{0|1}.{layer}`);
    const id = `${m[1]}.${m[2]}`;
    byModule.set(id, [...(byModule.get(id) ?? []), m[3]]);
  }
  if (!byModule.size) throw new HypernetworkFormatError('it holds no hypernetwork layers');
  const modules = new Map<number, [Layer[], Layer[]]>();
  for (const width of new Set([...byModule.keys()].map((id) => Number(id.split('.')[0])))) {
    const pair = ([0, 1] as const).map((i) => {
      const keys = byModule.get(`${width}.${i}`);
      if (!keys) throw new HypernetworkFormatError(`width ${width} has no ${i ? 'values' : 'keys'} module`);
      const layers = mlp(layerNames(keys), activation, truthy(meta.is_layer_norm), truthy(meta.activate_output));
      return layers.map((l) => ('name' in l ? { ...l, name: `${width}.${i}.${l.name}` } : l));
    });
    modules.set(width, pair as [Layer[], Layer[]]);
  }
  return {
    strength,
    activation,
    modules,
    weights: {
      shape: (n) => file.shape(n),
      read: (n) => file.readFloat32(n),
      has: (n) => file.has(n),
    },
  };
}

const PREFIX = 'hypernetwork';

/** The UNet's weights plus every hypernetwork's tensors, as `hypernetwork.{index}.{stored name}`. */
export function withHypernetworkWeights(base: WeightSource, nets: readonly Hypernetwork[]): WeightSource {
  const route = (name: string): [WeightSource, string] | null => {
    const m = /^hypernetwork\.(\d+)\.(.+)$/.exec(name);
    return m && nets[Number(m[1])] ? [nets[Number(m[1])].weights, m[2]] : null;
  };
  return {
    ...base,
    shape: (n) => (route(n) ? route(n)![0].shape(route(n)![1]) : base.shape(n)),
    read: (n) => (route(n) ? route(n)![0].read(route(n)![1]) : base.read(n)),
    has: (n) => (route(n) ? route(n)![0].has!(route(n)![1]) : base.has ? base.has(n) : true),
  };
}

function activate(g: GraphBuilder, a: HypernetworkActivation, x: Value): Value {
  const f = (v: number) => new FloatAttr(v);
  switch (a) {
    case 'relu':
      return g.op.Relu(x);
    case 'leakyrelu':
      return g.node('LeakyRelu', [x], { alpha: f(0.01) })[0];
    case 'elu':
      return g.node('Elu', [x], { alpha: f(1) })[0];
    case 'swish': // ComfyUI maps "swish" to torch's Hardswish: x * relu6(x + 3) / 6
      return g.op.Mul(x, g.node('HardSigmoid', [x], { alpha: f(1 / 6), beta: f(0.5) })[0]);
    case 'tanh':
      return g.op.Tanh(x);
    case 'sigmoid':
      return g.op.Sigmoid(x);
    case 'softsign':
      return g.node('Softsign', [x])[0];
    case 'mish':
      return g.op.Mul(x, g.op.Tanh(g.node('Softplus', [x])[0]));
    default:
      return x;
  }
}

/**
 * The keys' and values' inputs for an attention whose keys come from `x` (width channels), after every hypernetwork
 * of that width in order; null when none has it (the attention then reads x for both, unchanged).
 */
export function hypernetworkKV(
  g: GraphBuilder,
  nets: readonly Hypernetwork[],
  x: Value,
  width: number,
): { k: Value; v: Value } | null {
  if (!nets.some((n) => n.modules.has(width))) return null;
  let k = x,
    v = x;
  nets.forEach((net, index) => {
    const pair = net.modules.get(width);
    if (!pair) return;
    const run = (layers: Layer[], input: Value) =>
      g.scope(`${PREFIX}.${index}.${width}`, () => {
        let h = input;
        for (const l of layers) {
          if (l.kind === 'act') h = activate(g, net.activation, h);
          else if (l.kind === 'linear') h = linear(g, `${PREFIX}.${index}.${l.name}`, h);
          else h = layerNorm(g, `${PREFIX}.${index}.${l.name}`, h);
        }
        return g.op.Add(input, g.op.Mul(h, g.scalar(net.strength)));
      });
    [k, v] = [run(pair[0], k), run(pair[1], v)];
  });
  return { k, v };
}
