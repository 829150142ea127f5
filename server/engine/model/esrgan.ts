/**
 * ESRGAN / Real-ESRGAN (RRDBNet) upscale models: key-layout detection from a file's tensor names and shapes, and the
 * network as an ONNX graph. Everything (features, blocks, growth channels, x2 stages, pixel-unshuffle) is read from
 * the weights, the way spandrel reads them for ComfyUI's UpscaleModelLoader.
 *
 * Layouts published as safetensors (an optional `params_ema.` or `params.` wrapper in front of any; with both, EMA):
 * - old ESRGAN: model.0 (first conv), model.1.sub.{b}.RDB{r}.conv{c}.0 (dense blocks), model.1.sub.{nb} (trunk conv),
 *   model.{3k} (k-th x2 stage), then the HR conv and the last conv at model.{3u+2} and model.{3u+4};
 * - BasicSR / Real-ESRGAN: conv_first, body.{b}.rdb{r}.conv{c}, conv_body, conv_up{k}, conv_hr, conv_last;
 * - BSRGAN / RealSR: conv_first, RRDB_trunk.{b}.RDB{r}.conv{c}, trunk_conv, upconv{k}, HRconv, conv_last.
 * Real-ESRGAN's x2 (x1) models pixel-unshuffle the input by 2 (4) first: the first conv then takes 4x (16x) the
 * output channels.
 *
 * Graph: input `image` [1, Cin, H, W] in [0, 1] with H, W multiples of the unshuffle factor (callers pad:
 * esrganPadding); output `upscaled` [1, Cout, H*scale, W*scale] clamped to [0, 1] (spandrel clamps every call).
 * Example:
 *   const cfg = detectEsrgan(safetensorsWeights(file), file.keys());
 *   const s = await createSession(serializeModel(buildEsrganGraph(cfg, safetensorsWeights(file))));
 */
import { conv2d, upsampleNearest2x } from './blocks.js';
import { GraphBuilder, type Value } from '../onnx/graph.js';
import type { WeightSource } from '../onnx/weights.js';

export type EsrganLayout = 'esrgan' | 'basicsr' | 'bsrgan';

export interface EsrganConfig {
  layout: EsrganLayout;
  /** '' or 'params_ema.' */
  prefix: string;
  /** image channels in and out (the first conv sees inChannels * unshuffle^2) */
  inChannels: number;
  outChannels: number;
  features: number;
  blocks: number;
  growth: number;
  /** number of nearest-x2 + conv stages */
  upsamples: number;
  /** pixel-unshuffle factor applied to the input (1 = none) */
  unshuffle: 1 | 2 | 4;
  /** output size / input size */
  scale: number;
}

/** Why a file is not an upscale model this engine runs (the message says what was expected). */
export class UpscaleModelError extends Error {}

const LEAKY_SLOPE = 0.2; // every RRDBNet activation: LeakyReLU(0.2)
const RESIDUAL_SCALE = 0.2; // dense blocks and RRDBs add 0.2 x their output to their input

/** Module paths (without .weight/.bias) of one layout. */
function moduleNames(layout: EsrganLayout, prefix: string, blocks: number, upsamples: number) {
  const p = (s: string) => prefix + s;
  if (layout === 'esrgan')
    return {
      first: p('model.0'),
      dense: (b: number, r: number, c: number) => p(`model.1.sub.${b}.RDB${r}.conv${c}.0`),
      trunk: p(`model.1.sub.${blocks}`),
      up: (k: number) => p(`model.${3 * k}`),
      hr: p(`model.${3 * upsamples + 2}`),
      last: p(`model.${3 * upsamples + 4}`),
    };
  if (layout === 'basicsr')
    return {
      first: p('conv_first'),
      dense: (b: number, r: number, c: number) => p(`body.${b}.rdb${r}.conv${c}`),
      trunk: p('conv_body'),
      up: (k: number) => p(`conv_up${k}`),
      hr: p('conv_hr'),
      last: p('conv_last'),
    };
  return {
    first: p('conv_first'),
    dense: (b: number, r: number, c: number) => p(`RRDB_trunk.${b}.RDB${r}.conv${c}`),
    trunk: p('trunk_conv'),
    up: (k: number) => p(`upconv${k}`),
    hr: p('HRconv'),
    last: p('conv_last'),
  };
}

