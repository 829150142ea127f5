/**
 * A seeded random kohya-format LoRA for a preset architecture's UNet, for the bench (TCD always runs with a LoRA):
 * one `lora_unet_<ldm path>` module (lora_down, lora_up, alpha = rank) per LoRA-patchable UNet weight: attention
 * q/k/v/out, feed-forward, proj_in/out, the ResBlocks' convs and time projections, down/upsample convs. Convs get
 * [rank, in, kh, kw] downs and [out, rank, 1, 1] ups, as kohya's LoCon writes them. Values are small (the delta is
 * about 1% of a weight's scale) so fp16 graphs stay finite.
 * Example:
 *   const { path, modules } = await makeRandomLora({ arch: 'sd15', rank: 64, out: '/tmp/tcd-bench/sd15-lora64.safetensors' });
 */
import { checkpointKeys } from '../../engine/model/checkpoint-layout.js';
import { writeSafetensors, type TensorEntry } from '../../engine/io/safetensors-writer.js';
import { loraKeyMap } from '../../engine/lora/key-map.js';
import { fillNormal, presetConfig, type PresetName } from '../make-checkpoint.js';

export interface RandomLoraOptions {
  arch: PresetName;
  rank: number;
  out: string;
  seed?: number;
}

export async function makeRandomLora(o: RandomLoraOptions): Promise<{ path: string; modules: number; params: number }> {
  const config = presetConfig(o.arch);
  const shapes = new Map(checkpointKeys(config).map((k) => [k.name, k.shape]));
  const map = loraKeyMap(config, (k) => shapes.get(k), [...shapes.keys()]);
  const seed = o.seed ?? 7;
  const entries: TensorEntry[] = [];
  const done = new Set<string>();
  let params = 0;
  // kohya LDM-style names: the first lora_unet_ alias the key map gives each UNet weight
  for (const [name, target] of map) {
    if (target.component !== 'unet' || target.rows || done.has(target.key) || !name.startsWith('lora_unet_')) continue;
    if (!name.includes('input_blocks') && !name.includes('middle_block') && !name.includes('output_blocks')) continue;
    done.add(target.key);
    const shape = shapes.get(target.key)!;
    const [out, inn] = shape;
    const kernel = shape.length === 4 ? shape.slice(2) : [];
    const fanIn = inn * kernel.reduce((a, b) => a * b, 1);
    const rank = Math.min(o.rank, out, fanIn);
    const downShape = [rank, inn, ...kernel];
    const upShape = shape.length === 4 ? [out, rank, 1, 1] : [out, rank];
    const random = (n: number, std: number, part: string) => () => {
      const a = new Float32Array(n);
      fillNormal(a, std, seed, `${name}.${part}`);
      return a;
    };
    entries.push(
      {
        name: `${name}.lora_down.weight`,
        dtype: 'F16',
        shape: downShape,
        data: random(rank * fanIn, 1 / Math.sqrt(fanIn), 'down'),
      },
      {
        name: `${name}.lora_up.weight`,
        dtype: 'F16',
        shape: upShape,
        data: random(out * rank, 0.01 / Math.sqrt(rank), 'up'),
      },
      { name: `${name}.alpha`, dtype: 'F32', shape: [], data: () => Float32Array.of(rank) },
    );
    params += rank * (fanIn + out);
  }
  await writeSafetensors(o.out, entries, {
    ss_network_dim: String(o.rank),
    ss_network_alpha: String(o.rank),
    tcd_bench: 'random',
  });
  return { path: o.out, modules: done.size, params };
}
