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

  async retention() {
    const report = await this.service.enforceRetentionPolicy();
    if (!report.complete) throw new Error(`retention stopped early: ${report.stoppedBy}`);
    const d = report.deleted;
    return { deleted: d.expiredCacheEntry + d.archivePastRetention + d.backupPastRetention + d.orphanBackupData + d.danglingIndexEntry, report };
  }
}
