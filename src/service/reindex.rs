//! `reindexUserArchives`: rebuilds the per-user archive index under the current hash secret.
//!
//! A user index key holds the user's `userKey`, an HMAC of the user id under `hashSecret`, so
//! once the secret changes every user's listing is empty: the entries are still there, under
//! keys nothing can compute any more. The global index `archive_index:` holds one entry per
//! archive with its listing summary (the `userId` included) as list metadata, so this run walks
//! it (`super::walk`, resuming from [`USER_REINDEX_CURSOR_KEY`]) and, for every entry that
//! names a user, writes that user's index entry under the current secret, exactly as archiving
//! writes it: the R2 key as value, the summary as list metadata, no TTL. It reads no value.
//!
//! Idempotent: writing an entry again changes nothing, so a run may be repeated or resumed at
//! will (each complete run writes every user's entries again: 1 put per archive with a user).
//! The entries under the old secret stay until the retention sweep deletes them with their
//! archives.

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::log::OpLog;
use super::retention::{stop_reason, RetentionBudget, StopReason};
use super::walk::KvWalk;
use super::{json_text, PersistenceService};
use crate::error::{PersistenceError, Result};
use crate::hash::KeyHasher;
use crate::keys::{
    user_index_key, SessionId, UserId, ARCHIVE_INDEX_PREFIX, USER_REINDEX_CURSOR_KEY,
};
use crate::retention::INDEX_ARCHIVE_KEY_FIELD;
use crate::store::{Clock, KvPutOptions, KvStore, ListedKvKey, ObjectStore};

/// Smallest call budget that lets a run make progress: reading the resume point, one list
/// page, one put and saving the resume point.
pub const MIN_REINDEX_CALLS: u32 = 4;

/// What one run of `reindexUserArchives` did, as JSON for JavaScript: `{"scanned": n,
/// "written": n, "anonymous": n, "unreadable": n, "complete": true, "stoppedBy": null,
/// "resumed": false, "storageCalls": n}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReindexReport {
    /// `archive_index:` entries listed by this run.
    pub scanned: u64,
    /// User index entries written.
    pub written: u64,
    /// Entries of archives without a user (nothing to index).
    pub anonymous: u64,
    /// Entries whose list metadata cannot be read (logged with the key).
    pub unreadable: u64,
    /// True when the run reached the end of `archive_index:` (its resume point is cleared).
    pub complete: bool,
    /// Why the run stopped early, when it did.
    pub stopped_by: Option<StopReason>,
    /// True when this run continued an earlier, unfinished one.
    pub resumed: bool,
    /// Storage calls made by this run (a retried call counts once).
    pub storage_calls: u32,
}

impl ReindexReport {
    /// The report as JSON text for JavaScript.
    pub fn to_json(&self) -> String {
        json_text(self)
    }
}

/// The user index entry an `archive_index:` entry calls for: its key and the R2 key (its
/// value); `Ok(None)` for an archive without a user.
fn user_entry(
    hasher: &KeyHasher,
    summary: &Map<String, Value>,
) -> Result<Option<(String, String)>> {
    let field = |name: &str| {
        summary
            .get(name)
            .ok_or_else(|| PersistenceError::invalid_input(name, "missing from the summary"))
    };
    let Some(user_id) = summary.get("userId") else {
        return Ok(None);
    };
    let user_id = user_id
        .as_str()
        .ok_or_else(|| PersistenceError::invalid_input("userId", "is not a string"))?;
    let session_id = field("sessionId")?
        .as_str()
        .ok_or_else(|| PersistenceError::invalid_input("sessionId", "is not a string"))?;
    let archived_at_ms = field("archivedAt")?
        .as_i64()
        .ok_or_else(|| PersistenceError::invalid_input("archivedAt", "is not an integer"))?;
    let object_key = field(INDEX_ARCHIVE_KEY_FIELD)?
        .as_str()
        .ok_or_else(|| PersistenceError::invalid_input("key", "is not a string"))?;
    let user_key = hasher.user_key(&UserId::parse(user_id)?);
    let key = user_index_key(&user_key, archived_at_ms, &SessionId::parse(session_id)?)?;
    Ok(Some((key, object_key.to_owned())))
}

