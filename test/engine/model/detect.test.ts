import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import {
  detectCheckpoint,
  keySourceOf,
  UnsupportedCheckpointError,
  type KeySource,
} from '../../../server/engine/model/detect.js';
import type { ModelConfig } from '../../../server/engine/model/config.js';
import { fixtureSkip, fixturePath, fixtureJson } from '../../helpers/fixtures.js';
import { realSource } from '../real-architectures.js';
import { checkpointKeys } from '../../../server/engine/model/checkpoint-layout.js';
import { presetConfig } from '../../../server/tools/make-checkpoint.js';

const skip = fixtureSkip();

function detectFile(name: string): ModelConfig {
  const f = SafetensorsFile.open(fixturePath(name));
  try {
    return detectCheckpoint(f);
  } finally {
    f.close();
  }
}

const vae = (base: number, mult: number[], scalingFactor: number) => ({
  encoderPrefix: 'first_stage_model.encoder.',
  decoderPrefix: 'first_stage_model.decoder.',
  prefix: 'first_stage_model.',
  latentChannels: 4,
  baseChannels: base,
  channelMult: mult,
  numResBlocks: 2,
  scalingFactor,
  normGroups: 32,
});
const clipL = (prefix: string, width: number, layers: number, intermediate: number) => ({
  prefix,
  naming: 'hf',
  width,
  layers,
  heads: width / 64,
  intermediate,
  vocab: 49408,
  maxPositions: 77,
  activation: 'quick_gelu',
  projectionDim: null,
  padToken: 49407,
  layerNormEps: 1e-5,
});
const clipG = (width: number, layers: number, intermediate: number, proj: number) => ({
  prefix: 'conditioner.embedders.1.model.',
  naming: 'openclip',
  width,
  layers,
  heads: width / 64,
  intermediate,
  vocab: 49408,
  maxPositions: 77,
  activation: 'gelu',
  projectionDim: proj,
  padToken: 0,
  layerNormEps: 1e-5,
});

test('sd1_tiny: the config the fixture README and manifest describe', { skip }, () => {
  const cfg = detectFile('sd1_tiny.safetensors');
  assert.deepEqual(cfg, {
    family: 'sd1',
    textEncoders: [clipL('cond_stage_model.transformer.', 128, 3, 256)],
    unet: {
      prefix: 'model.diffusion_model.',
      inChannels: 4,
      outChannels: 4,
      modelChannels: 32,
      channelMult: [1, 2, 2, 2],
      numResBlocks: 2,
      transformerDepth: [1, 1, 1, 0],
      transformerDepthMiddle: 1,
      contextDim: 128,
      numHeads: 8,
      headChannels: null,
      linearProjection: false,
      timeEmbedDim: 128,
      adm: null,
      normGroups: 32,
    },
    vae: vae(32, [1, 1, 2, 2], 0.18215),
    defaultClipSkip: -1,
    predictionType: 'epsilon',
  });
  // cross-check with the diffusers configs the fixtures were made from
  const m = fixtureJson('manifest.json').cases.sd1_tiny;
  assert.deepEqual(
    cfg.unet.channelMult.map((x) => x * cfg.unet.modelChannels),
    m.unet_config.block_out_channels,
  );
  assert.equal(cfg.unet.numResBlocks, m.unet_config.layers_per_block);
  assert.equal(cfg.unet.contextDim, m.unet_config.cross_attention_dim);
  assert.equal(cfg.unet.numHeads, m.unet_config.attention_head_dim); // diffusers' SD1 "attention_head_dim" is the head count
  assert.deepEqual(
    cfg.unet.transformerDepth.map((d) => d > 0),
    m.unet_config.down_block_types.map((t: string) => t.startsWith('CrossAttn')),
  );
  const t = m.text_config;
  assert.deepEqual(
    [
      cfg.textEncoders[0].width,
      cfg.textEncoders[0].layers,
      cfg.textEncoders[0].heads,
      cfg.textEncoders[0].intermediate,
      cfg.textEncoders[0].activation,
    ],
    [t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.intermediate_size, t.hidden_act],
  );
  assert.deepEqual(
    cfg.vae.channelMult.map((x) => x * cfg.vae.baseChannels),
    m.vae_config.block_out_channels,
  );
  assert.equal(cfg.vae.scalingFactor, m.vae_scaling_factor);
});

