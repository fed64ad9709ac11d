// Contender (a): this library through its public TypeScript API, as a user's code calls it.
import { DataPersistenceService, hashText } from "../../dist/node.js";

export const label = "(a) library (wasm)";

export class LibraryContender {
  constructor(bindings, policy = {}) {
    this.service = new DataPersistenceService(bindings, policy);
  }

  archive(memory, session) {
    return this.service.archiveConversation(memory, session);
  }

  retrieve(sessionId) {
    return this.service.retrieveArchivedConversation(sessionId);
  }

  /** Every archive of `userId`, newest first, `pageSize` per call. */
  async listAll(userId, pageSize) {
    const all = [];
    let cursor;
    for (;;) {
      const page = await this.service.listArchivedConversations(userId, pageSize, cursor);
      all.push(...page);
      if (page.listComplete) return all;
      cursor = page.cursor;
    }
  }

  cacheEmbedding(text, embedding, metadata) {
    return this.service.cacheEmbedding(text, embedding, metadata);
  }

  getEmbedding(text, model) {
    return this.service.getCachedEmbedding(text, model);
  }

  cacheQuery(query, result, metadata) {
    return this.service.cacheFrequentQuery(query, result, metadata);
  }

  getQuery(query) {
    return this.service.getCachedQueryResult(query);
  }

  hash(text) {
    return hashText(text);
  }

  backup(sessionIds) {
    return this.service.createBackup(sessionIds);
  }

  restore(backupId) {
    return this.service.restoreFromBackup(backupId);
  }

  archiveUI(sessionId, messages, userId) {
    return this.service.archiveUIMessages(sessionId, messages, { userId });
  }

  retrieveUI(sessionId) {
    return this.service.retrieveUIMessages(sessionId);
  }

  /**
   * A backup of the whole store as BackupWorkflow runs it (js/backup_workflow.ts): plan, one
   * pack a step, commit, each through `step(name, fn)` (the Workflow's `step.do`).
   */
  async workflowBackup(step, maxSessions) {
    const plan = await step("plan", () => this.service.planBackup({}, maxSessions));
    const packs = [];
    const missing = [];
    let from = null;
    for (let n = 0; ; n++) {
      const report = await step(`pack ${n}`, () => this.service.backupPack(plan, packs.length, from));
      if (report.record) packs.push(report.record);
      missing.push(...report.missingSessionIds);
      if (report.unreadableArchives.length > 0) throw new Error(`backup left out ${report.unreadableArchives.length} unreadable archives`);
      from = report.next;
      if (from === null) break;
    }
    const backupId = await step("commit", () => this.service.commitBackup(plan, packs, missing));
    return { backupId, packs: packs.length, sessions: packs.reduce((sum, pack) => sum + pack.sessions.length, 0) };
  }

  /** A restore as RestoreWorkflow runs it: the plan, then one pack a step; resolves to the sessions restored. */
  async workflowRestore(step, backupId) {
    const chain = await step("plan", () => this.service.planRestore(backupId));
    const sessions = new Set();
    for (const [id, count] of chain) {
      for (let n = 0; n < count; n++) {
        for (const session of await step(`pack ${n}`, () => this.service.restorePack(id, n))) sessions.add(session);
      }
    }
    return [...sessions];
  }

  async retention() {
    const report = await this.service.enforceRetentionPolicy();
    if (!report.complete) throw new Error(`retention stopped early: ${report.stoppedBy}`);
    const d = report.deleted;
    return { deleted: d.expiredCacheEntry + d.archivePastRetention + d.backupPastRetention + d.orphanBackupData + d.danglingIndexEntry, report };
  }
}