export function esrganModules(cfg: EsrganConfig) {
  return moduleNames(cfg.layout, cfg.prefix, cfg.blocks, cfg.upsamples);
}

/** Largest n such that `pattern` (with one (\d+) group) matches a key, plus one; 0 when none matches. */
function countIndexed(keys: readonly string[], pattern: RegExp): number {
  let n = 0;
  for (const k of keys) {
    const m = pattern.exec(k);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

const esc = (s: string) => s.replace(/\./g, '\\.');

/**
 * The RRDBNet configuration of a file, from its key names and shapes. Throws UpscaleModelError naming what is
 * missing or unsupported when the file is not an ESRGAN-family model.
 */
export function detectEsrgan(w: WeightSource, keys: readonly string[]): EsrganConfig {
  const keySet = new Set(keys);
  // BasicSR checkpoints flattened from {params, params_ema}: the EMA weights win, as in spandrel
  const prefix = keys.some((k) => k.startsWith('params_ema.'))
    ? 'params_ema.'
    : keys.length > 0 && keys.every((k) => k.startsWith('params.'))
      ? 'params.'
      : '';
  const has = (k: string) => keySet.has(prefix + k);
  let layout: EsrganLayout;
  if (has('model.0.weight') && has('model.1.sub.0.RDB1.conv1.0.weight')) layout = 'esrgan';
  else if (has('conv_first.weight') && has('body.0.rdb1.conv1.weight')) layout = 'basicsr';
  else if (has('conv_first.weight') && has('RRDB_trunk.0.RDB1.conv1.weight')) layout = 'bsrgan';
  else if (has('model.0.weight') && has('model.1.sub.0.RDB1.conv1x1.weight'))
    throw new UpscaleModelError('ESRGAN+ models (RDB conv1x1 paths) are not supported');
  else
    throw new UpscaleModelError(
      `unknown upscale model architecture: not an ESRGAN/RRDBNet model (no model.0 + model.1.sub.0.RDB1, ` +
        `conv_first + body.0.rdb1 or conv_first + RRDB_trunk.0.RDB1 weights; first keys: ${keys.slice(0, 4).join(', ')})`,
    );

  const pre = esc(prefix);
  let blocks: number, upsamples: number;
  if (layout === 'esrgan') {
    blocks = countIndexed(keys, new RegExp(`^${pre}model\\.1\\.sub\\.(\\d+)\\.RDB1\\.conv1\\.0\\.weight$`));
    const seqLen = countIndexed(keys, new RegExp(`^${pre}model\\.(\\d+)\\.`));
    if ((seqLen - 5) % 3 !== 0 || seqLen < 5)
      throw new UpscaleModelError(`unexpected ESRGAN layer sequence (model.0 .. model.${seqLen - 1})`);
    upsamples = (seqLen - 5) / 3;
  } else {
    const body = layout === 'basicsr' ? 'body\\.(\\d+)\\.rdb1' : 'RRDB_trunk\\.(\\d+)\\.RDB1';
    blocks = countIndexed(keys, new RegExp(`^${pre}${body}\\.conv1\\.weight$`));
    const up = layout === 'basicsr' ? 'conv_up' : 'upconv';
    upsamples = countIndexed(keys, new RegExp(`^${pre}${up}(\\d+)\\.weight$`));
    upsamples = Math.max(0, upsamples - 1); // conv_up1 .. conv_upN: N stages
  }

  const names = moduleNames(layout, prefix, blocks, upsamples);
  const shape = (module: string) => {
    const k = `${module}.weight`;
    if (!keySet.has(k)) throw new UpscaleModelError(`RRDBNet weight ${k} is missing`);
    const s = w.shape(k);
    if (s.length !== 4) throw new UpscaleModelError(`${k} has shape [${s}], expected a conv weight [out, in, kh, kw]`);
    return s;
  };
  const [features, firstIn] = shape(names.first);
  const outChannels = shape(names.last)[0];
  const growth = shape(names.dense(0, 1, 1))[0];
  // every expected tensor is present with the shape the network needs: a wrong file fails here, not mid-run
  const expect = (module: string, out: number, inp: number) => {
    const s = shape(module);
    if (s[0] !== out || s[1] !== inp || s[2] !== 3 || s[3] !== 3)
      throw new UpscaleModelError(`${module}.weight has shape [${s}], expected [${out}, ${inp}, 3, 3]`);
  };
  expect(names.first, features, firstIn);
  for (let b = 0; b < blocks; b++)
    for (let r = 1; r <= 3; r++)
      for (let c = 1; c <= 5; c++)
        expect(names.dense(b, r, c), c === 5 ? features : growth, features + (c - 1) * growth);
  expect(names.trunk, features, features);
  for (let k = 1; k <= upsamples; k++) expect(names.up(k), features, features);
  expect(names.hr, features, features);
  expect(names.last, outChannels, features);
  if (blocks === 0) throw new UpscaleModelError('RRDBNet without RRDB blocks');

  // Real-ESRGAN's pixel-unshuffle variants: the first conv sees 4x or 16x the image channels
  const unshuffle: 1 | 2 | 4 = firstIn === outChannels * 4 ? 2 : firstIn === outChannels * 16 ? 4 : 1;
  const scale = 2 ** upsamples / unshuffle;
  if (scale < 1 || !Number.isInteger(scale))
    throw new UpscaleModelError(`RRDBNet with ${upsamples} x2 stages and unshuffle ${unshuffle}: scale ${scale}`);
  return {
    layout,
    prefix,
    inChannels: firstIn / (unshuffle * unshuffle),
    outChannels,
    features,
    blocks,
    growth,
    upsamples,
    unshuffle,
    scale,
  };
}

/**
 * How a call pads an input of h x w before the network (spandrel's size requirements: at least 2 pixels, and a
 * multiple of 4 for unshuffle models): [padBottom, padRight]. Reflect first, replicate for what reflect cannot reach.
 */
export function esrganPadding(cfg: EsrganConfig, h: number, w: number): [number, number] {
  const multiple = cfg.unshuffle > 1 ? 4 : 1;
  const need = (x: number) => {
    const m = Math.max(2, x);
    return Math.ceil(m / multiple) * multiple - x;
  };
  return [need(h), need(w)];
}

function leaky(g: GraphBuilder, x: Value): Value {
  return g.node('LeakyRelu', [x], { alpha: LEAKY_SLOPE })[0];
}

/** Residual dense block: five 3x3 convs, each seeing the input and every earlier output (channel concat). */
function denseBlock(g: GraphBuilder, conv: (c: number) => string, x: Value): Value {
  const feats = [x];
  for (let c = 1; c <= 4; c++) {
    const inp = feats.length === 1 ? x : g.op.Concat(feats, { axis: 1 });
    feats.push(leaky(g, conv2d(g, conv(c), inp, { padding: 1 })));
  }
  const x5 = conv2d(g, conv(5), g.op.Concat(feats, { axis: 1 }), { padding: 1 });
  return g.op.Add(g.op.Mul(x5, g.scalar(RESIDUAL_SCALE)), x);
}

/** torch.pixel_unshuffle: [1, C, H, W] -> [1, C*f*f, H/f, W/f], channel c*f*f + i*f + j from pixel (f*y+i, f*x+j). */
function pixelUnshuffle(g: GraphBuilder, x: Value, channels: number, f: number): Value {
  const hw = g.op.Shape(x, { start: 2, end: 4 }); // [H, W]
  const small = g.op.Div(hw, g.constInt64([f, f])); // [H/f, W/f]
  const h = g.op.Slice(small, g.constInt64([0]), g.constInt64([1]));
  const w = g.op.Slice(small, g.constInt64([1]), g.constInt64([2]));
  const ff = g.constInt64([f]);
  const split = g.op.Concat([g.constInt64([0, channels]), h, ff, w, ff], { axis: 0 });
  const six = g.op.Transpose(g.op.Reshape(x, split), { perm: [0, 1, 3, 5, 2, 4] }); // [1, C, f, f, H/f, W/f]
  const merged = g.op.Concat([g.constInt64([0, channels * f * f]), h, w], { axis: 0 });
  return g.op.Reshape(six, merged);
}

/** The whole RRDBNet: `image` [1, Cin, H, W] in [0, 1] -> `upscaled` [1, Cout, sH, sW] clamped to [0, 1]. */
export function buildEsrganGraph(cfg: EsrganConfig, weights: WeightSource): GraphBuilder {
  const g = new GraphBuilder({ weights, dtype: 'float32', name: 'esrgan' });
  const n = esrganModules(cfg);
  let x = g.input('image', 'float32', [1, cfg.inChannels, 'H', 'W']);
  if (cfg.unshuffle > 1) x = pixelUnshuffle(g, x, cfg.inChannels, cfg.unshuffle);
  const fea = conv2d(g, n.first, x, { padding: 1 });
  let t = fea;
  for (let b = 0; b < cfg.blocks; b++) {
    t = g.scope(`rrdb${b}`, () => {
      let h = t;
      for (let r = 1; r <= 3; r++) h = denseBlock(g, (c) => n.dense(b, r, c), h);
      return g.op.Add(g.op.Mul(h, g.scalar(RESIDUAL_SCALE)), t);
    });
  }
  x = g.op.Add(fea, conv2d(g, n.trunk, t, { padding: 1 }));
  for (let k = 1; k <= cfg.upsamples; k++) x = leaky(g, conv2d(g, n.up(k), upsampleNearest2x(g, x), { padding: 1 }));
  x = leaky(g, conv2d(g, n.hr, x, { padding: 1 }));
  x = conv2d(g, n.last, x, { padding: 1 });
  const clamped = g.node('Clip', [x, g.scalar(0), g.scalar(1)])[0];
  g.output(clamped, 'upscaled', 'float32', [1, cfg.outChannels, 'sH', 'sW']);
  return g;
}

/** Every tensor of an RRDBNet with this configuration, in the config's layout (the generator in tools/ uses it). */
export function esrganTensorShapes(cfg: Omit<EsrganConfig, 'scale'>): { name: string; shape: number[] }[] {
  const n = moduleNames(cfg.layout, cfg.prefix, cfg.blocks, cfg.upsamples);
  const out: { name: string; shape: number[] }[] = [];
  const conv = (m: string, o: number, i: number) =>
    out.push({ name: `${m}.weight`, shape: [o, i, 3, 3] }, { name: `${m}.bias`, shape: [o] });
  const F = cfg.features,
    G = cfg.growth;
  conv(n.first, F, cfg.inChannels * cfg.unshuffle * cfg.unshuffle);
  for (let b = 0; b < cfg.blocks; b++)
    for (let r = 1; r <= 3; r++) for (let c = 1; c <= 5; c++) conv(n.dense(b, r, c), c === 5 ? F : G, F + (c - 1) * G);
  conv(n.trunk, F, F);
  for (let k = 1; k <= cfg.upsamples; k++) conv(n.up(k), F, F);
  conv(n.hr, F, F);
  conv(n.last, cfg.outChannels, F);
  return out;
}

/**
 * Source row (or column) of each padded position along an axis of `size` grown by `pad` at its end: torch's
 * reflect padding (at most size - 1 positions), then replicate of the last padded position for the rest.
 */
function paddedIndex(size: number, pad: number): Int32Array {
  const reflect = Math.min(pad, size - 1);
  const idx = new Int32Array(size + pad);
  for (let j = 0; j < size + pad; j++)
    idx[j] = j < size ? j : j < size + reflect ? 2 * size - 2 - j : idx[size + reflect - 1];
  return idx;
}

/** x [1, C, h, w] padded at the bottom and right by esrganPadding (a copy; x itself when nothing is needed). */
export function padForEsrgan(cfg: EsrganConfig, x: { shape: number[]; data: Float32Array }) {
  const [, C, h, w] = x.shape;
  const [ph, pw] = esrganPadding(cfg, h, w);
  if (!ph && !pw) return x;
  const iy = paddedIndex(h, ph),
    ix = paddedIndex(w, pw);
  const H = h + ph,
    W = w + pw;
  const data = new Float32Array(C * H * W);
  for (let c = 0; c < C; c++)
    for (let y = 0; y < H; y++) {
      const src = (c * h + iy[y]) * w;
      const dst = (c * H + y) * W;
      for (let xx = 0; xx < W; xx++) data[dst + xx] = x.data[src + ix[xx]];
    }
  return { shape: [1, C, H, W], data };
}

/** The top-left [1, C, h, w] of y (what a padded call returns for the unpadded input's h x w output). */
export function cropTopLeft(y: { shape: number[]; data: Float32Array }, h: number, w: number) {
  const [, C, H, W] = y.shape;
  if (H === h && W === w) return y;
  const data = new Float32Array(C * h * w);
  for (let c = 0; c < C; c++)
    for (let r = 0; r < h; r++) data.set(y.data.subarray((c * H + r) * W, (c * H + r) * W + w), (c * h + r) * w);
  return { shape: [1, C, h, w], data };
}
