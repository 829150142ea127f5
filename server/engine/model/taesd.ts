/**
 * TAESD / TAESDXL (madebyollin's tiny autoencoders, what ComfyUI lists as the `taesd` / `taesdxl` VAEs and uses for
 * previews) as ONNX graphs, from the published files' key layout (nn.Sequential indices, no prefix):
 * encoder: 0 conv(3,64), 1 block, 2 conv s2 (no bias), 3-5 blocks, 6 conv s2, 7-9 blocks, 10 conv s2, 11-13 blocks,
 *          14 conv(64, latent);
 * decoder: 0 tanh(x/3)*3, 1 conv(latent,64), 2 ReLU, 3-5 blocks, 6 nearest x2, 7 conv (no bias), 8-10 blocks,
 *          11 x2, 12 conv, 13-15 blocks, 16 x2, 17 conv, 18 block, 19 conv(64, 3).
 * A block is relu(conv(relu(conv(relu(conv(x))))) + x) with its convs at `{i}.conv.0/2/4` (3x3, bias), plus a 1x1
 * `{i}.skip` conv when channels change.
 * Engine conventions (like the AutoencoderKL graphs in vae.ts): the decoder takes the VAE-space latent (ComfyUI's
 * LATENT) and applies TAESD's (x - shift) * scale itself; it returns the image in [-1, 1] (ComfyUI's 2 * out - 1,
 * unclamped). The encoder takes the image in [-1, 1] and returns the VAE-space latent (out / scale + shift).
 * Example: buildTaesdDecoderGraph(safetensorsWeights(decFile), { scale: 0.18215, shift: 0 })
 */
import { conv2d, upsampleNearest2x } from './blocks.js';
import { GraphBuilder, type Value } from '../onnx/graph.js';
import type { WeightSource } from '../onnx/weights.js';

export interface TaesdScaling {
  /** the latent scaling factor of the family TAESD stands in for: taesd 0.18215, taesdxl 0.13025 */
  scale: number;
  shift: number;
}

/** ComfyUI's VAELoader numbers per TAESD name. */
export const TAESD_SCALING: Record<'taesd' | 'taesdxl', TaesdScaling> = {
  taesd: { scale: 0.18215, shift: 0 },
  taesdxl: { scale: 0.13025, shift: 0 },
};

const ENCODER_BLOCKS = [1, 3, 4, 5, 7, 8, 9, 11, 12, 13];
const ENCODER_DOWN = [2, 6, 10];
const DECODER_BLOCKS = [3, 4, 5, 8, 9, 10, 13, 14, 15, 18];
const DECODER_UP = [7, 12, 17];

function relu(g: GraphBuilder, x: Value): Value {
  return g.op.Relu(x);
}

function block(g: GraphBuilder, i: number, x: Value): Value {
  return g.scope(`block${i}`, () => {
    let h = relu(g, conv2d(g, `${i}.conv.0`, x, { padding: 1 }));
    h = relu(g, conv2d(g, `${i}.conv.2`, h, { padding: 1 }));
    h = conv2d(g, `${i}.conv.4`, h, { padding: 1 });
    const skip = g.hasWeight(`${i}.skip.weight`) ? conv2d(g, `${i}.skip`, x) : x;
    return relu(g, g.op.Add(h, skip));
  });
}

/** Latent channels of a TAESD decoder or encoder file (4 for taesd/taesdxl). */
export function taesdLatentChannels(w: WeightSource, part: 'encoder' | 'decoder'): number {
  return part === 'decoder' ? w.shape('1.weight')[1] : w.shape('14.weight')[0];
}