test('sdxl_tiny: the config the fixture README and manifest describe', { skip }, () => {
  const cfg = detectFile('sdxl_tiny.safetensors');
  assert.deepEqual(cfg, {
    family: 'sdxl',
    textEncoders: [clipL('conditioner.embedders.0.transformer.', 64, 3, 128), clipG(128, 3, 256, 96)],
    unet: {
      prefix: 'model.diffusion_model.',
      inChannels: 4,
      outChannels: 4,
      modelChannels: 64,
      channelMult: [1, 1, 2],
      numResBlocks: 2,
      transformerDepth: [0, 1, 2],
      transformerDepthMiddle: 2,
      contextDim: 192,
      numHeads: null,
      headChannels: 64,
      linearProjection: true,
      timeEmbedDim: 256,
      adm: { inChannels: 192, pooledChannels: 96, timeIdChannels: 16 },
      normGroups: 32,
    },
    vae: vae(32, [1, 1, 2, 2], 0.13025),
    defaultClipSkip: -2,
    predictionType: 'epsilon',
  });
  const m = fixtureJson('manifest.json').cases.sdxl_tiny;
  const u = m.unet_config;
  assert.deepEqual(
    cfg.unet.channelMult.map((x) => x * cfg.unet.modelChannels),
    u.block_out_channels,
  );
  // diffusers lists a depth for every level and ignores it where the block has no attention
  assert.deepEqual(
    cfg.unet.transformerDepth,
    u.transformer_layers_per_block.map((d: number, i: number) =>
      u.down_block_types[i].startsWith('CrossAttn') ? d : 0,
    ),
  );
  assert.equal(cfg.unet.transformerDepthMiddle, u.transformer_layers_per_block.at(-1));
  assert.equal(cfg.unet.contextDim, u.cross_attention_dim);
  assert.equal(cfg.unet.adm!.inChannels, u.projection_class_embeddings_input_dim);
  assert.equal(cfg.unet.adm!.timeIdChannels, u.addition_time_embed_dim);
  // diffusers' SDXL "attention_head_dim" is the head count per level = channels / 64
  cfg.unet.channelMult.forEach((mult, i) => {
    if (cfg.unet.transformerDepth[i])
      assert.equal((mult * cfg.unet.modelChannels) / cfg.unet.headChannels!, u.attention_head_dim[i]);
  });
  for (const [te, t] of [
    [cfg.textEncoders[0], m.text_config_l],
    [cfg.textEncoders[1], m.text_config_g],
  ] as const) {
    assert.deepEqual(
      [te.width, te.layers, te.heads, te.intermediate, te.activation],
      [t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.intermediate_size, t.hidden_act],
    );
  }
  assert.equal(cfg.textEncoders[1].projectionDim, m.text_config_g.projection_dim);
});

test('real SD1.5 key list gives the SD1.5 config', { skip }, () => {
  assert.deepEqual(detectCheckpoint(realSource('sd15')), {
    family: 'sd1',
    textEncoders: [clipL('cond_stage_model.transformer.', 768, 12, 3072)],
    unet: {
      prefix: 'model.diffusion_model.',
      inChannels: 4,
      outChannels: 4,
      modelChannels: 320,
      channelMult: [1, 2, 4, 4],
      numResBlocks: 2,
      transformerDepth: [1, 1, 1, 0],
      transformerDepthMiddle: 1,
      contextDim: 768,
      numHeads: 8,
      headChannels: null,
      linearProjection: false,
      timeEmbedDim: 1280,
      adm: null,
      normGroups: 32,
    },
    vae: vae(128, [1, 2, 4, 4], 0.18215),
    defaultClipSkip: -1,
    predictionType: 'epsilon',
  });
});

test('real SDXL key list gives the SDXL base config', { skip }, () => {
  assert.deepEqual(detectCheckpoint(realSource('sdxl')), {
    family: 'sdxl',
    textEncoders: [clipL('conditioner.embedders.0.transformer.', 768, 12, 3072), clipG(1280, 32, 5120, 1280)],
    unet: {
      prefix: 'model.diffusion_model.',
      inChannels: 4,
      outChannels: 4,
      modelChannels: 320,
      channelMult: [1, 2, 4],
      numResBlocks: 2,
      transformerDepth: [0, 2, 10],
      transformerDepthMiddle: 10,
      contextDim: 2048,
      numHeads: null,
      headChannels: 64,
      linearProjection: true,
      timeEmbedDim: 1280,
      adm: { inChannels: 2816, pooledChannels: 1280, timeIdChannels: 256 },
      normGroups: 32,
    },
    vae: vae(128, [1, 2, 4, 4], 0.13025),
    defaultClipSkip: -2,
    predictionType: 'epsilon',
  });
});

