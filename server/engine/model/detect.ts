/**
 * Checkpoint family detection: reads only tensor names and shapes and returns the ModelConfig that model code builds
 * from. Every size comes from a shape; what shapes cannot tell (head split, VAE scale, clip skip, pad token,
 * activation) comes from the family rules below.
 * Supported: SD1.x single-file (LDM keys) and SDXL base single-file (SGM keys).
 * Example: const f = SafetensorsFile.open(path); const cfg = detectCheckpoint(f); cfg.family === 'sdxl'
 */
import type { ModelConfig, ModelFamily, TextEncoderConfig, UNetConfig, VaeConfig } from './config.js';

/** Anything that can list tensor names and give their shapes: a SafetensorsFile, or keySourceOf(list). */
export interface KeySource {
  keys(): string[];
  shape(name: string): number[];
  /** file path, used only in error messages */
  readonly path?: string;
  /** safetensors __metadata__, read only for the SAI model-spec prediction type */
  readonly metadata?: Record<string, string>;
}

const SUPPORTED_FAMILIES =
  'SD1.x (LDM keys model.diffusion_model.*, cond_stage_model.transformer.*, first_stage_model.*) and ' +
  'SDXL base (SGM keys conditioner.embedders.0.transformer.* CLIP-L, conditioner.embedders.1.model.* OpenCLIP-G, model.diffusion_model.label_emb.*)';

export class UnsupportedCheckpointError extends Error {
  constructor(what: string) {
    super(`${what}. Supported checkpoint families: ${SUPPORTED_FAMILIES}`);
    this.name = 'UnsupportedCheckpointError';
  }
}

/** What the shapes cannot say, per family (ldm/sgm configs of the released models). */
const FAMILY_RULES: Record<
  ModelFamily,
  { unetHeads: number | null; unetHeadChannels: number | null; vaeScale: number; clipSkip: number }
> = {
  sd1: { unetHeads: 8, unetHeadChannels: null, vaeScale: 0.18215, clipSkip: -1 },
  sdxl: { unetHeads: null, unetHeadChannels: 64, vaeScale: 0.13025, clipSkip: -2 },
};
const CLIP_HEAD_CHANNELS = 64;
const CLIP_EOS = 49407;
const NORM_GROUPS = 32;

export function keySourceOf(entries: readonly { name: string; shape: number[] }[]): KeySource {
  const m = new Map(entries.map((e) => [e.name, e.shape]));
  return {
    keys: () => [...m.keys()],
    shape: (name) => {
      const s = m.get(name);
      if (!s) throw new Error(`no tensor "${name}"`);
      return [...s];
    },
  };
}

/** Key lookups with errors that say which tensor a detection step needed. */
class Keys {
  readonly set: Set<string>;
  constructor(
    readonly src: KeySource,
    readonly label: string,
  ) {
    this.set = new Set(src.keys());
  }
  has(name: string): boolean {
    return this.set.has(name);
  }
  shape(name: string): number[] {
    if (!this.set.has(name))
      throw new UnsupportedCheckpointError(`${this.label}: expected tensor "${name}" is missing`);
    return this.src.shape(name);
  }
  anyWithPrefix(prefix: string): boolean {
    for (const k of this.set) if (k.startsWith(prefix)) return true;
    return false;
  }
  /** number of distinct integers N in keys `${prefix}N.…` (checks they run 0..N-1) */
  count(prefix: string): number {
    const seen = new Set<number>();
    for (const k of this.set) {
      if (!k.startsWith(prefix)) continue;
      const m = /^(\d+)\./.exec(k.slice(prefix.length));
      if (m) seen.add(Number(m[1]));
    }
    for (let i = 0; i < seen.size; i++)
      if (!seen.has(i)) throw new UnsupportedCheckpointError(`${this.label}: ${prefix}N has a gap at N=${i}`);
    return seen.size;
  }
  div(a: number, b: number, what: string): number {
    if (b <= 0 || a % b !== 0)
      throw new UnsupportedCheckpointError(`${this.label}: ${what} (${a}/${b}) is not a whole number`);
    return a / b;
  }
}

