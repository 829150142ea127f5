/**
 * The exact key set of a single-file (LDM/SGM) checkpoint for a ModelConfig: every tensor name and shape, in the
 * module order of the reference code. Used to generate random checkpoints and to check detection (detect of these
 * keys gives the config back).
 * Example: checkpointKeys(presetConfig('sdxl')).length === 2513
 */
import type { ModelConfig, TextEncoderConfig, UNetConfig, VaeConfig } from './config.js';

export interface KeyShape {
  name: string;
  shape: number[];
}

class KeyList {
  readonly keys: KeyShape[] = [];
  add(name: string, shape: number[]): void {
    this.keys.push({ name, shape });
  }
  /** weight + bias of a norm layer or any bias-carrying layer */
  norm(p: string, ch: number): void {
    this.add(`${p}.weight`, [ch]);
    this.add(`${p}.bias`, [ch]);
  }
  linear(p: string, out: number, inp: number, bias = true): void {
    this.add(`${p}.weight`, [out, inp]);
    if (bias) this.add(`${p}.bias`, [out]);
  }
  conv(p: string, out: number, inp: number, k: number): void {
    this.add(`${p}.weight`, [out, inp, k, k]);
    this.add(`${p}.bias`, [out]);
  }
}

export function checkpointKeys(config: ModelConfig): KeyShape[] {
  const k = new KeyList();
  for (const te of config.textEncoders) {
    if (te.naming === 'hf') hfClipKeys(k, te);
    else openClipKeys(k, te);
  }
  unetKeys(k, config.unet);
  vaeKeys(k, config.vae);
  if (config.predictionType === 'v_prediction') k.add('v_pred', [0]); // ComfyUI's marker: an empty tensor
  return k.keys;
}

/** The UNet's keys alone (under u.prefix), in module order. */
export function unetKeyShapes(u: UNetConfig): KeyShape[] {
  const k = new KeyList();
  unetKeys(k, u);
  return k.keys;
}

/** transformers CLIPTextModel names (prefix ends before 'embeddings.') */
function hfClipKeys(k: KeyList, te: TextEncoderConfig): void {
  const p = te.prefix,
    w = te.width;
  k.add(`${p}embeddings.token_embedding.weight`, [te.vocab, w]);
  k.add(`${p}embeddings.position_embedding.weight`, [te.maxPositions, w]);
  for (let i = 0; i < te.layers; i++) {
    const l = `${p}encoder.layers.${i}.`;
    k.norm(`${l}layer_norm1`, w);
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) k.linear(`${l}self_attn.${proj}`, w, w);
    k.norm(`${l}layer_norm2`, w);
    k.linear(`${l}mlp.fc1`, te.intermediate, w);
    k.linear(`${l}mlp.fc2`, w, te.intermediate);
  }
  k.norm(`${p}final_layer_norm`, w);
}

/** open_clip TextTransformer names: fused attention in_proj, mlp.c_fc/c_proj, ln_final, text_projection [width, proj] */
function openClipKeys(k: KeyList, te: TextEncoderConfig): void {
  const p = te.prefix,
    w = te.width;
  k.add(`${p}token_embedding.weight`, [te.vocab, w]);
  k.add(`${p}positional_embedding`, [te.maxPositions, w]);
  for (let i = 0; i < te.layers; i++) {
    const l = `${p}transformer.resblocks.${i}.`;
    k.norm(`${l}ln_1`, w);
    k.add(`${l}attn.in_proj_weight`, [3 * w, w]);
    k.add(`${l}attn.in_proj_bias`, [3 * w]);
    k.linear(`${l}attn.out_proj`, w, w);
    k.norm(`${l}ln_2`, w);
    k.linear(`${l}mlp.c_fc`, te.intermediate, w);
    k.linear(`${l}mlp.c_proj`, w, te.intermediate);
  }
  k.norm(`${p}ln_final`, w);
  if (te.projectionDim !== null) k.add(`${p}text_projection`, [w, te.projectionDim]);
}

/** ldm ResBlock: GroupNorm, 3x3 conv, time-embedding Linear, GroupNorm, 3x3 conv, 1x1 skip when widths differ */
function unetResBlock(k: KeyList, p: string, cin: number, cout: number, temb: number): void {
  k.norm(`${p}.in_layers.0`, cin);
  k.conv(`${p}.in_layers.2`, cout, cin, 3);
  k.linear(`${p}.emb_layers.1`, cout, temb);
  k.norm(`${p}.out_layers.0`, cout);
  k.conv(`${p}.out_layers.3`, cout, cout, 3);
  if (cin !== cout) k.conv(`${p}.skip_connection`, cout, cin, 1);
}

/** ldm SpatialTransformer with `depth` BasicTransformerBlocks (self-attn, cross-attn, GEGLU feed-forward) */
function spatialTransformer(k: KeyList, p: string, ch: number, depth: number, u: UNetConfig): void {
  const proj = (name: string) => (u.linearProjection ? k.linear(name, ch, ch) : k.conv(name, ch, ch, 1));
  k.norm(`${p}.norm`, ch);
  proj(`${p}.proj_in`);
  for (let d = 0; d < depth; d++) {
    const b = `${p}.transformer_blocks.${d}`;
    for (const [attn, kv] of [
      ['attn1', ch],
      ['attn2', u.contextDim],
    ] as const) {
      k.linear(`${b}.${attn}.to_q`, ch, ch, false);
      k.linear(`${b}.${attn}.to_k`, ch, kv, false);
      k.linear(`${b}.${attn}.to_v`, ch, kv, false);
      k.linear(`${b}.${attn}.to_out.0`, ch, ch);
    }
    k.linear(`${b}.ff.net.0.proj`, ch * 8, ch); // GEGLU: value and gate halves of 4*ch each
    k.linear(`${b}.ff.net.2`, ch, ch * 4);
    k.norm(`${b}.norm1`, ch);
    k.norm(`${b}.norm2`, ch);
    k.norm(`${b}.norm3`, ch);
  }
  proj(`${p}.proj_out`);
}

