//! `exportStore`: the whole store as NDJSON (docs/FORMAT.md, "Exports"), for moving it to
//! another environment with `importStore`, in the order an import needs: every erasure
//! tombstone (R2 `erasures/`), so the import honours erasures before it meets an archive;
//! every wrapped data key (R2 `keys/`), so encrypted archives decrypt there; then every archive
//! the global index (`archive_index:`) lists, **as stored** (encrypted ones stay encrypted), as
//! the pack entry an index backup would make of it (`super::backup_steps`: the same metadata
//! rules, the same checks). Archives a tombstone covers are not exported. Indexes are not
//! exported: an import rebuilds them from each archive's metadata. Backups are not exported:
//! the target makes its own.
//!
//! A run on the shared run driver: within `maxStorageCalls` and `timeBudgetMs` it stops after
//! a whole line, and its end line carries a cursor (phase and position) from which the next
//! export continues exactly; the lines of successive exports concatenate to those of one. The
//! cursor lives in the stream, not in KV: two operators' exports never share a resume point.
//! A damaged archive or object is left out, logged and listed in the end line (`unreadable`),
//! as an automated backup leaves it out: one bad archive must not keep a store from moving.
//!
//! Memory: one listing page (1000 R2 objects or KV index entries), one archive and one chunk of
//! output, whatever the store's size.

use std::collections::VecDeque;
use std::vec::IntoIter;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::backup_steps::{indexed_archive, IndexedArchive};
use super::log::OpLog;
use super::run::{stop_reason, Run, RunBudget, StopReason};
use super::tombstone::ErasureCheck;
use super::walk::{KvPager, KvPosition};
use super::{DataPersistenceService, EXPORT_CHUNK_BYTES};
use crate::codec::export::{
    archive_line, decode_cursor, encode_cursor, object_line, store_end_line, LineDigest, StoreEnd,
};
use crate::crypto::data_key::WrappedKey;
use crate::error::{PersistenceError, Result};
use crate::hash::sha256_hex;
use crate::keys::{
    parse_data_key_object, parse_erasure_tombstone_key, ARCHIVE_INDEX_PREFIX, DATA_KEY_PREFIX,
    ERASURE_PREFIX,
};
use crate::store::{Clock, KvStore, ListedKvKey, ListedR2Object, ObjectStore, Rng};

/// Storage calls one archive may need: its R2 get, the KV get of its record when its listing
/// summary was cut, and the R2 head of its user's tombstone.
const CALLS_PER_ARCHIVE: u32 = 3;

/// The smallest `maxStorageCalls` an export accepts: a listing and one archive.
pub const MIN_EXPORT_STORE_CALLS: u32 = 1 + CALLS_PER_ARCHIVE;

/// Content type of the objects exported besides archives: tombstones and wrapped data keys are
/// JSON, as this library writes them.
const OBJECT_CONTENT_TYPE: &str = "application/json";

/// Most unreadable keys an end line lists.
const MAX_LISTED_UNREADABLE: usize = 1000;

/// Where an export continues: the cursor is hex of its JSON (as [`CursorForm`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "CursorForm", try_from = "CursorForm")]
enum StorePosition {
    /// Erasure tombstones after the key `after`.
    Erasures { after: Option<String> },
    /// Wrapped data keys after the key `after`.
    Keys { after: Option<String> },
    /// The global index from a KV position.
    Archives(KvPosition),
    /// Nothing left.
    Done,
}

/// The phases of an export, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Phase {
    Erasures,
    Keys,
    Archives,
    Done,
}

/// A [`StorePosition`] as its cursor holds it: one flat object (`{"phase":"archives",
/// "kvCursor":...}`), which reads with a fraction of the code an internally tagged enum takes.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CursorForm {
    phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kv_cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kv_resume_at: Option<String>,
}

impl From<StorePosition> for CursorForm {
    fn from(position: StorePosition) -> Self {
        let form = |phase, after| CursorForm {
            phase,
            after,
            kv_cursor: None,
            kv_resume_at: None,
        };
        match position {
            StorePosition::Erasures { after } => form(Phase::Erasures, after),
            StorePosition::Keys { after } => form(Phase::Keys, after),
            StorePosition::Archives(at) => CursorForm {
                kv_cursor: at.kv_cursor,
                kv_resume_at: at.kv_resume_at,
                ..form(Phase::Archives, None)
            },
            StorePosition::Done => form(Phase::Done, None),
        }
    }
}