export function detectCheckpoint(source: KeySource): ModelConfig {
  const k = new Keys(source, source.path ? source.path.split(/[\\/]/).pop()! : 'checkpoint');
  let family: ModelFamily;
  let textEncoders: TextEncoderConfig[];
  if (k.anyWithPrefix('conditioner.embedders.')) {
    family = 'sdxl';
    textEncoders = [];
    for (let i = 0, n = k.count('conditioner.embedders.'); i < n; i++) {
      const p = `conditioner.embedders.${i}.`;
      const te = hfClip(k, `${p}transformer.`) ?? openClip(k, `${p}model.`);
      if (!te)
        throw new UnsupportedCheckpointError(
          `${k.label}: conditioner.embedders.${i} is neither a CLIP-L (transformer.*) nor an OpenCLIP (model.*) text encoder`,
        );
      textEncoders.push(te);
    }
    const names = textEncoders.map((t) => t.naming).join(',');
    if (names !== 'hf,openclip')
      throw new UnsupportedCheckpointError(
        `${k.label}: SGM checkpoint with text encoders [${names}], SDXL base has [CLIP-L, OpenCLIP-G] (a refiner?)`,
      );
  } else if (k.anyWithPrefix('cond_stage_model.transformer.')) {
    family = 'sd1';
    const te = hfClip(k, 'cond_stage_model.transformer.');
    if (!te)
      throw new UnsupportedCheckpointError(`${k.label}: cond_stage_model.transformer.* is not a CLIP text model`);
    textEncoders = [te];
  } else if (k.anyWithPrefix('cond_stage_model.model.')) {
    throw new UnsupportedCheckpointError(
      `${k.label}: looks like SD2.x (OpenCLIP-H text encoder under cond_stage_model.model.*), which is not supported`,
    );
  } else {
    throw new UnsupportedCheckpointError(
      `${k.label}: no known text encoder keys (cond_stage_model.transformer.* or conditioner.embedders.*); not an SD1.x/SDXL single-file checkpoint`,
    );
  }
  if (!k.anyWithPrefix('model.diffusion_model.'))
    throw new UnsupportedCheckpointError(`${k.label}: no UNet keys (model.diffusion_model.*)`);
  if (!k.anyWithPrefix('first_stage_model.'))
    throw new UnsupportedCheckpointError(`${k.label}: no VAE keys (first_stage_model.*)`);
  const rules = FAMILY_RULES[family];
  const pooled = textEncoders.find((t) => t.projectionDim !== null)?.projectionDim ?? null;
  const unet = detectUNet(k, 'model.diffusion_model.', rules, pooled);
  if ((family === 'sdxl') !== (unet.adm !== null))
    throw new UnsupportedCheckpointError(
      `${k.label}: ${family} text encoders with${unet.adm ? '' : 'out'} a label_emb (ADM) UNet input`,
    );
  const context = textEncoders.reduce((s, t) => s + t.width, 0);
  if (unet.contextDim !== context)
    throw new UnsupportedCheckpointError(
      `${k.label}: UNet context width ${unet.contextDim} does not match the text encoders' ${context}`,
    );
  return {
    family,
    textEncoders,
    unet,
    vae: detectVae(k, 'first_stage_model.', rules.vaeScale),
    defaultClipSkip: rules.clipSkip,
    predictionType: predictionType(k),
  };
}

export class UnsupportedVaeError extends Error {
  constructor(what: string) {
    super(what);
    this.name = 'UnsupportedVaeError';
  }
}

/**
 * A VAE-only file (models/vae, ComfyUI's VAELoader): the single-file (LDM) layout, keys `encoder.*`, `decoder.*`,
 * `quant_conv.*`, `post_quant_conv.*` at the top level (or under `first_stage_model.`). null when the file is not
 * one; layouts it cannot run (diffusers' VAE, TAESD) are refused naming what they are.
 */
export function detectVaeFile(source: KeySource): VaeConfig | null {
  const k = new Keys(source, source.path ? source.path.split(/[\\/]/).pop()! : 'vae');
  if (k.anyWithPrefix('model.diffusion_model.')) return null; // a full checkpoint
  for (const p of ['', 'first_stage_model.', 'vae.']) {
    if (
      k.has(`${p}decoder.conv_in.weight`) &&
      k.has(`${p}encoder.conv_in.weight`) &&
      k.has(`${p}post_quant_conv.weight`)
    ) {
      if (k.anyWithPrefix(`${p}decoder.up_blocks.`)) break;
      return detectVae(k, p, FAMILY_RULES.sd1.vaeScale);
    }
  }
  if (k.anyWithPrefix('decoder.up_blocks.') || k.anyWithPrefix('encoder.down_blocks.')) {
    throw new UnsupportedVaeError(
      `${k.label}: a VAE in diffusers' layout (encoder.down_blocks.*); use the single-file (LDM) version of this VAE`,
    );
  }
  if (k.anyWithPrefix('decoder.layers.') || k.anyWithPrefix('encoder.layers.') || k.has('1.conv.0.weight')) {
    throw new UnsupportedVaeError(`${k.label}: a TAESD preview VAE, which tcd-studio does not run`);
  }
  return null;
}