/** Why a file is not a TAESD encoder/decoder (missing or misshapen tensors); undefined when it is one. */
export function taesdFileProblem(w: WeightSource, part: 'encoder' | 'decoder'): string | undefined {
  const want = taesdTensorShapes(part, 4).filter((t) => t.shape.length === 4);
  for (const t of want) {
    const has = w.has ? w.has(t.name) : true;
    if (!has) return `not a TAESD ${part}: tensor ${t.name} is missing`;
    const s = w.shape(t.name);
    // the latent side may have other channel counts; every 64-channel conv must match exactly
    const ok = s.length === 4 && s[2] === t.shape[2] && s[3] === t.shape[3] && (s[0] === t.shape[0] || s[1] === 4);
    if (!ok) return `not a TAESD ${part}: ${t.name} has shape [${s}], expected [${t.shape}]`;
  }
  return undefined;
}

export function buildTaesdDecoderGraph(weights: WeightSource, s: TaesdScaling): GraphBuilder {
  const g = new GraphBuilder({ weights, dtype: 'float32', name: 'taesd_decoder' });
  const C = taesdLatentChannels(weights, 'decoder');
  let x = g.input('latent', 'float32', ['B', C, 'h', 'w']);
  x = g.op.Mul(g.op.Sub(x, g.scalar(s.shift)), g.scalar(s.scale));
  x = g.op.Mul(g.op.Tanh(g.op.Mul(x, g.scalar(1 / 3))), g.scalar(3)); // 0: soft clamp to (-3, 3)
  x = relu(g, conv2d(g, '1', x, { padding: 1 }));
  for (let i = 3; i <= 19; i++) {
    if (DECODER_BLOCKS.includes(i)) x = block(g, i, x);
    else if (DECODER_UP.includes(i)) x = conv2d(g, String(i), upsampleNearest2x(g, x), { padding: 1 });
  }
  x = conv2d(g, '19', x, { padding: 1 });
  g.output(g.op.Sub(g.op.Mul(x, g.scalar(2)), g.scalar(1)), 'image', 'float32', ['B', 3, 'H', 'W']);
  return g;
}

export function buildTaesdEncoderGraph(weights: WeightSource, s: TaesdScaling): GraphBuilder {
  const g = new GraphBuilder({ weights, dtype: 'float32', name: 'taesd_encoder' });
  let x = g.input('image', 'float32', ['B', 3, 'H', 'W']);
  x = g.op.Add(g.op.Mul(x, g.scalar(0.5)), g.scalar(0.5));
  x = conv2d(g, '0', x, { padding: 1 });
  for (let i = 1; i <= 13; i++) {
    if (ENCODER_BLOCKS.includes(i)) x = block(g, i, x);
    else if (ENCODER_DOWN.includes(i)) x = conv2d(g, String(i), x, { stride: 2, padding: 1 });
  }
  x = conv2d(g, '14', x, { padding: 1 });
  x = g.op.Add(g.op.Div(x, g.scalar(s.scale)), g.scalar(s.shift));
  g.output(x, 'mean', 'float32', ['B', 'C', 'h', 'w']);
  return g;
}

/** Every tensor of a TAESD encoder or decoder file (the test generator uses it). */
export function taesdTensorShapes(part: 'encoder' | 'decoder', latent: number): { name: string; shape: number[] }[] {
  const out: { name: string; shape: number[] }[] = [];
  const conv = (name: string, o: number, i: number, bias = true) => {
    out.push({ name: `${name}.weight`, shape: [o, i, 3, 3] });
    if (bias) out.push({ name: `${name}.bias`, shape: [o] });
  };
  const blk = (i: number) => {
    for (const c of [0, 2, 4]) conv(`${i}.conv.${c}`, 64, 64);
  };
  if (part === 'encoder') {
    conv('0', 64, 3);
    for (let i = 1; i <= 13; i++) {
      if (ENCODER_BLOCKS.includes(i)) blk(i);
      else if (ENCODER_DOWN.includes(i)) conv(String(i), 64, 64, false);
    }
    conv('14', latent, 64);
  } else {
    conv('1', 64, latent);
    for (let i = 3; i <= 18; i++) {
      if (DECODER_BLOCKS.includes(i)) blk(i);
      else if (DECODER_UP.includes(i)) conv(String(i), 64, 64, false);
    }
    conv('19', 3, 64);
  }
  return out;
}
