/**
 * Outputs of farm workers land in the folders the API server serves (a shared directory: NFS, a bind mount).
 * Several workers saving `gen_00001_.png` at once would overwrite each other (SaveImage picks the next counter by
 * listing the folder, then renames into place), so each worker saves into its own staging folder and this module
 * publishes each file under the next free counter with an exclusive create (link or O_EXCL copy), rewriting the
 * image refs in place before the `executed` event leaves the worker. Example:
 *   const pub = new OutputPublisher({ output: '/srv/out', temp: '/srv/temp' }, 'w1');
 *   services.dirs.output = pub.staging.output;  // then, for each executed event: pub.publish(ev.data.output)
 */
import { copyFileSync, constants, existsSync, linkSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

interface ImageRef {
  filename: string;
  subfolder?: string;
  type?: string;
}

export class OutputPublisher {
  readonly staging: { output: string; temp: string };
  /** refs already rewritten (the executor's cache re-sends the same objects for cached nodes) */
  private published = new WeakSet<object>();

  constructor(
    readonly shared: { output: string; temp: string },
    workerId: string,
  ) {
    const safe = workerId.replace(/[^\w.-]/g, '_');
    // inside the shared folders, so publishing is a hard link on the same file system
    this.staging = {
      output: join(shared.output, '.farm-staging', safe),
      temp: join(shared.temp, '.farm-staging', safe),
    };
    for (const d of Object.values(this.staging)) mkdirSync(d, { recursive: true });
  }

  /** Publish every output/temp image of one node's UI output; refs are rewritten in place. */
  publish(ui: Record<string, unknown> | undefined): void {
    if (!ui) return;
    for (const list of Object.values(ui)) {
      if (!Array.isArray(list)) continue;
      for (const ref of list as ImageRef[]) {
        if (!ref || typeof ref.filename !== 'string' || (ref.type !== 'output' && ref.type !== 'temp')) continue;
        if (this.published.has(ref)) continue;
        const sub = ref.subfolder ?? '';
        const src = join(this.staging[ref.type], sub, ref.filename);
        if (!existsSync(src)) continue;
        ref.filename = this.place(src, join(this.shared[ref.type], sub), ref.filename);
        this.published.add(ref);
      }
    }
  }

  /** Exclusive create under the first free name: `{prefix}_{counter:05}_.ext` counts on from the largest there. */
  private place(src: string, dir: string, name: string): string {
    mkdirSync(dir, { recursive: true });
    const m = /^(.*)_(\d{5,})_(\.[\w]+)$/.exec(name);
    let counter = 0;
    if (m) {
      const re = new RegExp(`^${m[1].replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}_(\\d{5,})_\\.`);
      for (const f of readdirSync(dir)) {
        const x = re.exec(f);
        if (x) counter = Math.max(counter, Number(x[1]));
      }
    }
    for (let tries = 0; tries < 10000; tries++) {
      const candidate = m
        ? `${m[1]}_${String(counter + 1 + tries).padStart(5, '0')}_${m[3]}`
        : tries === 0
          ? name
          : name.replace(/(\.[\w]+)?$/, `-${tries}$1`);
      const dest = join(dir, candidate);
      try {
        try {
          linkSync(src, dest);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EXDEV' && (e as NodeJS.ErrnoException).code !== 'EPERM') throw e;
          copyFileSync(src, dest, constants.COPYFILE_EXCL);
        }
        return candidate;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
    throw new Error(`no free file name for ${name} in ${dir}`);
  }
}