/**
 * The config of a VAE-only file: only `vae` is real. Its family is unknown from shapes (SD1 and SDXL VAEs share the
 * architecture), so it takes SDXL's rules (admission counts its VAE in float32, the dtype of its fp16 overflow
 * fallback; the latent scale is the model's business, not the VAE's). Asking it for a UNet or text encoder is an error.
 */
export function vaeOnlyConfig(label: string, vae: VaeConfig): ModelConfig {
  return {
    family: 'sdxl',
    textEncoders: [],
    vae,
    defaultClipSkip: -1,
    predictionType: 'epsilon',
    get unet(): UNetConfig {
      throw new UnsupportedCheckpointError(`${label} is a VAE file: it has no UNet`);
    },
  };
}

/** A checkpoint or a VAE-only file, by its keys. */
export function detectModelFile(source: KeySource): ModelConfig {
  const vae = detectVaeFile(source);
  return vae ? vaeOnlyConfig(source.path ? source.path.split(/[\\/]/).pop()! : 'vae', vae) : detectCheckpoint(source);
}

/**
 * Shapes cannot tell epsilon from v-prediction; two markers can: an empty `v_pred` tensor (ComfyUI's convention)
 * or the SAI model-spec metadata `modelspec.prediction_type` = 'v'. Anything else is epsilon.
 */
function predictionType(k: Keys): ModelConfig['predictionType'] {
  if (k.has('v_pred')) return 'v_prediction';
  const spec = k.src.metadata?.['modelspec.prediction_type'];
  return spec === 'v' || spec === 'v_prediction' ? 'v_prediction' : 'epsilon';
}

/** transformers CLIPTextModel, with or without the 'text_model.' level */
function hfClip(k: Keys, base: string): TextEncoderConfig | null {
  const prefix = [`${base}text_model.`, base].find((p) => k.has(`${p}embeddings.token_embedding.weight`));
  if (!prefix) return null;
  const [vocab, width] = k.shape(`${prefix}embeddings.token_embedding.weight`);
  return {
    prefix,
    naming: 'hf',
    width,
    layers: k.count(`${prefix}encoder.layers.`),
    heads: k.div(width, CLIP_HEAD_CHANNELS, `${prefix} width / 64 channels per head`),
    intermediate: k.shape(`${prefix}encoder.layers.0.mlp.fc1.weight`)[0],
    vocab,
    maxPositions: k.shape(`${prefix}embeddings.position_embedding.weight`)[0],
    activation: 'quick_gelu',
    projectionDim: null,
    padToken: CLIP_EOS,
    layerNormEps: 1e-5,
  };
}

/** open_clip TextTransformer (SDXL's OpenCLIP ViT-bigG text tower) */
function openClip(k: Keys, prefix: string): TextEncoderConfig | null {
  if (!k.has(`${prefix}token_embedding.weight`)) return null;
  const [vocab, width] = k.shape(`${prefix}token_embedding.weight`);
  const proj = `${prefix}text_projection`;
  return {
    prefix,
    naming: 'openclip',
    width,
    layers: k.count(`${prefix}transformer.resblocks.`),
    heads: k.div(width, CLIP_HEAD_CHANNELS, `${prefix} width / 64 channels per head`),
    intermediate: k.shape(`${prefix}transformer.resblocks.0.mlp.c_fc.weight`)[0],
    vocab,
    maxPositions: k.shape(`${prefix}positional_embedding`)[0],
    activation: 'gelu',
    projectionDim: k.has(proj) ? k.shape(proj)[1] : null, // used as x @ P: [width, proj]
    padToken: 0,
    layerNormEps: 1e-5,
  };
}

/**
 * The UNet config under prefix `p` of any key source (a ControlNet's encoder too: it has no out.* and no pooled
 * width, so outChannels falls back to inChannels and `pooled` null leaves the ADM split to the caller).
 */
