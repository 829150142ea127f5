/** The real SD1.5 / SDXL key lists from ../shared/fixtures/real_architectures.json as key sources. */
import { keySourceOf, type KeySource } from '../../server/engine/model/detect.js';
import { fixtureJson } from '../helpers/fixtures.js';

export interface RealArchitecture {
  params: number;
  unet_params: number;
  keys: Record<string, number[]>;
}

export function realArchitecture(model: 'sd15' | 'sdxl'): RealArchitecture {
  return fixtureJson<Record<string, RealArchitecture>>('real_architectures.json')[model];
}

export function realSource(model: 'sd15' | 'sdxl'): KeySource {
  return keySourceOf(Object.entries(realArchitecture(model).keys).map(([name, shape]) => ({ name, shape })));
}
