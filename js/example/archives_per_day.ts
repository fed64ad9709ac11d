// Archives per UTC day over a recent window, for the operators' dashboard: walks the global
// archive index (listArchivedConversations without a user: every archive, newest first) a page at
// a time and stops at the first archive older than the window, or at its page budget (then the
// answer says it is incomplete: the oldest days are undercounted).
import type { DataPersistenceService } from "supportbot-persistence";

const DAY_MS = 86_400_000;
/** Entries per page: what one KV list returns at most. */
export const ARCHIVE_INDEX_PAGE_SIZE = 1000;
/**
 * Pages one request may list: 10 000 archives. Each page is 1 KV list plus the library's erasure
 * check of the page's users (up to 3 R2 heads, or 1 R2 list per 1000 erased users), so 10 pages
 * stay within the free plan's 50 subrequests unless calls are retried.
 */
export const ARCHIVES_PER_DAY_MAX_PAGES = 10;
/** The longest window asked for, in days. */
export const MAX_WINDOW_DAYS = 90;

/** One day of the window: its UTC date (YYYY-MM-DD) and the archives made on it. */
export interface DayCount {
  date: string;
  archives: number;
}

/** What the walk found. */
export interface ArchivesPerDay {
  /** Every day of the window, oldest first, days without archives included (0). */
  days: DayCount[];
  /** False when the page budget ran out before the window's first day: the counts are lower bounds. */
  complete: boolean;
  /** Index entries read, the one older than the window included. */
  scannedEntries: number;
  /** Pages listed (KV lists). */
  listCalls: number;
}

export interface ArchivesPerDayOptions {
  /** Days in the window, today (UTC) included. */
  days: number;
  /** The current time (epoch ms). */
  now: number;
  maxPages?: number;
  pageSize?: number;
}

/** The UTC date of an epoch-ms time, YYYY-MM-DD. */
export function utcDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Counts the archives of each of the last `days` UTC days from the global index, within `maxPages` pages. */
export async function archivesPerDay(
  service: Pick<DataPersistenceService, "listArchivedConversations">,
  { days, now, maxPages = ARCHIVES_PER_DAY_MAX_PAGES, pageSize = ARCHIVE_INDEX_PAGE_SIZE }: ArchivesPerDayOptions,
): Promise<ArchivesPerDay> {
  const windowStart = Math.floor(now / DAY_MS) * DAY_MS - (days - 1) * DAY_MS;
  const counts = new Map<string, number>();
  for (let day = 0; day < days; day++) counts.set(utcDate(windowStart + day * DAY_MS), 0);
  let scannedEntries = 0;
  let listCalls = 0;
  let complete = false;
  let cursor: string | undefined;
  walk: while (listCalls < maxPages) {
    const page = await service.listArchivedConversations(undefined, pageSize, cursor);
    listCalls++;
    for (const entry of page) {
      scannedEntries++;
      if (entry.archivedAt < windowStart) {
        complete = true;
        break walk;
      }
      const date = utcDate(entry.archivedAt);
      // An archive stamped after now (another isolate's clock) has no day in the window.
      const count = counts.get(date);
      if (count !== undefined) counts.set(date, count + 1);
    }
    // A KV page may be empty while more follow; only listComplete ends the index.
    if (page.listComplete || page.cursor === undefined) {
      complete = true;
      break;
    }
    cursor = page.cursor;
  }
  return { days: Array.from(counts, ([date, archives]) => ({ date, archives })), complete, scannedEntries, listCalls };
}
