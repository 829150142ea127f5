/** Calls a model-free node's function directly (these nodes use no context) and compares tensors. */
import assert from 'node:assert/strict';
import { createRegistry } from '../../nodes/index.js';
import type { NodeContext } from '../../server/executor/node-definition.js';
import type { Tensor } from '../../server/engine/tensor.js';

const registry = createRegistry();

export async function runNode(id: string, args: Record<string, unknown>): Promise<unknown[]> {
  const def = registry.get(id);
  if (!def) throw new Error(`no node ${id}`);
  const r = await def.execute(args, {} as NodeContext<never>);
  return r.outputs;
}

export const T = (shape: number[], values: number[] | Float32Array): Tensor => ({
  shape,
  data: Float32Array.from(values),
});

/** max |a-b| <= tol * max(1, |b|) element-wise, same shape */
export function assertTensor(ours: Tensor, ref: Tensor, what: string, tol = 2e-6): void {
  assert.deepEqual(ours.shape, ref.shape, `${what}: shape`);
  let worst = 0,
    at = -1;
  for (let i = 0; i < ref.data.length; i++) {
    const d = Math.abs(ours.data[i] - ref.data[i]) / Math.max(1, Math.abs(ref.data[i]));
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  }
  assert.ok(worst <= tol, `${what}: relative diff ${worst} at ${at} (ours ${ours.data[at]}, ref ${ref.data[at]})`);
}

export { registry };