impl TryFrom<CursorForm> for StorePosition {
    type Error = &'static str;

    fn try_from(form: CursorForm) -> Result<Self, Self::Error> {
        let CursorForm {
            phase,
            after,
            kv_cursor,
            kv_resume_at,
        } = form;
        let kv = kv_cursor.is_some() || kv_resume_at.is_some();
        match (phase, after.is_some(), kv) {
            (Phase::Erasures, _, false) => Ok(StorePosition::Erasures { after }),
            (Phase::Keys, _, false) => Ok(StorePosition::Keys { after }),
            (Phase::Archives, false, _) => Ok(StorePosition::Archives(KvPosition {
                kv_cursor,
                kv_resume_at,
            })),
            (Phase::Done, false, false) => Ok(StorePosition::Done),
            _ => Err("members of another phase"),
        }
    }
}

impl Default for StorePosition {
    fn default() -> Self {
        StorePosition::Erasures { after: None }
    }
}

/// The R2 page being exported in a tombstone or data key phase.
#[derive(Default)]
struct ObjectPage {
    objects: VecDeque<ListedR2Object>,
    /// No page follows this one.
    last: bool,
    /// A page was listed in this phase.
    listed: bool,
}

/// The state of one store export between reads of its stream.
pub struct StoreExport {
    request_id: String,
    run: Run<StorePosition>,
    objects: ObjectPage,
    pager: Option<KvPager>,
    /// The rest of the index page being exported.
    page: Option<IntoIter<ListedKvKey>>,
    /// Tombstones read for this page's archives (a page's worth at most).
    erasures: ErasureCheck,
    digest: LineDigest,
    unreadable: Vec<String>,
    skipped_erased: u64,
    ended: bool,
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Starts an export of the whole store within `budget`, from the start or from `cursor`
    /// (an earlier export's end line's); its stream is read with
    /// [`Self::next_store_export_chunk`]. Nothing is read yet. Errors: `INVALID_INPUT` naming
    /// `maxStorageCalls` (below [`MIN_EXPORT_STORE_CALLS`]) or `cursor`.
    pub fn export_store(&self, budget: RunBudget, cursor: Option<&str>) -> Result<StoreExport> {
        let mut run = Run::new(budget, MIN_EXPORT_STORE_CALLS, "store export")?;
        if let Some(cursor) = cursor {
            run.position = decode_cursor(cursor).ok_or_else(|| {
                PersistenceError::invalid_input(
                    "cursor",
                    "is not a cursor an exportStore end line gave (pass it as it was)",
                )
            })?;
            run.status.resumed = true;
        }
        let pager = match &run.position {
            StorePosition::Archives(at) => Some(KvPager::new(ARCHIVE_INDEX_PREFIX, at.clone())),
            _ => None,
        };
        Ok(StoreExport {
            request_id: self.new_request_id(),
            run,
            objects: ObjectPage::default(),
            pager,
            page: None,
            erasures: ErasureCheck::default(),
            digest: LineDigest::default(),
            unreadable: Vec::new(),
            skipped_erased: 0,
            ended: false,
        })
    }