function unetKeys(k: KeyList, u: UNetConfig): void {
  const p = u.prefix,
    mc = u.modelChannels,
    temb = u.timeEmbedDim,
    levels = u.channelMult.length;
  k.linear(`${p}time_embed.0`, temb, mc);
  k.linear(`${p}time_embed.2`, temb, temb);
  if (u.adm) {
    k.linear(`${p}label_emb.0.0`, temb, u.adm.inChannels);
    k.linear(`${p}label_emb.0.2`, temb, temb);
  }
  k.conv(`${p}input_blocks.0.0`, mc, u.inChannels, 3);
  const skips = [mc];
  let ch = mc,
    block = 1;
  for (let level = 0; level < levels; level++) {
    const out = mc * u.channelMult[level];
    for (let r = 0; r < u.numResBlocks; r++, block++) {
      unetResBlock(k, `${p}input_blocks.${block}.0`, ch, out, temb);
      ch = out;
      if (u.transformerDepth[level] > 0)
        spatialTransformer(k, `${p}input_blocks.${block}.1`, ch, u.transformerDepth[level], u);
      skips.push(ch);
    }
    if (level < levels - 1) {
      k.conv(`${p}input_blocks.${block}.0.op`, ch, ch, 3);
      skips.push(ch);
      block++;
    }
  }
  unetResBlock(k, `${p}middle_block.0`, ch, ch, temb);
  if (u.transformerDepthMiddle > 0) {
    spatialTransformer(k, `${p}middle_block.1`, ch, u.transformerDepthMiddle, u);
    unetResBlock(k, `${p}middle_block.2`, ch, ch, temb);
  } else {
    unetResBlock(k, `${p}middle_block.1`, ch, ch, temb);
  }
  block = 0;
  for (let level = levels - 1; level >= 0; level--) {
    const out = mc * u.channelMult[level];
    for (let r = 0; r <= u.numResBlocks; r++, block++) {
      const skip = skips.pop()!;
      unetResBlock(k, `${p}output_blocks.${block}.0`, ch + skip, out, temb);
      ch = out;
      let sub = 1;
      if (u.transformerDepth[level] > 0)
        spatialTransformer(k, `${p}output_blocks.${block}.${sub++}`, ch, u.transformerDepth[level], u);
      if (level > 0 && r === u.numResBlocks) k.conv(`${p}output_blocks.${block}.${sub}.conv`, ch, ch, 3);
    }
  }
  k.norm(`${p}out.0`, mc);
  k.conv(`${p}out.2`, u.outChannels, mc, 3);
}

/** ldm VAE ResnetBlock: GroupNorm, 3x3 conv, GroupNorm, 3x3 conv, 1x1 nin_shortcut when widths differ */
function vaeResBlock(k: KeyList, p: string, cin: number, cout: number): void {
  k.norm(`${p}.norm1`, cin);
  k.conv(`${p}.conv1`, cout, cin, 3);
  k.norm(`${p}.norm2`, cout);
  k.conv(`${p}.conv2`, cout, cout, 3);
  if (cin !== cout) k.conv(`${p}.nin_shortcut`, cout, cin, 1);
}

function vaeMid(k: KeyList, p: string, ch: number): void {
  vaeResBlock(k, `${p}mid.block_1`, ch, ch);
  k.norm(`${p}mid.attn_1.norm`, ch);
  for (const n of ['q', 'k', 'v', 'proj_out']) k.conv(`${p}mid.attn_1.${n}`, ch, ch, 1);
  vaeResBlock(k, `${p}mid.block_2`, ch, ch);
}

function vaeKeys(k: KeyList, v: VaeConfig): void {
  const levels = v.channelMult.length,
    base = v.baseChannels,
    z = v.latentChannels;
  const e = v.encoderPrefix,
    d = v.decoderPrefix;
  k.conv(`${e}conv_in`, base, 3, 3);
  let ch = base;
  for (let level = 0; level < levels; level++) {
    const out = base * v.channelMult[level];
    for (let b = 0; b < v.numResBlocks; b++) {
      vaeResBlock(k, `${e}down.${level}.block.${b}`, ch, out);
      ch = out;
    }
    if (level < levels - 1) k.conv(`${e}down.${level}.downsample.conv`, ch, ch, 3);
  }
  vaeMid(k, e, ch);
  k.norm(`${e}norm_out`, ch);
  k.conv(`${e}conv_out`, 2 * z, ch, 3); // mean and log-variance
  k.conv(`${v.prefix}quant_conv`, 2 * z, 2 * z, 1);
  k.conv(`${v.prefix}post_quant_conv`, z, z, 1);
  ch = base * v.channelMult[levels - 1];
  k.conv(`${d}conv_in`, ch, z, 3);
  vaeMid(k, d, ch);
  for (let level = levels - 1; level >= 0; level--) {
    const out = base * v.channelMult[level];
    for (let b = 0; b <= v.numResBlocks; b++) {
      vaeResBlock(k, `${d}up.${level}.block.${b}`, ch, out);
      ch = out;
    }
    if (level > 0) k.conv(`${d}up.${level}.upsample.conv`, ch, ch, 3);
  }
  k.norm(`${d}norm_out`, ch);
  k.conv(`${d}conv_out`, 3, ch, 3);
}
