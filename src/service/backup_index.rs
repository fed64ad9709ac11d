//! The newest-first index of backups (`backup_index:<inverted time>:<id>`, list metadata: the
//! backup's summary) and what reads it: `listBackups`, the backup rotation retention applies,
//! and the next automated backup's search for its parent. Nothing here reads a manifest.
//!
//! A backup's fate under the rotation depends on every newer backup, so `listBackups` decides
//! the backups of each page with a [`BackupWalk`] carried from page to page in the cursor: one
//! KV list a page, and the reasons shown are those the next retention run applies (for the
//! backups the index lists; KV lists a new backup within ~60 s).

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::archive::check_page_limit;
use super::log::OpLog;
use super::run::{stop_reason, Run, StopReason};
use super::DataPersistenceService;
use crate::codec::backup::{BackupKind, BackupSummary};
use crate::error::{PersistenceError, Result};
use crate::hash::to_hex;
use crate::keys::{
    parse_backup_index_key, parse_backup_manifest_kv_key, BackupId, UserId, BACKUP_INDEX_PREFIX,
    BACKUP_MANIFEST_PREFIX,
};
use crate::platform::MAX_LIST_LIMIT;
use crate::retention::{BackupDecisions, BackupRules, BackupVersion, BackupWalk, KeepReason};
use crate::store::{Clock, KvListOptions, KvListPage, KvStore, ObjectStore, Rng};

/// One backup of a `listBackups` page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedBackup {
    /// The backup's id.
    pub backup_id: BackupId,
    /// When it was made (epoch ms).
    pub created_at: i64,
    /// Who made it: `manual` (`createBackup`) or `automated` (the backup Workflow).
    pub kind: BackupKind,
    /// Whether it holds only what changed since `parentBackupId` (restored with it).
    pub incremental: bool,
    /// The backup it is incremental to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_backup_id: Option<BackupId>,
    /// Sessions it holds.
    pub session_count: u64,
    /// Bytes of its packs in R2.
    pub stored_size: u64,
    /// Made for one user (`createBackup(ids, {userId})`).
    pub for_user: bool,
    /// Made with `keep: true`.
    pub keep: bool,
    /// Whether the backup policy keeps it; false: the next retention run deletes it.
    pub kept: bool,
    /// Why it is kept (`last`, `daily`, `weekly`, `monthly`, `pinned`, `parent`, `chainHead`,
    /// `withinRetention`).
    pub reasons: Vec<KeepReason>,
}

/// One page of `listBackups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupListing {
    /// Backups, newest first.
    pub backups: Vec<ListedBackup>,
    /// Pass this to the next call to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// True when no page follows. A page may hold fewer than `limit` backups while this is
    /// false (with `userId`, a page of the index may hold none of the user's): follow the cursor.
    pub list_complete: bool,
}

/// Where the next page starts: the KV page, the last key of it already returned, and the
/// rotation's walk so far. Hex of its JSON in `listBackups`' cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ListPosition {
    /// The KV cursor of the page (`None`: the first).
    kv: Option<String>,
    /// The last key of that page already handled; the page's later keys come next.
    after: Option<String>,
    /// The walk over every backup before that point.
    walk: BackupWalk,
}

impl ListPosition {
    fn encode(&self) -> String {
        to_hex(json!(self).to_string().as_bytes())
    }

    /// Reads a cursor `encode` made while the policy's rules were `rules`.
    fn decode(cursor: &str, rules: &BackupRules) -> Result<Self> {
        let invalid = || {
            PersistenceError::invalid_input(
                "cursor",
                "is not a cursor listBackups returned under this backup policy (pass the last \
                 page's cursor as it was)",
            )
        };
        if cursor.len() % 2 != 0 {
            return Err(invalid());
        }
        let bytes: Option<Vec<u8>> = (0..cursor.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(cursor.get(at..at + 2)?, 16).ok())
            .collect();
        let position: Self =
            serde_json::from_slice(&bytes.ok_or_else(invalid)?).map_err(|_| invalid())?;
        if !position.walk.may_follow(rules) {
            return Err(invalid());
        }
        Ok(position)
    }
}

