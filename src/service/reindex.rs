//! `reindexUserArchives`: rebuilds the per-user archive index under the current hash secret.
//!
//! A user index key holds the user's `userKey`, an HMAC of the user id under `hashSecret`, so
//! once the secret changes every user's listing is empty: the entries are still there, under
//! keys nothing can compute any more. The global index `archive_index:` holds one entry per
//! archive with its listing summary (the `userId` included) as list metadata, so this run walks
//! it (`super::walk`, resuming from [`USER_REINDEX_CURSOR_KEY`]) and, for every entry that
//! names a user (and describes the archive of its own key), writes that user's index entry
//! under the current secret exactly as archiving writes it: the R2 key as value, the summary as
//! list metadata, no TTL. It reads no value but its resume point.
//!
//! Idempotent: writing an entry again changes nothing, so a run may be repeated or resumed at
//! will (each complete run writes every user's entries again: 1 put per archive with a user).
//! The entries under the old secret stay until the retention sweep deletes them with their
//! archives.

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::run::{stop_reason, RunBudget, RunReport, RunStatus};
use super::walk::WalkJob;
use super::DataPersistenceService;
use crate::error::{PersistenceError, Result};
use crate::hash::KeyHasher;
use crate::keys::{
    parse_archive_index_key, parse_archive_object_key, user_index_key, UserId,
    ARCHIVE_INDEX_PREFIX, USER_REINDEX_CURSOR_KEY,
};
use crate::retention::INDEX_ARCHIVE_KEY_FIELD;
use crate::store::{Clock, KvPutOptions, KvStore, ObjectStore, Rng};

/// Smallest call budget that lets a run make progress: reading the resume point, one list
/// page, one put and saving the resume point.
pub const MIN_REINDEX_CALLS: u32 = 4;

/// The walk over `archive_index:` that writes user index entries (1 put per entry).
const REINDEX_WALK: WalkJob = WalkJob {
    operation: "reindexUserArchives",
    name: "user reindex",
    resume_key: USER_REINDEX_CURSOR_KEY,
    prefix: ARCHIVE_INDEX_PREFIX,
    done: "user archives reindexed",
    min_budget: MIN_REINDEX_CALLS,
    calls_per_key: 1,
};

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
    /// Whether the run completed, why it stopped, whether it resumed, its storage calls.
    #[serde(flatten)]
    pub status: RunStatus,
}

impl RunReport for ReindexReport {
    fn status_mut(&mut self) -> &mut RunStatus {
        &mut self.status
    }
}

