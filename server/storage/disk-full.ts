/**
 * A full data disk is a condition to wait out, not a crash: SQLite says SQLITE_FULL, file writes ENOSPC (or EDQUOT
 * for a quota). Requests that need to write are refused with 507 until space returns; work already accepted waits.
 */
export function isDiskFull(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT';
}

export const DISK_FULL_MESSAGE = "the server's data disk is full: nothing new can be stored until space is freed";
