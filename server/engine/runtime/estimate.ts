/**
 * Size of a component before anything is loaded: the parameter count read from the checkpoint header (shapes only,
 * no tensor data) times the bytes of the dtype it will run in. Activations are not counted; the budget is for
 * resident weights, which is what stays in memory between calls.
 * Example: componentBytes(file, config, 'unet', 'float16') // 2 x UNet parameter count
 */
import type { SafetensorsFile } from '../io/safetensors.js';
import type { ModelConfig } from '../model/config.js';
import type { Component, ComputeDtype } from '../types.js';

/** Checkpoint key prefixes whose tensors make up a component. */
export function componentPrefixes(config: ModelConfig, component: Component): string[] {
  if (component === 'unet') return [config.unet.prefix];
  if (component === 'vae_decoder') return [config.vae.decoderPrefix, `${config.vae.prefix}post_quant_conv.`];
  if (component === 'vae_encoder') return [config.vae.encoderPrefix, `${config.vae.prefix}quant_conv.`];
  const index = Number(component.slice('text_encoder_'.length));
  const enc = config.textEncoders[index];
  if (!enc) throw new Error(`${config.family} checkpoint has no text encoder ${index}`);
  return [enc.prefix];
}

export function parameterCount(file: SafetensorsFile, prefixes: readonly string[]): number {
  let n = 0;
  for (const info of file.tensors.values()) {
    if (prefixes.some((p) => info.name.startsWith(p))) n += info.shape.reduce((a, b) => a * b, 1);
  }
  return n;
}

function dtypeBytes(dtype: ComputeDtype): number {
  return dtype === 'float16' ? 2 : 4;
}

export function componentBytes(file: SafetensorsFile, config: ModelConfig, component: Component, dtype: ComputeDtype): number {
  const n = parameterCount(file, componentPrefixes(config, component));
  if (n === 0) throw new Error(`${file.path} has no weights for the ${component} (looked under ${componentPrefixes(config, component).join(', ')})`);
  return n * dtypeBytes(dtype);
}
