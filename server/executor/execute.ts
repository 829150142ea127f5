/**
 * Runs a validated prompt: only what the output nodes need, in dependency order, reusing cached outputs, checking
 * for interruption before each node (and inside long nodes through ctx.checkInterrupted), turning a node's exception
 * into execution_error. Knows graphs, types, caching and cancellation; nothing about diffusion.
 */
import { event, type ServerEvent } from '../../protocol/events.js';
import type { PreviewImage } from '../../protocol/preview.js';
import { OutputCache, signatureOf } from './cache.js';
import { InterruptedError, type NodeContext, type NodeResult, type Registry } from './node-definition.js';
import { isLink, type Prompt } from './prompt.js';
import { argumentSets, mergeResults } from './list-map.js';
import { declaredInputs, executionOrder } from './validate.js';

export interface PromptJob {
  promptId: string;
  prompt: Prompt;
  extraData: Record<string, unknown>;
  outputs: string[];
  constants: Map<string, Record<string, unknown>>;
}

export interface RunResult {
  status: 'success' | 'error' | 'interrupted';
  /** UI outputs by node id (history `outputs`) */
  outputs: Record<string, Record<string, unknown>>;
  /** [event, data] pairs for history `status.messages` */
  messages: [string, unknown][];
  executed: string[];
}

export interface RunHooks {
  emit(ev: ServerEvent): void;
  preview(img: PreviewImage, nodeId: string): void;
  signal: AbortSignal;
  log?(message: string): void;
}

export class Executor<S> {
  readonly cache: OutputCache;
  constructor(
    readonly registry: Registry<S>,
    readonly services: S,
    cache?: OutputCache,
  ) {
    this.cache = cache ?? new OutputCache();
  }

  async run(job: PromptJob, hooks: RunHooks): Promise<RunResult> {
    const { prompt, promptId } = job;
    const messages: [string, unknown][] = [];
    const record = (ev: ServerEvent, keep: boolean) => {
      if (keep) messages.push([ev.type, ev.data]);
      hooks.emit(ev);
    };
    const outputs: Record<string, Record<string, unknown>> = {};
    const executed: string[] = [];
    record(event('execution_start', { prompt_id: promptId, timestamp: Date.now() }), true);

    let currentNode = '';
    try {
      const order = executionOrder(prompt, job.outputs, this.registry);
      // signatures in dependency order
      const sigs = new Map<string, string>();
      for (const id of order) {
        const node = prompt[id];
        const def = this.registry.get(node.class_type)!;
        const constants = job.constants.get(id) ?? {};
        const links: Record<string, string> = {};
        for (const name of declaredInputs(node.class_type, node.inputs ?? {}, this.registry)) {
          const v = node.inputs[name];
          if (isLink(v)) links[name] = `${sigs.get(String(v[0]))}:${v[1]}`;
        }
        let fp: string | undefined;
        if (def.fingerprint) {
          currentNode = id;
          fp = await def.fingerprint(constants, this.services);
        }
        sigs.set(id, signatureOf([node.class_type, constants, links, fp ?? null]));
      }
      const cachedIds = order.filter((id) => this.cache.has(sigs.get(id)!));
      record(event('execution_cached', { nodes: cachedIds, prompt_id: promptId, timestamp: Date.now() }), true);

      // every output slot holds a list (list-map.ts): one value per run, or a list output's items
      const values = new Map<string, unknown[][]>();
      for (const id of order) {
        currentNode = id;
        const node = prompt[id];
        const def = this.registry.get(node.class_type)!;
        const sig = sigs.get(id)!;
        const hit = this.cache.get(sig);
        if (hit) {
          values.set(id, hit.outputs);
          if (hit.ui && job.outputs.includes(id)) {
            outputs[id] = hit.ui;
            hooks.emit(event('executed', { node: id, display_node: id, output: hit.ui, prompt_id: promptId }));
          }
          continue;
        }
        if (hooks.signal.aborted) throw new InterruptedError();
        hooks.emit(event('executing', { node: id, display_node: id, prompt_id: promptId }));
        const lists: Record<string, unknown[]> = {};
        for (const [name, v] of Object.entries(job.constants.get(id) ?? {})) lists[name] = [v];
        for (const name of declaredInputs(node.class_type, node.inputs ?? {}, this.registry)) {
          const v = node.inputs[name];
          if (isLink(v)) lists[name] = values.get(String(v[0]))![v[1]];
        }
        const ctx: NodeContext<S> = {
          nodeId: id,
          promptId,
          prompt,
          extraData: job.extraData,
          services: this.services,
          signal: hooks.signal,
          progress: (value, max) => hooks.emit(event('progress', { value, max, prompt_id: promptId, node: id })),
          preview: (img) => hooks.preview(img, id),
          checkInterrupted: () => {
            if (hooks.signal.aborted) throw new InterruptedError();
          },
          log: (m) => hooks.log?.(`[${node.class_type} #${id}] ${m}`),
        };
        const results: NodeResult[] = [];
        for (const args of argumentSets(lists, !!def.inputIsList)) {
          if (results.length) ctx.checkInterrupted();
          const r = await def.execute(args, ctx);
          if (!r || !Array.isArray(r.outputs)) throw new Error(`node ${node.class_type} returned no outputs array`);
          results.push(r);
        }
        const result = mergeResults(results, def.outputs);
        values.set(id, result.lists);
        this.cache.set(sig, { outputs: result.lists, ui: result.ui });
        executed.push(id);
        if (result.ui) {
          outputs[id] = result.ui;
          hooks.emit(event('executed', { node: id, display_node: id, output: result.ui, prompt_id: promptId }));
        }
      }
      this.cache.trim(new Set(sigs.values()));
      record(event('execution_success', { prompt_id: promptId, timestamp: Date.now() }), true);
      return { status: 'success', outputs, messages, executed };
    } catch (err) {
      const node = prompt[currentNode];
      if (err instanceof InterruptedError || hooks.signal.aborted) {
        record(
          event('execution_interrupted', {
            prompt_id: promptId,
            node_id: currentNode,
            node_type: node?.class_type ?? '',
            executed,
            timestamp: Date.now(),
          }),
          true,
        );
        return { status: 'interrupted', outputs, messages, executed };
      }
      const e = err instanceof Error ? err : new Error(String(err));
      const current_inputs: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(node?.inputs ?? {}))
        current_inputs[k] = isLink(v) ? `<output ${v[1]} of node ${v[0]}>` : v;
      record(
        event('execution_error', {
          prompt_id: promptId,
          node_id: currentNode,
          node_type: node?.class_type ?? '',
          executed,
          exception_message: e.message,
          exception_type: e.name,
          traceback: (e.stack ?? '')
            .split('\n')
            .slice(1, 12)
            .map((l) => l.trim()),
          current_inputs,
          current_outputs: {},
          timestamp: Date.now(),
        }),
        true,
      );
      return { status: 'error', outputs, messages, executed };
    } finally {
      hooks.emit(event('executing', { node: null, prompt_id: promptId }));
    }
  }
}