export function detectUNetConfig(
  source: KeySource,
  p: string,
  family: ModelFamily,
  pooled: number | null,
  label: string,
): UNetConfig {
  return detectUNet(new Keys(source, label), p, FAMILY_RULES[family], pooled, true);
}

function detectUNet(
  k: Keys,
  p: string,
  rules: (typeof FAMILY_RULES)[ModelFamily],
  pooled: number | null,
  encoderOnly = false,
): UNetConfig {
  const [modelChannels, inChannels] = k.shape(`${p}input_blocks.0.0.weight`);
  const nInput = k.count(`${p}input_blocks.`);
  // walk input blocks 1..n-1: resblocks of a level, then a downsampler (…0.op) except after the last level
  const levels: number[][] = [[]];
  for (let i = 1; i < nInput; i++) {
    if (k.has(`${p}input_blocks.${i}.0.op.weight`)) levels.push([]);
    else levels[levels.length - 1].push(i);
  }
  const numResBlocks = levels[0].length;
  if (numResBlocks === 0 || levels.some((l) => l.length !== numResBlocks)) {
    throw new UnsupportedCheckpointError(
      `${k.label}: UNet levels have unequal res-block counts [${levels.map((l) => l.length)}]`,
    );
  }
  const channelMult = levels.map((l, level) =>
    k.div(
      k.shape(`${p}input_blocks.${l[0]}.0.out_layers.3.weight`)[0],
      modelChannels,
      `UNet level ${level} channel multiplier`,
    ),
  );
  const transformerDepth = levels.map((l) => k.count(`${p}input_blocks.${l[0]}.1.transformer_blocks.`));
  const transformerDepthMiddle = k.count(`${p}middle_block.1.transformer_blocks.`);
  const attn = [...k.set].find((n) => n.startsWith(p) && n.endsWith('.attn2.to_k.weight'));
  const projIn = [...k.set].find((n) => n.startsWith(p) && n.endsWith('.proj_in.weight'));
  if (!attn || !projIn)
    throw new UnsupportedCheckpointError(`${k.label}: UNet has no cross-attention (attn2.to_k / proj_in)`);
  let adm: UNetConfig['adm'] = null;
  if (k.has(`${p}label_emb.0.0.weight`)) {
    const admIn = k.shape(`${p}label_emb.0.0.weight`)[1];
    if (pooled === null && !encoderOnly)
      throw new UnsupportedCheckpointError(
        `${k.label}: UNet has label_emb but no text encoder has a text_projection (pooled output)`,
      );
    adm = {
      inChannels: admIn,
      pooledChannels: pooled ?? 0,
      timeIdChannels: pooled === null ? 0 : k.div(admIn - pooled, 6, 'label_emb time-id channels'),
    };
  }
  return {
    prefix: p,
    inChannels,
    outChannels: encoderOnly ? inChannels : k.shape(`${p}out.2.weight`)[0],
    modelChannels,
    channelMult,
    numResBlocks,
    transformerDepth,
    transformerDepthMiddle,
    contextDim: k.shape(attn)[1],
    numHeads: rules.unetHeads,
    headChannels: rules.unetHeadChannels,
    linearProjection: k.shape(projIn).length === 2,
    timeEmbedDim: k.shape(`${p}time_embed.0.weight`)[0],
    adm,
    normGroups: NORM_GROUPS,
  };
}

function detectVae(k: Keys, p: string, scalingFactor: number): VaeConfig {
  const e = `${p}encoder.`,
    d = `${p}decoder.`;
  const baseChannels = k.shape(`${e}conv_in.weight`)[0];
  const nLevels = k.count(`${e}down.`);
  const channelMult: number[] = [];
  for (let l = 0; l < nLevels; l++)
    channelMult.push(
      k.div(k.shape(`${e}down.${l}.block.0.conv2.weight`)[0], baseChannels, `VAE level ${l} channel multiplier`),
    );
  return {
    encoderPrefix: e,
    decoderPrefix: d,
    prefix: p,
    latentChannels: k.shape(`${p}post_quant_conv.weight`)[0],
    baseChannels,
    channelMult,
    numResBlocks: k.count(`${e}down.0.block.`),
    scalingFactor,
    normGroups: NORM_GROUPS,
  };
}