    /// The next bytes of `export`'s stream: whole lines, about [`EXPORT_CHUNK_BYTES`] of them,
    /// the end line last; `None` once it was given. A run out of budget, or a storage failure,
    /// ends the stream early with an end line whose `cursor` continues it. Costs 1 R2 list per
    /// 1000 tombstones and data keys and 1 R2 get each; 1 KV list per 1000 archives and per
    /// archive 1 R2 get (plus 1 KV get when its listing summary was cut or is missing), and 1
    /// R2 head per user per index page (the user's tombstone). Errors: none but those of
    /// encoding a line (`INVALID_INPUT`); storage failures end the run instead.
    pub async fn next_store_export_chunk(
        &self,
        export: &mut StoreExport,
    ) -> Result<Option<Vec<u8>>> {
        if export.ended {
            return Ok(None);
        }
        let log = self.continue_op("exportStore", &export.request_id);
        let mut chunk = Vec::new();
        let outcome = loop {
            if chunk.len() >= EXPORT_CHUNK_BYTES {
                return Ok(Some(chunk));
            }
            match self.export_next(&log, export).await {
                Ok(Step::Line(line)) => {
                    export.digest.add(&line);
                    chunk.extend(line);
                }
                Ok(Step::Nothing) => {}
                Ok(Step::Done) => break Ok(()),
                Err(Stop::Run(reason)) => break Err(reason),
                Err(Stop::Error(err)) => return Err(err),
            }
        };
        self.finish_run(&log, &mut export.run, outcome).await;
        let status = export.run.status;
        let end = StoreEnd {
            complete: status.complete,
            cursor: (!status.complete).then(|| encode_cursor(&export.run.position)),
            stopped_by: status
                .stopped_by
                .map(|reason| json!(reason).as_str().unwrap_or_default().to_owned()),
            unreadable: std::mem::take(&mut export.unreadable),
        };
        chunk.extend(store_end_line(&export.digest, &end));
        export.ended = true;
        log.event(
            "info",
            "store export finished",
            json!({ "lines": export.digest.count(), "skippedErased": export.skipped_erased,
                "unreadable": end.unreadable.len(), "status": status }),
        );
        Ok(Some(chunk))
    }

    /// One step of an export: the next object or archive, or the next listing page.
    async fn export_next(&self, log: &OpLog<'_>, export: &mut StoreExport) -> Result<Step, Stop> {
        let (prefix, after) = match &export.run.position {
            StorePosition::Erasures { after } => (ERASURE_PREFIX, after.clone()),
            StorePosition::Keys { after } => (DATA_KEY_PREFIX, after.clone()),
            StorePosition::Archives(_) => return self.export_next_archive(log, export).await,
            StorePosition::Done => return Ok(Step::Done),
        };
        let Some(object) = export.objects.objects.pop_front() else {
            if export.objects.listed && export.objects.last {
                export.objects = ObjectPage::default();
                export.run.position = match export.run.position {
                    StorePosition::Erasures { .. } => StorePosition::Keys { after: None },
                    _ => {
                        let at = KvPosition::default();
                        export.pager = Some(KvPager::new(ARCHIVE_INDEX_PREFIX, at.clone()));
                        StorePosition::Archives(at)
                    }
                };
                return Ok(Step::Nothing);
            }
            // Room for the listing and the first object of the page.
            export.run.afford(3, self.clock.now_ms())?;
            let page = self
                .next_r2_page(log, &mut export.run, prefix, after, false)
                .await?;
            // An empty page ends the phase: listing again after the same key would not move.
            export.objects = ObjectPage {
                last: !page.truncated || page.objects.is_empty(),
                objects: page.objects.into(),
                listed: true,
            };
            export.erasures = ErasureCheck::default();
            return Ok(Step::Nothing);
        };
        // A user's data key also needs its user's tombstone.
        export.run.afford(2, self.clock.now_ms()).inspect_err(|_| {
            export.objects.objects.push_front(object.clone());
        })?;
        let before = log.storage_calls();
        let line = self.object_export_line(log, export, &object.key).await;
        export.run.spend(log.storage_calls() - before);
        let line = line.map_err(|err| {
            export.objects.objects.push_front(object.clone());
            Stop::Run(stop_reason(&err))
        })?;
        let position_after = Some(object.key);
        export.run.position = match export.run.position {
            StorePosition::Erasures { .. } => StorePosition::Erasures {
                after: position_after,
            },
            _ => StorePosition::Keys {
                after: position_after,
            },
        };
        Ok(line.map_or(Step::Nothing, Step::Line))
    }