impl<K: KvStore, R: ObjectStore, C: Clock> PersistenceService<K, R, C> {
    /// Writes the user index entry of every archive under the current hash secret (or
    /// continues an unfinished run) within `budget`; reports what it did. Run it until
    /// `complete` after changing `hashSecret`.
    ///
    /// Costs 1 KV get (the resume point), 1 KV list per 1000 archives and 1 KV put per archive
    /// with a user; plus 1 KV put or delete for the resume point when the run stops early or
    /// completes a resumed run. Storage failures never fail the call: they stop the run
    /// (`stoppedBy`). Errors: `INVALID_INPUT` naming `maxStorageCalls` below
    /// [`MIN_REINDEX_CALLS`].
    pub async fn reindex_user_archives(&self, budget: RetentionBudget) -> Result<ReindexReport> {
        let log = self.begin("reindexUserArchives");
        budget.require_at_least(MIN_REINDEX_CALLS)?;
        let mut walk = KvWalk::new(budget, USER_REINDEX_CURSOR_KEY, "user reindex");
        let mut report = ReindexReport::default();
        self.load_walk_position(&log, &mut walk).await;
        let outcome = self.reindex_pages(&log, &mut walk, &mut report).await;
        self.finish_walk(&log, &mut walk, &outcome).await;
        report.complete = outcome.is_ok();
        report.stopped_by = outcome.err();
        report.resumed = walk.resumed;
        report.storage_calls = walk.calls;
        log.event("info", "user archives reindexed", json!(report));
        Ok(report)
    }

    /// Every page of `archive_index:` from the walk's position.
    async fn reindex_pages(
        &self,
        log: &OpLog<'_>,
        walk: &mut KvWalk,
        report: &mut ReindexReport,
    ) -> Result<(), StopReason> {
        while let Some(page) = self
            .next_walk_page(log, walk, ARCHIVE_INDEX_PREFIX, 1)
            .await?
        {
            for entry in &page {
                self.reindex_entry(log, walk, report, entry).await?;
            }
            walk.page_done();
        }
        Ok(())
    }

    /// Writes the user index entry of one `archive_index:` entry, if it names a user.
    async fn reindex_entry(
        &self,
        log: &OpLog<'_>,
        walk: &mut KvWalk,
        report: &mut ReindexReport,
        entry: &ListedKvKey,
    ) -> Result<(), StopReason> {
        let summary = entry.metadata.as_ref().and_then(Value::as_object);
        let planned = summary.map(|summary| user_entry(&self.options.hasher, summary));
        let (key, object_key) = match planned {
            Some(Ok(Some(planned))) => planned,
            Some(Ok(None)) => {
                report.scanned += 1;
                report.anonymous += 1;
                return Ok(());
            }
            unreadable => {
                report.scanned += 1;
                report.unreadable += 1;
                let error = match unreadable {
                    Some(Err(err)) => err.to_string(),
                    _ => "no listing summary".to_owned(),
                };
                log.event(
                    "warn",
                    "skipped an archive_index entry whose summary cannot be read",
                    json!({ "key": entry.name, "error": error }),
                );
                return Ok(());
            }
        };
        walk.claim(&entry.name, 1, self.clock.now_ms())?;
        report.scanned += 1;
        walk.calls += 1;
        let options = KvPutOptions {
            expiration_ttl_secs: None,
            metadata: entry.metadata.clone(),
        };
        self.kv_put(log, &key, object_key.as_bytes(), options)
            .await
            .map_err(|err| stop_reason(&err))?;
        report.written += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn summary(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn the_entry_is_the_one_archiving_writes() {
        let hasher = KeyHasher::default();
        let key = "conversations/2025/01/archive_s1_1736157600000.json.gz";
        let planned = user_entry(
            &hasher,
            &summary(json!({"key": key, "sessionId": "s1", "userId": "auth0|Zoë",
                            "archivedAt": 1_736_157_600_000_i64})),
        );
        let user_key = hasher.user_key(&UserId::parse("auth0|Zoë").unwrap());
        let expected = user_index_key(
            &user_key,
            1_736_157_600_000,
            &SessionId::parse("s1").unwrap(),
        )
        .unwrap();
        assert_eq!(planned.unwrap(), Some((expected, key.to_owned())));
        // No user: nothing to index.
        let anonymous = user_entry(&hasher, &summary(json!({"key": key, "sessionId": "s1"})));
        assert_eq!(anonymous.unwrap(), None);
    }

    #[test]
    fn an_unusable_summary_names_the_field() {
        let hasher = KeyHasher::default();
        for (value, field) in [
            (json!({"userId": 5}), "userId"),
            (json!({"userId": "u"}), "sessionId"),
            (json!({"userId": "u", "sessionId": "s1"}), "archivedAt"),
            (
                json!({"userId": "u", "sessionId": "s1", "archivedAt": 1}),
                "key",
            ),
            (
                json!({"userId": "", "sessionId": "s1", "archivedAt": 1, "key": "k"}),
                "userId",
            ),
        ] {
            let err = user_entry(&hasher, &summary(value)).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }
}
