/**
 * Node definitions for executor tests: the parts a test gives plus neutral defaults (title = id, category 'test',
 * not an output node, an execute that returns nothing). `onRun`, when given, sees every execution first (tests count
 * or record runs with it).
 * Example: testNode({ id: 'Text', inputs: [], outputs: [{ type: 'STRING', name: 'STRING' }] })
 */
import type { NodeContext, NodeDefinition } from '../../server/executor/node-definition.js';

export function testNode<S = unknown>(
  d: Pick<NodeDefinition<S>, 'id' | 'inputs' | 'outputs'> & Partial<NodeDefinition<S>>,
  onRun?: (args: Record<string, unknown>, ctx: NodeContext<S>) => void,
): NodeDefinition<S> {
  const execute = d.execute ?? (() => ({ outputs: [] }));
  return {
    displayName: d.id,
    category: 'test',
    description: '',
    outputNode: false,
    ...d,
    execute: onRun
      ? (args, ctx) => {
          onRun(args, ctx);
          return execute(args, ctx);
        }
      : execute,
  };
}
