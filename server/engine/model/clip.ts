/**
 * Text encoder graphs: CLIP-L with transformers names (SD1, SDXL encoder 0) and OpenCLIP-G with open_clip names
 * (SDXL encoder 1), both pre-LN transformers with a causal mask.
 * Graph input `ids` [B, T] (int64, or int32 with idsType). Outputs:
 *   `last`   final-layer-norm of the last layer's output (HF last_hidden_state; the SD1 context)
 *   `hidden` hidden_states[-hiddenFromEnd] (default 2 = penultimate = input of the last layer), no final norm
 *            unless normHidden (ComfyUI's SD1 clip skip applies the final norm; SDXL does not)
 *   `pooled` (encoders with a projection) final-norm state at the EOS token (argmax of ids) @ text_projection
 * Example:
 *   const g = buildTextEncoderGraph(cfg.textEncoders[1], weights, { hiddenFromEnd: 2 });
 *   const s = await createSession(serializeModel(g));
 *   const { hidden, pooled } = await runSession(s, { ids: { shape: [1, 77], ids } });
 */
import type { ModelConfig, TextEncoderConfig } from './config.js';
import { activation, attention, layerNorm, linear, linearKeys } from './blocks.js';
import { GraphBuilder, type Value } from '../onnx/graph.js';
import type { ComputeDtype } from '../types.js';
import type { WeightSource } from '../onnx/weights.js';

export interface TextEncoderGraphOptions {
  dtype?: ComputeDtype;
  idsType?: 'int64' | 'int32';
  /**
   * which hidden state `hidden` is: hidden_states[-k], k >= 1 (1 = last layer output, 2 = penultimate). Default 2.
   * ComfyUI's CLIPSetLastLayer stop_at_clip_layer = -k; diffusers' clip_skip = k - 1.
   */
  hiddenFromEnd?: number;
  /** apply the final layer norm to `hidden` too (ComfyUI SD1 clip skip). Default false. */
  normHidden?: boolean;
  /** emit `last` (default true) */
  last?: boolean;
  /** emit `pooled` when the encoder has a projection (default true) */
  pooled?: boolean;
}

/** Module names of one encoder layer, per naming scheme. */
function layerNames(cfg: TextEncoderConfig, i: number) {
  if (cfg.naming === 'hf') {
    const p = `${cfg.prefix}encoder.layers.${i}.`;
    return {
      p,
      ln1: `${p}layer_norm1`,
      ln2: `${p}layer_norm2`,
      out: `${p}self_attn.out_proj`,
      fc1: `${p}mlp.fc1`,
      fc2: `${p}mlp.fc2`,
      q: `${p}self_attn.q_proj`,
      k: `${p}self_attn.k_proj`,
      v: `${p}self_attn.v_proj`,
    };
  }
  const p = `${cfg.prefix}transformer.resblocks.${i}.`;
  return {
    p,
    ln1: `${p}ln_1`,
    ln2: `${p}ln_2`,
    out: `${p}attn.out_proj`,
    fc1: `${p}mlp.c_fc`,
    fc2: `${p}mlp.c_proj`,
    q: '',
    k: '',
    v: '',
  };
}

function encoderLayer(g: GraphBuilder, cfg: TextEncoderConfig, i: number, x: Value): Value {
  const n = layerNames(cfg, i);
  return g.scope(n.p, () => {
    const h = layerNorm(g, n.ln1, x, cfg.layerNormEps);
    let q: Value, k: Value, v: Value;
    if (cfg.naming === 'hf') {
      [q, k, v] = [linear(g, n.q, h), linear(g, n.k, h), linear(g, n.v, h)];
    } else {
      const qkv = linearKeys(g, `${n.p}attn.in_proj_weight`, `${n.p}attn.in_proj_bias`, h); // [B, T, 3C]
      [q, k, v] = g.op.Split(qkv, g.constInt64([cfg.width, cfg.width, cfg.width]), { axis: -1 }, 3);
    }
    const a = attention(g, q, k, v, { heads: cfg.heads, headDim: cfg.width / cfg.heads, causal: true });
    const x1 = g.op.Add(x, linear(g, n.out, a));
    const m = linear(
      g,
      n.fc2,
      activation(g, cfg.activation, linear(g, n.fc1, layerNorm(g, n.ln2, x1, cfg.layerNormEps))),
    );
    return g.op.Add(x1, m);
  });
}

/** How far a graph built with `opts` runs: the hidden state's index, its outputs and how many layers it builds. */
function graphReach(cfg: TextEncoderConfig, opts: TextEncoderGraphOptions) {
  // hidden_states[j] = output of layer j-1 (hidden_states[0] = embeddings); hidden_states[-k] = index layers + 1 - k
  const hiddenIndex = cfg.layers + 1 - (opts.hiddenFromEnd ?? 2);
  const wantLast = opts.last ?? true;
  const wantPooled = (opts.pooled ?? true) && cfg.projectionDim !== null;
  const layersNeeded = wantLast || wantPooled ? cfg.layers : hiddenIndex;
  return { hiddenIndex, wantLast, wantPooled, layersNeeded };
}

/**
 * Whether the graph built with `opts` reads checkpoint tensor `key` of this encoder. A clip skip stops before the
 * last layers (SDXL's CLIP-L never runs its last layer), so LoRA patches of those weights have nothing to patch.
 */