    /// The line of the tombstone or data key under `key`, or `None` when it is not exported:
    /// gone, not ours (logged), failing its checksum, or a user's data key made before that
    /// user's erasure (noted in `export`). Errors: storage failures only.
    async fn object_export_line(
        &self,
        log: &OpLog<'_>,
        export: &mut StoreExport,
        key: &str,
    ) -> Result<Option<Vec<u8>>> {
        let Some(stored) = self.r2_get(log, key).await? else {
            return Ok(None);
        };
        let reference = parse_data_key_object(key);
        if parse_erasure_tombstone_key(key).is_none() && reference.is_none() {
            log.event(
                "warn",
                "skipped an object that is neither a tombstone nor a data key",
                json!({ "key": key }),
            );
            return Ok(None);
        }
        let actual = sha256_hex(&stored.body);
        if let Some(recorded) = stored.meta.sha256.as_deref() {
            if !recorded.eq_ignore_ascii_case(&actual) {
                log.event(
                    "error",
                    "object not exported: it fails its checksum",
                    json!({ "key": key, "recorded": recorded, "actual": actual }),
                );
                note_unreadable(export, key);
                return Ok(None);
            }
        }
        if let Some(user_key) = reference.and_then(|reference| reference.strip_prefix("users/")) {
            let created_at = match WrappedKey::decode(key, &stored.body) {
                Ok(wrapped) => wrapped.created_at,
                Err(err) => {
                    log.event(
                        "error",
                        "data key not exported: it cannot be read",
                        json!({ "key": key, "code": err.code(), "error": err.to_string() }),
                    );
                    note_unreadable(export, key);
                    return Ok(None);
                }
            };
            match self.tombstone_of(log, &mut export.erasures, user_key).await {
                Ok(Some(tombstone)) if tombstone.covers(created_at) => {
                    // Destroyed by the erasure under way: an import must not bring it back.
                    export.skipped_erased += 1;
                    return Ok(None);
                }
                Ok(_) => {}
                Err(
                    err @ (PersistenceError::StorageUnavailable { .. }
                    | PersistenceError::CircuitOpen { .. }),
                ) => return Err(err),
                Err(err) => {
                    log.event(
                        "error",
                        "data key not exported: its user's tombstone cannot be read",
                        json!({ "key": key, "code": err.code(), "error": err.to_string() }),
                    );
                    note_unreadable(export, key);
                    return Ok(None);
                }
            }
        }
        Ok(Some(object_line(
            key,
            OBJECT_CONTENT_TYPE,
            &stored.meta.custom_metadata,
            &stored.body,
        )))
    }

    /// One step of the archive phase: the next archive of the index page, or the next page.
    async fn export_next_archive(
        &self,
        log: &OpLog<'_>,
        export: &mut StoreExport,
    ) -> Result<Step, Stop> {
        let Some(pager) = export.pager.as_mut() else {
            return Ok(Step::Done);
        };
        let Some(entry) = export
            .page
            .as_mut()
            .and_then(|page| page.as_slice().first().cloned())
        else {
            if export.page.take().is_some() {
                pager.page_done();
                export.run.position = StorePosition::Archives(pager.at.clone());
            }
            return match self
                .next_kv_page(log, &mut export.run, pager, CALLS_PER_ARCHIVE)
                .await?
            {
                Some(keys) => {
                    export.page = Some(keys.into_iter());
                    export.erasures = ErasureCheck::default();
                    Ok(Step::Nothing)
                }
                None => {
                    export.run.position = StorePosition::Done;
                    Ok(Step::Done)
                }
            };
        };
        pager.claim(&entry.name);
        export.run.position = StorePosition::Archives(pager.at.clone());
        export.run.afford(CALLS_PER_ARCHIVE, self.clock.now_ms())?;
        let before = log.storage_calls();
        let line = self.archive_export_line(log, export, &entry).await;
        export.run.spend(log.storage_calls() - before);
        let line = line.map_err(|err| match err {
            PersistenceError::StorageUnavailable { .. } | PersistenceError::CircuitOpen { .. } => {
                Stop::Run(stop_reason(&err))
            }
            other => Stop::Error(other),
        })?;
        // Handled: the position moves past it.
        if let Some(page) = export.page.as_mut() {
            page.next();
        }
        if let (Some(pager), Some(next)) = (
            export.pager.as_mut(),
            export
                .page
                .as_ref()
                .and_then(|page| page.as_slice().first()),
        ) {
            pager.claim(&next.name);
            export.run.position = StorePosition::Archives(pager.at.clone());
        }
        Ok(line.map_or(Step::Nothing, Step::Line))
    }

