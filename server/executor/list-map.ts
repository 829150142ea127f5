/**
 * ComfyUI's list execution (execution.py: _map_node_over_list and merge_result_data). Every output slot of a node
 * holds a list: a node runs once per item of its longest list input (shorter lists repeat their last item; a widget
 * value is a list of one), and each slot gathers one value per run, or, for an output declared a list
 * (OUTPUT_IS_LIST), the concatenation of the lists every run returned. A node declared INPUT_IS_LIST runs once and
 * receives every input as the whole list. UI outputs of the runs are concatenated key by key.
 * Example: argumentSets({ a: [1, 2, 3], b: [10] }, false) -> [{ a: 1, b: 10 }, { a: 2, b: 10 }, { a: 3, b: 10 }]
 */
import type { NodeResult, OutputSpec } from './node-definition.js';

/** The argument objects of each run. */
export function argumentSets(lists: Record<string, unknown[]>, inputIsList: boolean): Record<string, unknown>[] {
  if (inputIsList) return [lists];
  const names = Object.keys(lists);
  for (const k of names) if (lists[k].length === 0) throw new Error(`input "${k}" received an empty list`);
  const runs = names.length ? Math.max(...names.map((k) => lists[k].length)) : 1;
  const sets: Record<string, unknown>[] = [];
  for (let i = 0; i < runs; i++) {
    const args: Record<string, unknown> = {};
    for (const k of names) args[k] = lists[k][Math.min(i, lists[k].length - 1)];
    sets.push(args);
  }
  return sets;
}

/** Output slots as lists, and the runs' UI outputs merged (one run: its UI as it is). */
export function mergeResults(
  results: readonly NodeResult[],
  outputs: readonly OutputSpec[],
): { lists: unknown[][]; ui?: Record<string, unknown> } {
  const lists = outputs.map((spec, slot) => {
    if (!spec.isList) return results.map((r) => r.outputs[slot]);
    return results.flatMap((r) => {
      const v = r.outputs[slot];
      if (!Array.isArray(v)) throw new Error(`output ${slot} (${spec.type}) is declared a list but returned no array`);
      return v;
    });
  });
  const uis = results.map((r) => r.ui).filter((u): u is Record<string, unknown> => !!u);
  if (uis.length <= 1 || results.length === 1) return { lists, ui: uis[0] };
  const ui: Record<string, unknown> = {};
  for (const k of Object.keys(uis[0])) ui[k] = uis.flatMap((u) => (Array.isArray(u[k]) ? u[k] : [u[k]]));
  return { lists, ui };
}