/// A listed index entry: its backup, and its summary when the metadata holds one.
struct IndexEntry {
    id: BackupId,
    created_at_ms: i64,
    summary: Option<BackupSummary>,
}

impl IndexEntry {
    fn parse(name: &str, metadata: Option<&serde_json::Value>) -> Option<Self> {
        let (id, created_at_ms) = parse_backup_index_key(name)?;
        Some(IndexEntry {
            id,
            created_at_ms,
            summary: BackupSummary::from_metadata(metadata),
        })
    }

    /// The backup as the rotation sees it (an entry without a summary: a full, unpinned one).
    fn version(&self) -> BackupVersion {
        let summary = self.summary.as_ref();
        BackupVersion {
            id: self.id.to_string(),
            created_at_ms: self.created_at_ms,
            parent: summary
                .and_then(|s| s.parent_backup_id.as_ref())
                .map(ToString::to_string),
            pinned: summary.is_some_and(|s| s.keep),
            chained: summary.is_some_and(|s| s.chained),
        }
    }
}

/// Records what keeps backup `id`, which the index does not list, from its `backup_manifest:`
/// list metadata (a summary, or the earlier `{parentBackupId?, keep?}`): made with `keep`, it
/// is pinned; its parent stays whatever the rotation decided for it, since restoring `id`
/// needs it. Neither depends on whether `id` itself stays: a chain then goes from its newest
/// backup back, one run at a time.
fn protect_unindexed(
    decisions: &mut BackupDecisions,
    id: BackupId,
    metadata: Option<&serde_json::Value>,
) {
    let field = |name: &str| metadata.and_then(|metadata| metadata.get(name));
    if let Some(parent) = field("parentBackupId")
        .and_then(serde_json::Value::as_str)
        .and_then(|parent| BackupId::parse(parent).ok())
    {
        match decisions.decided.get_mut(&parent) {
            Some(reasons) if !reasons.contains(&KeepReason::Parent) => {
                reasons.push(KeepReason::Parent)
            }
            Some(_) => {}
            None => {
                decisions.protected.insert(parent);
            }
        }
    }
    if field("keep") == Some(&serde_json::Value::Bool(true)) {
        decisions.decided.insert(id, vec![KeepReason::Pinned]);
    }
}

