// BackupWorkflow: an automated backup of any size as a Cloudflare Workflow. One step plans it,
// one step per pack writes a bounded pack (so no invocation's memory, CPU or subrequests grow
// with the backup), the last step commits the manifest. The platform persists each step's
// result and retries a failed step; every step is idempotent (docs/FORMAT.md, "Backups").
import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import { NonRetryableError } from "cloudflare:workflows";
import { DataPersistenceService, isPersistenceError, optionsFromEnv, policyFromEnv } from "./api.js";
import type { PersistenceEnv } from "./env.js";
import type { BackupRequest, PackRecord, PackSource, RestoreRequest } from "./types.js";

/** Archives one pack step reads when `BACKUP_STEP_ARCHIVES` is unset: one storage call each, within the free plan's 50 subrequests with retries. */
export const DEFAULT_STEP_ARCHIVES = 40;

/**
 * Archives one restore step writes when `RESTORE_STEP_SESSIONS` is unset: 2 R2 gets, then up to
 * 5 storage calls each (R2 put, KV get, 3 KV puts), within the free plan's 50 subrequests.
 */
export const DEFAULT_RESTORE_STEP_SESSIONS = 9;

/**
 * The same with `ARCHIVE_R2_REPLICA` bound: each archive's copy there (and its queue entry when
 * that fails) adds up to 2 calls, and the manifest and pack may be read from the replica
 * (up to 3 calls more): 2 + 3 + 6 × 7 = 47, the users' erasure tombstone read included 48.
 */
export const DEFAULT_RESTORE_STEP_SESSIONS_WITH_REPLICA = 6;

/** What a finished backup instance reports (its `output`). */
export interface BackupOutcome {
  backupId: string;
  packs: number;
  archives: number;
  missingSessionIds: string[];
  /** Archives left out because they could not be read (each logged). */
  unreadableArchives: string[];
  parentBackupId: string | null;
}

/** Codes a retry may cure: the storage was down, or its circuit breaker open. */
const TRANSIENT_CODES: ReadonlySet<string> = new Set(["STORAGE_UNAVAILABLE", "CIRCUIT_OPEN"]);

/**
 * Runs a step's work; a library error no retry can cure (bad input, a plan too old to commit,
 * damaged data) fails the instance at once as a NonRetryableError ("CODE: message") instead of
 * waiting through the platform's retries.
 */
async function failFastUnlessTransient<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (isPersistenceError(error) && !TRANSIENT_CODES.has(error.code)) throw new NonRetryableError(`${error.code}: ${error.message}`);
    throw error;
  }
}

/** The `[vars]` entry `name` as a positive integer, else `fallback` when it is unset. */
function stepSize(env: PersistenceEnv, name: "BACKUP_STEP_ARCHIVES" | "RESTORE_STEP_SESSIONS", fallback: number): number {
  const text = env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`INVALID_CONFIG: ${name}: ${JSON.stringify(text)} is not a positive integer`);
  return value;
}

/**
 * Backs up, given `{ since?, sessionIds?, userId?, keep? }`, the archives made since the last
 * automated backup (incrementally; all of them the first time), or the given sessions, or one
 * user's: one pack per step, then the manifest (then, with a replica bucket, its copy there:
 * `replicateCommitted`). An instance that dies before its commit step leaves no visible backup;
 * retention sweeps its packs.
 */
export class BackupWorkflow extends WorkflowEntrypoint<PersistenceEnv, BackupRequest> {
  override async run(event: Readonly<WorkflowEvent<BackupRequest>>, step: WorkflowStep): Promise<BackupOutcome> {
    const service = new DataPersistenceService(this.env, policyFromEnv(this.env), optionsFromEnv(this.env));
    const request = event.payload ?? {};
    const plan = await step.do("plan", () => failFastUnlessTransient(() => service.planBackup(request, stepSize(this.env, "BACKUP_STEP_ARCHIVES", DEFAULT_STEP_ARCHIVES))));
    const packs: PackRecord[] = [];
    const missingSessionIds: string[] = [];
    const unreadableArchives: string[] = [];
    let from: PackSource | null = null;
    // Step names are deterministic, so a replay after a failure finds each finished step's result.
    for (let n = 0; ; n++) {
      const report = await step.do(`pack ${n}`, () => failFastUnlessTransient(() => service.backupPack(plan, packs.length, from)));
      if (report.record) packs.push(report.record);
      missingSessionIds.push(...report.missingSessionIds);
      unreadableArchives.push(...report.unreadableArchives);
      from = report.next;
      if (from === null) break;
    }
    const backupId = await step.do("commit", () => failFastUnlessTransient(() => service.commitBackup(plan, packs, missingSessionIds)));
    if (this.env.ARCHIVE_R2_REPLICA) await replicateCommitted(service, step, packs.length);
    const archives = packs.reduce((sum, pack) => sum + pack.sessions.length, 0);
    return { backupId, packs: packs.length, archives, missingSessionIds, unreadableArchives, parentBackupId: plan.parentBackupId };
  }
}

