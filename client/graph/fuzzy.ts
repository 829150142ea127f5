// Fuzzy matching for the node search box: every query character must appear in order; contiguous runs,
// word starts and early matches score higher. Framework-free so it can be unit-tested.

/**
 * Score of `query` against `text` (higher is better), or null when it does not match.
 * @example fuzzyScore('ksa', 'KSampler') > fuzzyScore('ksa', 'KSamplerAdvanced')
 */
export function fuzzyScore(query: string, text: string): number | null {
  const q = query.toLowerCase().replace(/\s+/g, '');
  const t = text.toLowerCase();
  if (!q) return 0;
  let score = 0,
    ti = 0,
    run = 0,
    first = -1;
  for (const ch of q) {
    const found = t.indexOf(ch, ti);
    if (found < 0) return null;
    if (first < 0) first = found;
    run = found === ti ? run + 1 : 1;
    score += run * 2;
    // Word starts: beginning, after a separator, or an upper-case letter in camel case.
    const prev = text[found - 1];
    if (found === 0 || prev === ' ' || prev === '_' || prev === '-' || (text[found] >= 'A' && text[found] <= 'Z'))
      score += 3;
    ti = found + 1;
  }
  if (t.includes(q)) score += 10;
  return score - first * 0.5 - t.length * 0.05;
}

/**
 * Items ranked by their best-matching key, best first; items that do not match are left out.
 * @example fuzzySearch('clip enc', types, (t) => [t.name, t.display_name])
 */
export function fuzzySearch<T>(query: string, items: readonly T[], keys: (item: T) => string[], limit = 50): T[] {
  const scored: [T, number][] = [];
  for (const item of items) {
    let best: number | null = null;
    for (const k of keys(item)) {
      const s = fuzzyScore(query, k);
      if (s !== null && (best === null || s > best)) best = s;
    }
    if (best !== null) scored.push([item, best]);
  }
  scored.sort((a, b) => b[1] - a[1]);
  return scored.slice(0, limit).map(([item]) => item);
}