/// The entries of a page with whether each is the oldest backup of the whole index.
fn entries(page: &KvListPage) -> impl Iterator<Item = (&str, IndexEntry, bool)> {
    let last = page.keys.len().saturating_sub(1);
    page.keys.iter().enumerate().filter_map(move |(at, key)| {
        let entry = IndexEntry::parse(&key.name, key.metadata.as_ref())?;
        Some((key.name.as_str(), entry, page.list_complete && at == last))
    })
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// How backups are decided now: the policy's rotation, or age when every count is 0.
    fn backup_rules(&self) -> BackupRules {
        BackupRules::new(
            self.policy.gfs(),
            self.clock.now_ms(),
            self.policy.archive_retention_ms,
        )
    }

    /// One page of backups, newest first: every backup, or with `user_id` those made for that
    /// user, each with the backup policy's decision. `limit` is 1..=1000; `cursor` comes from
    /// the previous page.
    ///
    /// Costs exactly 1 KV list (of up to 1000 index entries, whatever `limit` is). KV listings
    /// are eventually consistent: a backup may take up to ~60 s to appear. Errors:
    /// `INVALID_INPUT` (`limit`, `cursor`), `INVALID_ID` (`userId`), `STORAGE_UNAVAILABLE` /
    /// `CIRCUIT_OPEN`.
    pub async fn list_backups(
        &self,
        user_id: Option<&str>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<BackupListing> {
        let log = self.begin("listBackups");
        check_page_limit(limit)?;
        let owner = match user_id {
            Some(user) => Some(self.options.hasher.user_key(&UserId::parse(user)?)),
            None => None,
        };
        let rules = self.backup_rules();
        let mut at = match cursor {
            Some(cursor) => ListPosition::decode(cursor, &rules)?,
            None => ListPosition {
                kv: None,
                after: None,
                walk: BackupWalk::new(&rules),
            },
        };
        let page = self
            .kv_prefix_page(&log, BACKUP_INDEX_PREFIX, at.kv.clone())
            .await?;
        let mut backups = Vec::new();
        for (name, entry, oldest) in entries(&page) {
            if at.after.as_deref().is_some_and(|after| name <= after) {
                continue;
            }
            if backups.len() == limit as usize {
                // The page has more: the next call lists it again and starts after `after`.
                return Ok(BackupListing {
                    backups,
                    cursor: Some(at.encode()),
                    list_complete: false,
                });
            }
            let reasons = at.walk.decide(&rules, &entry.version(), oldest);
            at.after = Some(name.to_owned());
            let Some(summary) = entry.summary else {
                log.event(
                    "warn",
                    "skipped a backup index entry without a summary",
                    json!({ "key": name }),
                );
                continue;
            };
            let wanted = owner.is_none() || summary.user_key == owner;
            if wanted {
                backups.push(ListedBackup {
                    backup_id: entry.id,
                    created_at: entry.created_at_ms,
                    kind: summary.kind,
                    incremental: summary.parent_backup_id.is_some(),
                    parent_backup_id: summary.parent_backup_id,
                    session_count: summary.sessions,
                    stored_size: summary.stored_size,
                    for_user: summary.user_key.is_some(),
                    keep: summary.keep,
                    kept: !reasons.is_empty(),
                    reasons,
                });
            }
        }
        let next = page.cursor.filter(|_| !page.list_complete);
        Ok(BackupListing {
            backups,
            list_complete: next.is_none(),
            cursor: next.map(|kv| {
                ListPosition {
                    kv: Some(kv),
                    after: None,
                    walk: at.walk,
                }
                .encode()
            }),
        })
    }

    /// Decides every backup a retention run may delete: the indexed ones under the backup
    /// policy, then those outside the index (committed before it existed, or whose index entry
    /// failed to write), which keep what their `backup_manifest:` entry says: made with `keep`,
    /// or a parent of any of them. Costs 1 KV list per 1000 backups of each prefix, each
    /// afforded by `run`.
    pub(super) async fn backup_decisions<P>(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<P>,
    ) -> Result<BackupDecisions, StopReason> {
        let rules = self.backup_rules();
        let mut walk = BackupWalk::new(&rules);
        let mut decisions = BackupDecisions::default();
        let mut cursor = None;
        loop {
            let page = self
                .afforded_page(log, run, BACKUP_INDEX_PREFIX, cursor)
                .await?;
            for (_, entry, oldest) in entries(&page) {
                let reasons = walk.decide(&rules, &entry.version(), oldest);
                decisions.decided.insert(entry.id, reasons);
            }
            cursor = page.cursor.filter(|_| !page.list_complete);
            if cursor.is_none() {
                break;
            }
        }
        decisions.protected = walk
            .pending_parents()
            .iter()
            .filter_map(|id| BackupId::parse(id).ok())
            .collect();
        loop {
            let page = self
                .afforded_page(log, run, BACKUP_MANIFEST_PREFIX, cursor)
                .await?;
            for key in &page.keys {
                let Some(id) = parse_backup_manifest_kv_key(&key.name) else {
                    continue;
                };
                if !decisions.decided.contains_key(&id) {
                    protect_unindexed(&mut decisions, id, key.metadata.as_ref());
                }
            }
            cursor = page.cursor.filter(|_| !page.list_complete);
            if cursor.is_none() {
                return Ok(decisions);
            }
        }
    }

    /// One page of `prefix` for a retention run, afforded by `run`.
    async fn afforded_page<P>(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<P>,
        prefix: &str,
        cursor: Option<String>,
    ) -> Result<KvListPage, StopReason> {
        run.afford(2, self.clock.now_ms())?;
        run.spend(1);
        self.kv_prefix_page(log, prefix, cursor)
            .await
            .map_err(|err| stop_reason(&err))
    }

    /// The newest backup of the automated chain and when its chain started, from the index
    /// (newest first: listing stops at the first); `None` when there is none.
    pub(super) async fn newest_chained_backup(
        &self,
        log: &OpLog<'_>,
    ) -> Result<Option<(BackupId, i64)>> {
        let mut cursor = None;
        loop {
            let page = self
                .kv_prefix_page(log, BACKUP_INDEX_PREFIX, cursor)
                .await?;
            for (_, entry, _) in entries(&page) {
                if let Some(summary) = entry.summary.filter(|summary| summary.chained) {
                    let start = summary.chain_start_ms.unwrap_or(entry.created_at_ms);
                    return Ok(Some((entry.id, start)));
                }
            }
            cursor = page.cursor.filter(|_| !page.list_complete);
            if cursor.is_none() {
                return Ok(None);
            }
        }
    }

    /// One page (up to 1000 keys) of the KV keys starting with `prefix`.
    async fn kv_prefix_page(
        &self,
        log: &OpLog<'_>,
        prefix: &str,
        cursor: Option<String>,
    ) -> Result<KvListPage> {
        let options = KvListOptions {
            prefix: Some(prefix.to_owned()),
            cursor,
            limit: Some(MAX_LIST_LIMIT),
        };
        self.kv_list(log, options).await
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::retention::GfsPolicy;

    #[test]
    fn cursors_round_trip_and_anything_else_is_named() {
        let rules = BackupRules::Rotation(GfsPolicy {
            keep_last: 1,
            keep_daily: 2,
            keep_weekly: 0,
            keep_monthly: 0,
        });
        let position = ListPosition {
            kv: Some("opaque kv cursor".into()),
            after: Some("backup_index:1:backup_a".into()),
            walk: BackupWalk::new(&rules),
        };
        assert_eq!(
            ListPosition::decode(&position.encode(), &rules).unwrap(),
            position
        );
        // A walk that has decided an incremental backup carries its parent.
        let mut walked = position.clone();
        let child = BackupVersion {
            id: "backup_b".into(),
            created_at_ms: 2,
            parent: Some("backup_a".into()),
            pinned: false,
            chained: true,
        };
        assert!(!walked.walk.decide(&rules, &child, false).is_empty());
        assert_eq!(walked.walk.pending_parents().len(), 1);
        assert_eq!(
            ListPosition::decode(&walked.encode(), &rules).unwrap(),
            walked
        );
        // More left than the policy allows (it changed, or the cursor was made up), or a parent
        // no decided backup named: refused.
        let fewer = BackupRules::Rotation(GfsPolicy {
            keep_last: 1,
            keep_daily: 1,
            keep_weekly: 0,
            keep_monthly: 0,
        });
        let mut forged = json!(position);
        forged["walk"]["parents"] = json!(["backup_x"]);
        let forged = to_hex(forged.to_string().as_bytes());
        let refused = [
            ListPosition::decode(&position.encode(), &fewer),
            ListPosition::decode(&forged, &rules),
        ];
        for bad in ["", "z", "zz", "7b7d", "abc"] {
            let err = ListPosition::decode(bad, &rules).unwrap_err();
            assert_eq!(err.code(), "INVALID_INPUT", "{bad}");
            assert!(err.to_string().contains("cursor"), "{err}");
        }
        for result in refused {
            assert_eq!(result.unwrap_err().code(), "INVALID_INPUT");
        }
    }
}