/** SD1.5 and SDXL key lists without fixtures: the preset layouts (proven equal to the real files by other tests) */
const presetSource = (name: 'sd15' | 'sdxl'): KeySource => keySourceOf(checkpointKeys(presetConfig(name)));

/** the SD1.5 keys, each renamed (or dropped, null) by fn */
function renamedSd15(fn: (name: string) => string | null): KeySource {
  const src = presetSource('sd15');
  return keySourceOf(
    src.keys().flatMap((n) => {
      const m = fn(n);
      return m === null ? [] : [{ name: m, shape: src.shape(n) }];
    }),
  );
}

test('SD1 checkpoints with the transformers "text_model." level are detected too', () => {
  const cfg = detectCheckpoint(
    renamedSd15((n) => n.replace('cond_stage_model.transformer.', 'cond_stage_model.transformer.text_model.')),
  );
  assert.equal(cfg.textEncoders[0].prefix, 'cond_stage_model.transformer.text_model.');
  assert.equal(cfg.textEncoders[0].layers, 12);
});

test('unknown or inconsistent checkpoints raise an error naming the supported families', () => {
  const families = /Supported checkpoint families: SD1\.x .* and SDXL base/;
  const cases: [string, KeySource, RegExp][] = [
    ['empty', keySourceOf([]), /no known text encoder keys/],
    [
      'lora-like',
      keySourceOf([{ name: 'lora_unet_down_blocks_0.lora_down.weight', shape: [4, 320] }]),
      /no known text encoder keys/,
    ],
    [
      'sd2-like',
      renamedSd15((n) => n.replace('cond_stage_model.transformer.', 'cond_stage_model.model.')),
      /looks like SD2\.x/,
    ],
    ['no unet', renamedSd15((n) => (n.startsWith('model.diffusion_model.') ? null : n)), /no UNet keys/],
    ['no vae', renamedSd15((n) => (n.startsWith('first_stage_model.') ? null : n)), /no VAE keys/],
    [
      'missing conv_in',
      renamedSd15((n) => (n.startsWith('model.diffusion_model.input_blocks.0.0.') ? null : n)),
      /expected tensor "model\.diffusion_model\.input_blocks\.0\.0\.weight" is missing/,
    ],
  ];
  for (const [label, src, what] of cases) {
    assert.throws(
      () => detectCheckpoint(src),
      (e: unknown) => {
        assert.ok(e instanceof UnsupportedCheckpointError, `${label}: ${String(e)}`);
        assert.match(e.message, what, label);
        assert.match(e.message, families, label);
        return true;
      },
    );
  }
  // a refiner-like SGM file (OpenCLIP only) is not SDXL base
  const xl = presetSource('sdxl');
  const refiner = keySourceOf(
    xl
      .keys()
      .filter((n) => !n.startsWith('conditioner.embedders.0.'))
      .map((n) => ({ name: n.replace('conditioner.embedders.1.', 'conditioner.embedders.0.'), shape: xl.shape(n) })),
  );
  assert.throws(
    () => detectCheckpoint(refiner),
    /text encoders \[openclip\], SDXL base has \[CLIP-L, OpenCLIP-G\].*Supported checkpoint families/,
  );
});

test('errors from a file name the file', { skip }, () => {
  const f = SafetensorsFile.open(fixturePath('sd1_tiny_lora_kohya.safetensors'));
  try {
    assert.throws(
      () => detectCheckpoint(f),
      /^UnsupportedCheckpointError: sd1_tiny_lora_kohya\.safetensors: no known text encoder keys/,
    );
  } finally {
    f.close();
  }
});

test('v-prediction is read from a v_pred key or model-spec metadata, epsilon otherwise', () => {
  const src = presetSource('sd15');
  const entries = src.keys().map((name) => ({ name, shape: src.shape(name) }));
  assert.equal(
    detectCheckpoint(keySourceOf([...entries, { name: 'v_pred', shape: [0] }])).predictionType,
    'v_prediction',
  );
  assert.equal(
    detectCheckpoint({ ...keySourceOf(entries), metadata: { 'modelspec.prediction_type': 'v' } }).predictionType,
    'v_prediction',
  );
  assert.equal(
    detectCheckpoint({ ...keySourceOf(entries), metadata: { 'modelspec.prediction_type': 'epsilon' } }).predictionType,
    'epsilon',
  );
  const vpred = { ...detectCheckpoint(src), predictionType: 'v_prediction' as const };
  assert.deepEqual(detectCheckpoint(keySourceOf(checkpointKeys(vpred))), vpred, 'the layout carries the marker');
});