export function textEncoderReadsKey(cfg: TextEncoderConfig, opts: TextEncoderGraphOptions, key: string): boolean {
  if (!key.startsWith(cfg.prefix)) return false;
  const { wantLast, wantPooled, layersNeeded } = graphReach(cfg, opts);
  const rest = key.slice(cfg.prefix.length);
  const layer = /^(?:encoder\.layers|transformer\.resblocks)\.(\d+)\./.exec(rest);
  if (layer) return Number(layer[1]) < layersNeeded;
  if (/^(final_layer_norm|ln_final)\./.test(rest)) return !!opts.normHidden || wantLast || wantPooled;
  if (rest.startsWith('text_projection')) return wantPooled;
  return true;
}

/**
 * The graph options text encoder `index` is built with for a clip skip, ComfyUI's way: hidden_states[clipSkip]
 * (-1 = last layer's output); SD1's CLIP applies the final layer norm to it (ComfyUI SD1ClipModel
 * layer_norm_hidden_state=True, which for -1 is the usual last_hidden_state), SDXL's encoders do not; a skip deeper
 * than the encoder means its last state. pooled (SDXL's ADM input) comes from the last encoder with a projection;
 * single-encoder models have none.
 */
export function encoderGraphOptions(
  config: ModelConfig,
  index: number,
  clipSkip: number,
): TextEncoderGraphOptions & { pooled: boolean } {
  if (!Number.isInteger(clipSkip) || clipSkip >= 0)
    throw new Error(`clipSkip counts layers from the end and must be -1, -2, ...; got ${clipSkip}`);
  const enc = config.textEncoders[index];
  const sel =
    -clipSkip > enc.layers
      ? { hiddenFromEnd: 1, normHidden: true }
      : { hiddenFromEnd: -clipSkip, normHidden: config.family === 'sd1' };
  let pooledFrom = -1;
  if (config.textEncoders.length > 1)
    config.textEncoders.forEach((e, i) => {
      if (e.projectionDim !== null) pooledFrom = i;
    });
  return { ...sel, last: false, pooled: index === pooledFrom };
}

/** Builds the encoder graph; see the module comment for its inputs and outputs. */
export function buildTextEncoderGraph(
  cfg: TextEncoderConfig,
  weights: WeightSource,
  opts: TextEncoderGraphOptions = {},
): GraphBuilder {
  const g = new GraphBuilder({
    weights,
    dtype: opts.dtype ?? 'float32',
    name: cfg.naming === 'hf' ? 'clip_text' : 'openclip_text',
  });
  const hf = cfg.naming === 'hf';
  const ids = g.input('ids', opts.idsType ?? 'int64', ['B', 'T']);
  const k = opts.hiddenFromEnd ?? 2;
  if (!(k >= 1 && k <= cfg.layers + 1)) throw new Error(`hiddenFromEnd ${k} out of range 1..${cfg.layers + 1}`);

  const tokenKey = hf ? `${cfg.prefix}embeddings.token_embedding.weight` : `${cfg.prefix}token_embedding.weight`;
  const posKey = hf ? `${cfg.prefix}embeddings.position_embedding.weight` : `${cfg.prefix}positional_embedding`;
  let x = g.scope(`${cfg.prefix}embeddings`, () => {
    const tok = g.op.Gather(g.weight(tokenKey), ids, { axis: 0 }); // [B, T, C]
    const t = g.op.Shape(ids, { start: 1, end: 2 }); // [T]
    const pos = g.op.Slice(g.weight(posKey), g.constInt64([0]), t, g.constInt64([0])); // [T, C]
    return g.op.Add(tok, pos);
  });

  const { hiddenIndex, wantLast, wantPooled, layersNeeded } = graphReach(cfg, opts);
  let hidden: Value | null = hiddenIndex === 0 ? x : null;
  for (let i = 0; i < layersNeeded; i++) {
    x = encoderLayer(g, cfg, i, x);
    if (i + 1 === hiddenIndex) hidden = x;
  }
  const finalNorm = hf ? `${cfg.prefix}final_layer_norm` : `${cfg.prefix}ln_final`;
  g.output(opts.normHidden ? layerNorm(g, finalNorm, hidden!, cfg.layerNormEps) : hidden!, 'hidden');
  if (wantLast || wantPooled) {
    const last = layerNorm(g, finalNorm, x, cfg.layerNormEps); // [B, T, C]
    if (wantLast) g.output(last, 'last');
    if (wantPooled) {
      const pooled = g.scope(`${cfg.prefix}pooled`, () => {
        // HF/open_clip take the first position of the largest id (EOS 49407 is the largest token id)
        const eos = g.op.ArgMax(g.op.Cast(ids, { to: 6 /* INT32 */ }), { axis: -1, keepdims: 1 }); // [B, 1]
        const atEos = g.node('GatherND', [last, eos], { batch_dims: 1 })[0]; // [B, C]
        const projKey = hf ? `${cfg.prefix}text_projection.weight` : `${cfg.prefix}text_projection`;
        // HF stores a Linear ([proj, C]); open_clip a matrix used as x @ P ([C, proj])
        return hf ? linearKeys(g, projKey, null, atEos) : g.op.MatMul(atEos, g.weight(projKey));
      });
      g.output(pooled, 'pooled');
    }
  }
  return g;
}
