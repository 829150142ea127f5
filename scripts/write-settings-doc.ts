/**
 * Writes docs/settings.md from the settings table (server/settings.ts). Run after adding or changing a setting:
 *   npx tsx scripts/write-settings-doc.ts
 * test/cli/settings.test.ts fails while the file and the table disagree.
 */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { settingsMarkdown } from '../server/settings.js';

const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'settings.md');
writeFileSync(out, settingsMarkdown());
console.log(`wrote ${out}`);