/// The user index entry that the `archive_index:` entry `name` with listing `summary` calls
/// for: its key and the R2 key (its value); `Ok(None)` for an archive without a user. The
/// session and time come from `name`; the summary must agree with them and name an archive
/// object of that session and time, so a foreign or damaged entry never lists an archive
/// under a user. Errors: `INVALID_INPUT` naming what does not agree (logged by the caller).
fn user_entry(
    hasher: &KeyHasher,
    name: &str,
    summary: &Map<String, Value>,
) -> Result<Option<(String, String)>> {
    let user_id = match summary.get("userId") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(user_id)) => UserId::parse(user_id)?,
        Some(other) => {
            return Err(PersistenceError::invalid_input(
                "userId",
                format!("{other} is not a string"),
            ))
        }
    };
    let index = parse_archive_index_key(name)
        .ok_or_else(|| PersistenceError::invalid_input("name", "is not an archive_index key"))?;
    let disagrees = |field: &str| {
        PersistenceError::invalid_input(field, "does not name the archive of the entry's key")
    };
    if summary.get("sessionId").and_then(Value::as_str) != Some(index.session_id.as_str()) {
        return Err(disagrees("sessionId"));
    }
    if summary.get("archivedAt").and_then(Value::as_i64) != Some(index.archived_at_ms) {
        return Err(disagrees("archivedAt"));
    }
    let object_key = summary
        .get(INDEX_ARCHIVE_KEY_FIELD)
        .and_then(Value::as_str)
        .ok_or_else(|| disagrees(INDEX_ARCHIVE_KEY_FIELD))?;
    let object = parse_archive_object_key(object_key)
        .filter(|object| {
            object.session_id == index.session_id && object.archived_at_ms == index.archived_at_ms
        })
        .ok_or_else(|| disagrees(INDEX_ARCHIVE_KEY_FIELD))?;
    let key = user_index_key(
        &hasher.user_key(&user_id),
        object.archived_at_ms,
        &object.session_id,
    )?;
    Ok(Some((key, object_key.to_owned())))
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Writes the user index entry of every archive under the current hash secret (or
    /// continues an unfinished run) within `budget`; reports what it did. Run it until
    /// `complete` after changing `hashSecret`.
    ///
    /// Costs 1 KV get (the resume point), 1 KV list per 1000 archives and 1 KV put per archive
    /// with a user; plus 1 KV put or delete for the resume point when the run stops early or
    /// completes a resumed run. Storage failures never fail the call: they stop the run
    /// (`stoppedBy`). Errors: `INVALID_INPUT` naming `maxStorageCalls` below
    /// [`MIN_REINDEX_CALLS`].
    pub async fn reindex_user_archives(&self, budget: RunBudget) -> Result<ReindexReport> {
        // For each entry: the user index entry it calls for, if it names a user.
        self.walk(
            &REINDEX_WALK,
            budget,
            async |log, walk, report: &mut ReindexReport, entry| {
                let summary = entry.metadata.as_ref().and_then(Value::as_object);
                let planned =
                    summary.map(|summary| user_entry(&self.options.hasher, &entry.name, summary));
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
                walk.run.spend(1);
                let options = KvPutOptions {
                    expiration_ttl_secs: None,
                    metadata: entry.metadata.clone(),
                };
                self.kv_put(log, &key, object_key.as_bytes(), options)
                    .await
                    .map_err(|err| stop_reason(&err))?;
                report.written += 1;
                Ok(())
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::codec::archive::ArchiveMetadata;
    use crate::service::index_entries::ArchiveEntries;

    const NAME: &str = "archive_index:8263842399999:s1";
    const OBJECT: &str = "conversations/2025/01/archive_s1_1736157600000.json.gz";

    #[test]
    fn the_entry_is_the_one_archiving_writes() {
        let hasher = KeyHasher::default();
        let metadata = ArchiveMetadata {
            session_id: "s1".into(),
            user_id: Some("auth0|Zoë".into()),
            archived_at: 1_736_157_600_000,
            message_count: 2,
            summary: "refund".into(),
            topics: vec!["billing".into()],
            duration: 60_000,
            raw_size: 300,
            stored_size: 200,
            sha256: "ab".repeat(32),
            format_version: 1,
            encrypted_summary: None,
        };
        let archived = ArchiveEntries::new(&hasher, OBJECT, &metadata).unwrap();
        let written = archived.summary.as_object().unwrap();
        assert_eq!(archived.index_keys[1], NAME);
        assert_eq!(
            user_entry(&hasher, NAME, written).unwrap(),
            Some((archived.index_keys[0].clone(), OBJECT.to_owned()))
        );
        // No user: nothing to index.
        let anonymous = summary(json!({"key": OBJECT, "sessionId": "s1", "userId": null}));
        assert_eq!(user_entry(&hasher, NAME, &anonymous).unwrap(), None);
    }

    fn summary(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_summary_that_does_not_describe_its_entry_names_the_field() {
        let hasher = KeyHasher::default();
        let good = json!({"userId": "u", "sessionId": "s1", "archivedAt": 1_736_157_600_000_i64,
                          "key": OBJECT});
        assert!(user_entry(&hasher, NAME, &summary(good.clone())).is_ok());
        let edited = |field: &str, value: Value| {
            let mut edited = good.clone();
            edited[field] = value;
            summary(edited)
        };
        for (summary, field) in [
            (edited("userId", json!(5)), "userId"),
            (edited("userId", json!("")), "userId"),
            (edited("sessionId", json!("s2")), "sessionId"),
            (edited("archivedAt", json!(1)), "archivedAt"),
            (
                edited(
                    "key",
                    json!("conversations/2025/01/archive_s2_1736157600000.json.gz"),
                ),
                "key",
            ),
            (edited("key", json!(7)), "key"),
        ] {
            let err = user_entry(&hasher, NAME, &summary).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        let err = user_entry(&hasher, "user_archives:x", &summary(good)).unwrap_err();
        assert!(err.to_string().contains("archive_index"), "{err}");
    }
}