/** Storage calls of one replication step: about 7 objects copied, within 50 subrequests even if every call is retried once. */
export const REPLICATE_STEP_CALLS = 20;

/**
 * With a replica bucket: copies what the commit queued (the backup's packs, then its manifest)
 * right away rather than at the next cron, `syncReplica` a bounded step at a time (each resumes
 * where the last stopped; idempotent), at most `packs + 2` steps (the cron's sync does the rest);
 * whether the queue was settled.
 */
export async function replicateCommitted(
  service: Pick<DataPersistenceService, "syncReplica">,
  step: Pick<WorkflowStep, "do">,
  packs: number,
): Promise<boolean> {
  for (let n = 0; n < packs + 2; n++) {
    const report = await step.do(`replicate ${n}`, () => failFastUnlessTransient(() => service.syncReplica({ maxStorageCalls: REPLICATE_STEP_CALLS })));
    if (report.complete) return true;
  }
  return false;
}

/** What a finished restore instance reports (its `output`). */
export interface RestoreOutcome {
  backupId: string;
  /** The backups restored, oldest first: the chain an incremental backup depends on, then it. */
  backups: string[];
  packs: number;
  restoredSessions: number;
  /** Sessions not restored because an erasure of their user covers them. */
  skippedSessions: number;
}

/** What one restore step did: the sessions it restored, and those of erased users it skipped. */
interface SliceOutcome {
  restored: string[];
  skippedSessionIds: string[];
}

/**
 * Restores a backup of any size, given `{ backupId, userId? }`: one step reads the chain of
 * manifests, then each step restores the next `RESTORE_STEP_SESSIONS` archives of a pack (the
 * whole pack verified before the step's first write), the parents of an incremental backup
 * first. Every step is idempotent, so a retried or repeated restore writes nothing twice.
 */
export class RestoreWorkflow extends WorkflowEntrypoint<PersistenceEnv, RestoreRequest> {
  override async run(event: Readonly<WorkflowEvent<RestoreRequest>>, step: WorkflowStep): Promise<RestoreOutcome> {
    const service = new DataPersistenceService(this.env, policyFromEnv(this.env), optionsFromEnv(this.env));
    const { backupId, userId } = event.payload;
    const owner = userId === undefined ? {} : { userId };
    const fallback = this.env.ARCHIVE_R2_REPLICA ? DEFAULT_RESTORE_STEP_SESSIONS_WITH_REPLICA : DEFAULT_RESTORE_STEP_SESSIONS;
    const perStep = stepSize(this.env, "RESTORE_STEP_SESSIONS", fallback);
    const chain = await step.do("plan", () => failFastUnlessTransient(() => service.planRestore(backupId, owner)));
    const sessions = new Set<string>();
    const skipped = new Set<string>();
    let packs = 0;
    for (const [id, count, archivesPerPack] of chain) {
      for (let n = 0; n < count; n++, packs++) {
        // The plan knows each pack's archives (a plan persisted by an earlier version does not:
        // then a slice shorter than asked is the pack's end). The slice's size is in the step's
        // name: a replay after RESTORE_STEP_SESSIONS changed reruns the slices (restores are
        // idempotent) rather than take an old slice for another.
        const archives = archivesPerPack?.[n];
        for (let first = 0; archives === undefined || first < archives; first += perStep) {
          const slice = `restore ${id} pack ${n} sessions ${first}+${perStep}`;
          // Step outputs are stored as JSON: the skipped sessions travel as a member, not as
          // the array's non-enumerable property. A step an earlier version ran returned the
          // restored array alone.
          const outcome: string[] | SliceOutcome = await step.do(slice, () =>
            failFastUnlessTransient(async (): Promise<SliceOutcome> => {
              const sessions = await service.restorePack(id, n, { ...owner, first, count: perStep });
              return { restored: [...sessions], skippedSessionIds: sessions.skippedSessionIds };
            }),
          );
          const { restored, skippedSessionIds } = Array.isArray(outcome) ? { restored: outcome, skippedSessionIds: [] } : outcome;
          for (const session of restored) sessions.add(session);
          for (const session of skippedSessionIds) skipped.add(session);
          if (archives === undefined && restored.length + skippedSessionIds.length < perStep) break;
        }
      }
    }
    return { backupId, backups: chain.map(([id]) => id), packs, restoredSessions: sessions.size, skippedSessions: skipped.size };
  }
}