    /// The line of the archive the index entry `entry` names, or `None` when it is not
    /// exported (erased, gone, unreadable: noted in `export`). Errors: storage failures, and
    /// `INVALID_INPUT` for an entry a pack would refuse.
    async fn archive_export_line(
        &self,
        log: &OpLog<'_>,
        export: &mut StoreExport,
        entry: &ListedKvKey,
    ) -> Result<Option<Vec<u8>>> {
        let Some((found, archived_at)) = indexed_archive(entry) else {
            return Ok(None);
        };
        let archive = match self.read_indexed_archive(log, entry, &found).await? {
            IndexedArchive::Read(archive) => archive,
            IndexedArchive::Missing => return Ok(None),
            IndexedArchive::Unreadable => {
                note_unreadable(export, &found.archive_key);
                return Ok(None);
            }
        };
        // A segment records no user: its conversation's tombstone speaks for it.
        let owners: Vec<Option<&str>> = match archive.user_ids() {
            [] => vec![None],
            users => users.iter().map(|user| Some(user.as_str())).collect(),
        };
        for user_id in owners {
            let erased = self
                .is_erased_archive(
                    log,
                    &mut export.erasures,
                    found.session_id.as_str(),
                    user_id,
                    archived_at,
                )
                .await;
            match erased {
                Ok(false) => {}
                Ok(true) => {
                    export.skipped_erased += 1;
                    return Ok(None);
                }
                Err(
                    err @ (PersistenceError::StorageUnavailable { .. }
                    | PersistenceError::CircuitOpen { .. }),
                ) => return Err(err),
                // A tombstone that cannot be read may cover it: not exported.
                Err(err) => {
                    log.event(
                        "error",
                        "archive not exported: its user's tombstone cannot be read",
                        json!({ "key": found.archive_key, "code": err.code(), "error": err.to_string() }),
                    );
                    note_unreadable(export, &found.archive_key);
                    return Ok(None);
                }
            }
        }
        archive_line(&archive.entry, &found.archive_key).map(Some)
    }
}

/// What one step of an export produced.
enum Step {
    /// A line of the stream.
    Line(Vec<u8>),
    /// Nothing (a listing, a skipped key): go on.
    Nothing,
    /// The store is exhausted.
    Done,
}

/// Why an export stops: its run ended early (a budget, a storage failure), or an error.
enum Stop {
    Run(StopReason),
    Error(PersistenceError),
}

impl From<StopReason> for Stop {
    fn from(reason: StopReason) -> Self {
        Stop::Run(reason)
    }
}

/// Records a key left out because it cannot be read, for the end line.
fn note_unreadable(export: &mut StoreExport, key: &str) {
    if export.unreadable.len() < MAX_LISTED_UNREADABLE {
        export.unreadable.push(key.to_owned());
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::codec::json_text;
    use crate::hash::to_hex;

    #[test]
    fn positions_are_tagged_by_phase_and_survive_the_cursor() {
        let positions = [
            StorePosition::default(),
            StorePosition::Keys {
                after: Some("keys/sessions/s1.json".into()),
            },
            StorePosition::Archives(KvPosition {
                kv_cursor: Some("c2".into()),
                kv_resume_at: Some("archive_index:8263842399876:s1".into()),
            }),
            StorePosition::Done,
        ];
        assert_eq!(json_text(&positions[0]), r#"{"phase":"erasures"}"#);
        assert_eq!(
            json_text(&positions[1]),
            r#"{"phase":"keys","after":"keys/sessions/s1.json"}"#
        );
        assert_eq!(
            json_text(&positions[2]),
            r#"{"phase":"archives","kvCursor":"c2","kvResumeAt":"archive_index:8263842399876:s1"}"#
        );
        for position in positions {
            let cursor = encode_cursor(&position);
            assert!(cursor.bytes().all(|byte| byte.is_ascii_hexdigit()));
            assert_eq!(decode_cursor::<StorePosition>(&cursor), Some(position));
        }
        let mixed = to_hex(br#"{"phase":"keys","kvCursor":"c"}"#);
        for bad in [
            "",
            "z",
            "7b7d",
            "abc",
            "7b227068617365c223a2278227d",
            &mixed,
        ] {
            assert_eq!(decode_cursor::<StorePosition>(bad), None, "{bad}");
        }
    }
}
