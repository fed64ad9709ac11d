//! `importStore`: writes a store export (`super::export_store`) into this service's bindings
//! (docs/FORMAT.md, "Exports").
//!
//! The stream is read a chunk at a time and split into lines; each line is read and verified
//! on its own before anything of it is written (an object's body, an archive's stored bytes or
//! a document's text hash to the line's `sha256` and have its `size`; an archive's metadata
//! describes its bytes and key), so memory holds one chunk and one line, and a bad line stops
//! the import with `CORRUPT_DATA` or `CHECKSUM_MISMATCH` naming it, the lines before it
//! written. Writes are idempotent, so importing again (after a fix, or a stop) stores nothing
//! twice:
//!
//! - an object (tombstone, wrapped data key) is written only if absent; one already there is
//!   kept, counted present when it is the same (same bytes, the same erasure time, the same
//!   data key) and conflicting otherwise;
//! - an archive goes through the restore path (`super::backup`): its bytes under its key only
//!   if absent (a damaged object there is replaced; another intact archive is never
//!   overwritten and is counted conflicting), then its `archive_meta` record unless that
//!   already names it or a newer archive, then its user and global index entries unless they
//!   already hold exactly what would be written, all with the target's hash secret;
//! - an archive the target's tombstones cover (a tombstone line earlier in the stream
//!   included) is skipped and counted.
//!
//! Each end line checks the count and SHA-256 of the lines since the previous one, so exports
//! continued by cursor can be imported one after the other or concatenated. A stream that does
//! not end with an end line is reported incomplete (`ended: false`): every line in it was
//! verified before its write, but nothing vouches that none is missing.
//!
//! A run on the shared run driver: it stops before a line that does not fit the budget, or at
//! a storage failure, and reports `nextLine`; importing the same stream again with `fromLine`
//! continues there (the lines before are only hashed, for the end line).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use super::backup::{prepare_stored, RestorableArchive, RestoredObject};
use super::index_entries::{read_archive_location, recorded_sha256, ArchiveEntries};
use super::log::OpLog;
use super::run::{stop_reason, Run, RunBudget, RunStatus, StopReason};
use super::tombstone::ErasureCheck;
use super::DataPersistenceService;
use crate::codec::archive::ArchiveMetadata;
use crate::codec::backup::PackEntry;
use crate::codec::export::{
    is_end_line, line_name, read_import_line, EndLine, ImportLine, ImportedObject, LineDigest,
    LineSplitter, ObjectKind,
};
use crate::crypto::data_key::WrappedKey;
use crate::error::{PersistenceError, Result};
use crate::keys::{parse_archive_object_key, parse_data_key_object, SessionId};
use crate::store::{
    Clock, KvStore, ObjectMeta, ObjectPutOptions, ObjectStore, PutOutcome, Rng, StoredObject,
};

/// Storage calls one archive line may need: the tombstone head of its user, the R2 put (a get
/// and a put more when its key is taken), the KV get of its record, two KV gets of index
/// entries when the archive was there already, and three KV puts.
const CALLS_PER_ARCHIVE: u32 = 10;
/// Storage calls one object line may need: a user's tombstone head (for a data key), the put,
/// and a get when its key is taken.
const CALLS_PER_OBJECT: u32 = 3;
/// A dry run's calls per archive line: the tombstone head, the R2 head, the record's and two
/// index entries' KV gets.
const DRY_CALLS_PER_ARCHIVE: u32 = 5;

/// The smallest `maxStorageCalls` an import accepts: one archive line (with a replica
/// bucket, [`REPLICATED`] more: the copy of what it wrote).
pub const MIN_IMPORT_CALLS: u32 = CALLS_PER_ARCHIVE;

/// What a replica bucket adds to a line that writes an object: its copy, queued when it fails.
const REPLICATED: u32 = super::replica::CALLS_PER_REPLICATED_WRITE;

/// Most keys a report lists as conflicting (all are counted).
const MAX_LISTED_KEYS: usize = 100;

/// Lines an import accepts beyond an archive's size: its metadata and members.
const LINE_OVERHEAD_BYTES: u64 = 64 * 1024;

/// What an import is asked to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Write nothing; report what would be written (heads and gets only).
    pub dry_run: bool,
    /// The first line to import (1-based; earlier lines are only hashed, for the end line):
    /// an earlier run's `nextLine`. 0 or 1: from the start.
    pub from_line: u64,
}

/// What an import did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    /// Lines read, end lines and lines before `fromLine` included.
    pub lines: u64,
    /// Archives written (dry run: that would be).
    pub archives_written: u64,
    /// Archives already there, the same bytes (or the same document).
    pub archives_already_present: u64,
    /// Archives whose key holds another intact archive: kept, not overwritten (listed in
    /// `conflicts`).
    pub archives_conflicting: u64,
    /// Tombstones and data keys written (dry run: that would be).
    pub objects_written: u64,
    /// Tombstones and data keys already there (the same erasure, the same data key).
    pub objects_already_present: u64,
    /// Tombstones and data keys whose key holds another one: kept (listed in `conflicts`).
    pub objects_conflicting: u64,
    /// Archives skipped because a tombstone in the target covers them.
    pub skipped_erased: u64,
    /// KV entries written: `archive_meta` records and user and global index entries (dry run:
    /// that would be).
    pub index_entries_written: u64,
    /// The first keys counted as conflicting.
    pub conflicts: Vec<String>,
    /// End lines verified.
    pub end_lines: u64,
    /// The stream's last line was an end line that verified.
    pub ended: bool,
    /// The last end line's `complete`: the export reached the end of the source store.
    pub export_complete: bool,
    /// The last end line's `cursor`: pass it to `exportStore` to export the rest.
    pub export_cursor: Option<String>,
    /// What the end lines list as left out of the export (unreadable in the source).
    pub export_unreadable: Vec<String>,
    /// When the run stopped early: the first line not imported (pass it as `fromLine` with
    /// the same stream).
    pub next_line: Option<u64>,
    /// Nothing was written.
    pub dry_run: bool,
    /// The run's status; `complete` also needs the stream to have ended with an end line.
    #[serde(flatten)]
    pub status: RunStatus,
}

/// The state of one import between chunks of its stream.
pub struct StoreImport {
    request_id: String,
    options: ImportOptions,
    run: Run<()>,
    splitter: LineSplitter,
    digest: LineDigest,
    erasures: ErasureCheck,
    /// Users `erasures` was asked about since it was last emptied.
    erasure_checks: u32,
    /// Sessions whose `archive_meta` record this import wrote (a dry run: would have), with
    /// the time of the archive it names: an older archive of the session later in the stream
    /// (newest first) leaves it alone without relying on KV showing the write already.
    recorded: BTreeMap<String, i64>,
    report: ImportReport,
    stopped: Option<StopReason>,
}

/// Users an import remembers the tombstones of, at most: then it reads them again.
const MAX_REMEMBERED_TOMBSTONES: u32 = 1000;

/// Sessions an import remembers writing the record of, at most: then it starts afresh (and,
/// for older archives of those sessions, relies on what KV shows).
const MAX_REMEMBERED_RECORDS: usize = 10_000;

/// What writing a line found, besides the counts.
enum Imported {
    Done,
    /// A storage call failed: the run stops before this line.
    Stopped(StopReason),
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Starts an import within `budget`; its stream is given with [`Self::import_chunk`] and
    /// the report taken with [`Self::finish_import`]. Errors: `INVALID_INPUT` naming
    /// `maxStorageCalls` (below [`MIN_IMPORT_CALLS`]).
    pub fn import_store(&self, options: ImportOptions, budget: RunBudget) -> Result<StoreImport> {
        let minimum = MIN_IMPORT_CALLS + self.replica_calls(REPLICATED);
        let run = Run::new(budget, minimum, "import")?;
        // A line holds an archive as base64 (4/3 of its bytes) or a document's text as a JSON
        // string (at most twice it).
        let max_line = self
            .policy
            .max_archive_size_bytes
            .saturating_mul(2)
            .saturating_add(LINE_OVERHEAD_BYTES);
        let report = ImportReport {
            dry_run: options.dry_run,
            ..ImportReport::default()
        };
        Ok(StoreImport {
            request_id: self.new_request_id(),
            options,
            run,
            splitter: LineSplitter::new(usize::try_from(max_line).unwrap_or(usize::MAX)),
            digest: LineDigest::default(),
            erasures: ErasureCheck::default(),
            erasure_checks: 0,
            recorded: BTreeMap::new(),
            report,
            stopped: None,
        })
    }

    /// Imports every line `chunk` completes (a line may span chunks); whether the import
    /// wants more (false once the run stopped: the rest of the stream is not read). Costs per
    /// archive line 1 R2 head per user (its tombstone, once per 1000 lines), 1 R2 put (1 R2
    /// get more when the key is taken), 1 KV get and up to 3 KV puts (up to 2 KV gets more
    /// when the archive was there already); per object line 1 R2 put (1 R2 get more when the
    /// key is taken). A dry run: per archive line the tombstone head, 1 R2 head and up to 3 KV
    /// gets; per object line 1 R2 get. Errors, naming the line: `CORRUPT_DATA` (not JSON, an
    /// unknown type, a missing or ill-typed member, a line too long, an archive whose metadata
    /// does not describe it), `CHECKSUM_MISMATCH` (bytes that do not hash to their `sha256`, an
    /// end line whose count or checksum does not match the lines before it). Storage failures
    /// stop the run instead.
    pub async fn import_chunk(&self, import: &mut StoreImport, chunk: &[u8]) -> Result<bool> {
        if import.stopped.is_some() {
            return Ok(false);
        }
        let log = self.continue_op("importStore", &import.request_id);
        let mut at = 0;
        while let Some((line_no, line)) = import.splitter.next_line(chunk, &mut at)? {
            if !self.import_line(&log, import, line_no, &line, true).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Ends an import: imports the stream's last line if it had no `\n` (unless the run had
    /// stopped), and returns the report. Errors: as [`Self::import_chunk`] for that line.
    pub async fn finish_import(&self, mut import: StoreImport) -> Result<ImportReport> {
        let log = self.continue_op("importStore", &import.request_id);
        if import.stopped.is_none() {
            if let Some((line_no, line)) = import.splitter.finish() {
                self.import_line(&log, &mut import, line_no, &line, false)
                    .await?;
            }
        }
        let outcome = import.stopped.map_or(Ok(()), Err);
        self.finish_run(&log, &mut import.run, outcome).await;
        let mut report = import.report;
        report.status = import.run.status;
        report.status.complete &= report.ended;
        log.event("info", "import finished", json!(report));
        Ok(report)
    }

    /// Reads, verifies and writes line `line_no`; whether the import goes on (false: the run
    /// stopped before it).
    async fn import_line(
        &self,
        log: &OpLog<'_>,
        import: &mut StoreImport,
        line_no: u64,
        bytes: &[u8],
        terminated: bool,
    ) -> Result<bool> {
        import.report.lines = line_no;
        let skipped = line_no < import.options.from_line;
        if skipped && !is_end_line(line_no, bytes)? {
            import.report.ended = false;
            import.digest.add_parts(bytes, terminated);
            return Ok(true);
        }
        let line = read_import_line(line_no, bytes)?;
        let outcome = match line {
            ImportLine::End(end) => {
                check_end(import, line_no, end)?;
                return Ok(true);
            }
            ImportLine::Object(object) => {
                let calls = match import.options.dry_run {
                    true => CALLS_PER_OBJECT - 1,
                    false => CALLS_PER_OBJECT + self.replica_calls(REPLICATED),
                };
                if let Err(reason) = import.run.afford(calls, self.clock.now_ms()) {
                    return Ok(stop(import, reason, line_no));
                }
                let before = log.storage_calls();
                let written = self.import_object(log, import, object).await;
                import.run.spend(log.storage_calls() - before);
                written
            }
            ImportLine::Archive(entry) => {
                let calls = match import.options.dry_run {
                    true => DRY_CALLS_PER_ARCHIVE,
                    false => CALLS_PER_ARCHIVE + self.replica_calls(REPLICATED),
                };
                if let Err(reason) = import.run.afford(calls, self.clock.now_ms()) {
                    return Ok(stop(import, reason, line_no));
                }
                let before = log.storage_calls();
                let written = self.import_archive(log, import, line_no, entry).await;
                import.run.spend(log.storage_calls() - before);
                written
            }
        };
        match outcome.map_err(|err| at_line(line_no, err))? {
            Imported::Done => {}
            Imported::Stopped(reason) => return Ok(stop(import, reason, line_no)),
        }
        import.report.ended = false;
        import.digest.add_parts(bytes, terminated);
        Ok(true)
    }

    /// Writes a tombstone or data key only if absent (dry run: reads whether it is there). A
    /// user's data key made before an erasure of the user in the target is not written: the
    /// erasure destroyed it.
    async fn import_object(
        &self,
        log: &OpLog<'_>,
        import: &mut StoreImport,
        object: ImportedObject,
    ) -> Result<Imported> {
        if let ObjectKind::DataKey {
            created_at,
            user_key: Some(user_key),
            ..
        } = &object.kind
        {
            let tombstone = self
                .tombstone_of(log, erasure_check(import), user_key)
                .await;
            match tombstone {
                Ok(Some(tombstone)) if tombstone.covers(*created_at) => {
                    import.report.skipped_erased += 1;
                    return Ok(Imported::Done);
                }
                Ok(_) => {}
                Err(err) => return storage_stop(err),
            }
        }
        // A conversation's segment key made before an erasure of its user: destroyed too.
        let segment_key_of = match &object.kind {
            ObjectKind::DataKey {
                created_at,
                user_key: None,
                ..
            } => parse_data_key_object(&object.key)
                .and_then(|reference| reference.strip_prefix("sessions/"))
                .and_then(|session| SessionId::parse(session).ok())
                .map(|session| (session, *created_at)),
            _ => None,
        };
        if let Some((conversation, created_at)) = segment_key_of {
            let erased = self
                .conversation_erased(log, erasure_check(import), &conversation, created_at)
                .await;
            match erased {
                Ok(true) => {
                    import.report.skipped_erased += 1;
                    return Ok(Imported::Done);
                }
                Ok(false) => {}
                Err(err) => return storage_stop(err),
            }
        }
        let existing = if import.options.dry_run {
            match self.r2_get(log, &object.key).await {
                Ok(existing) => existing,
                Err(err) => return storage_stop(err),
            }
        } else {
            let options = ObjectPutOptions {
                custom_metadata: object.custom_metadata.clone(),
                content_type: Some(object.content_type.clone()),
                sha256: Some(object.sha256.clone()),
                only_if_absent: true,
                ..ObjectPutOptions::default()
            };
            match self
                .r2_put(log, &object.key, &object.body, options.clone())
                .await
            {
                Ok(PutOutcome::Stored(_)) => {
                    self.replicate_put(log, &object.key, &object.body, &options)
                        .await;
                    None
                }
                Ok(_) => match self.r2_get(log, &object.key).await {
                    Ok(Some(existing)) => Some(existing),
                    // Deleted in between (an erasure destroying a key?): not written back.
                    Ok(None) => {
                        import.report.objects_conflicting += 1;
                        note_conflict(&mut import.report, &object.key);
                        return Ok(Imported::Done);
                    }
                    Err(err) => return storage_stop(err),
                },
                Err(err) => return storage_stop(err),
            }
        };
        let present = matches!(&existing, Some(found) if same_object(&object, found));
        if present && !import.options.dry_run {
            // An import run again after a crash: its copy may be what was missing.
            let options = ObjectPutOptions {
                custom_metadata: object.custom_metadata.clone(),
                content_type: Some(object.content_type.clone()),
                sha256: Some(object.sha256.clone()),
                ..ObjectPutOptions::default()
            };
            self.replicate_put(log, &object.key, &object.body, &options)
                .await;
        }
        let report = &mut import.report;
        match existing {
            None => report.objects_written += 1,
            Some(existing) if same_object(&object, &existing) => {
                report.objects_already_present += 1;
            }
            Some(_) => {
                report.objects_conflicting += 1;
                note_conflict(report, &object.key);
                log.event(
                    "warn",
                    "import kept a different object already under this key",
                    json!({ "key": object.key }),
                );
            }
        }
        if matches!(object.kind, ObjectKind::Tombstone { .. }) {
            // Read again for the lines that follow: this erasure may cover them.
            import.erasures = ErasureCheck::default();
            import.erasure_checks = 0;
        }
        Ok(Imported::Done)
    }

    /// Writes an archive and its KV entries through the restore path, unless a tombstone in
    /// the target covers it (dry run: reads what would be written).
    async fn import_archive(
        &self,
        log: &OpLog<'_>,
        import: &mut StoreImport,
        line_no: u64,
        entry: PackEntry,
    ) -> Result<Imported> {
        let what = line_name(line_no);
        let archive = match entry {
            PackEntry::Stored(stored) => prepare_stored(&self.options.hasher, &what, *stored)?,
            PackEntry::Document(document) => {
                self.prepare_document(&what, &document.session_id, document.archive_json)?
            }
        };
        let metadata = archive.metadata();
        let erased = self
            .is_erased_archive(
                log,
                erasure_check(import),
                &metadata.session_id,
                metadata.user_id.as_deref(),
                metadata.archived_at,
            )
            .await;
        match erased {
            Ok(true) => {
                import.report.skipped_erased += 1;
                return Ok(Imported::Done);
            }
            Ok(false) => {}
            Err(err) => return storage_stop(err),
        }
        let stored = if import.options.dry_run {
            self.dry_archive_object(log, &archive).await
        } else {
            self.restore_archive_object(log, &archive).await
        };
        let (written, stored) = match stored {
            Ok(RestoredObject::Written(stored)) => (true, stored),
            Ok(RestoredObject::Present(stored)) => (false, stored),
            Ok(RestoredObject::Different) => {
                import.report.archives_conflicting += 1;
                note_conflict(&mut import.report, archive.object_key());
                log.event(
                    "warn",
                    "import kept a different archive already under this key",
                    json!({ "key": archive.object_key() }),
                );
                return Ok(Imported::Done);
            }
            Err(err) => return storage_stop(err),
        };
        match written {
            true => import.report.archives_written += 1,
            false => import.report.archives_already_present += 1,
        }
        let entries = self
            .import_entries(log, import, &archive, &stored, written)
            .await;
        match entries {
            Ok(count) => {
                import.report.index_entries_written += count;
                Ok(Imported::Done)
            }
            Err(err) => storage_stop(err),
        }
    }

    /// What [`Self::restore_archive_object`] would find, from a head: nothing there (it would
    /// write), the same checksum, or another (a real import replaces it if it fails its own
    /// checksum, and keeps it otherwise).
    async fn dry_archive_object(
        &self,
        log: &OpLog<'_>,
        archive: &RestorableArchive,
    ) -> Result<RestoredObject> {
        let metadata = archive.metadata().clone();
        Ok(match self.r2_head(log, archive.object_key()).await? {
            None => RestoredObject::Written(metadata),
            Some(meta) if same_checksum(&meta, &metadata.sha256) => {
                RestoredObject::Present(metadata)
            }
            Some(_) => RestoredObject::Different,
        })
    }

    /// Writes (dry run: counts) the KV entries of an imported archive stored with `stored`
    /// metadata: its `archive_meta` record unless that names it already (or a newer archive of
    /// the session), and each index entry unless the archive was there already and the entry
    /// holds exactly what would be written. Returns how many were (would be) written.
    async fn import_entries(
        &self,
        log: &OpLog<'_>,
        import: &mut StoreImport,
        archive: &RestorableArchive,
        stored: &ArchiveMetadata,
        object_written: bool,
    ) -> Result<u64> {
        let dry_run = import.options.dry_run;
        let key = archive.object_key();
        let session = SessionId::parse(&stored.session_id)?;
        let mut entries = ArchiveEntries::new(&self.options.hasher, key, stored)?;
        if archive.summary_truncated() {
            entries.summary["summaryTruncated"] = json!(true);
        }
        let current = self
            .kv_get(log, &entries.meta_key)
            .await?
            .and_then(|record| {
                read_archive_location(&entries.meta_key, &record.value, &session).ok()
            });
        let recorded = current.as_ref().is_some_and(|location| {
            location.key == key
                && location
                    .sha256
                    .as_deref()
                    .is_some_and(|sha256| sha256.eq_ignore_ascii_case(&stored.sha256))
        });
        let newer = current
            .and_then(|location| parse_archive_object_key(&location.key))
            .is_some_and(|current| current.archived_at_ms > stored.archived_at);
        let by_this_import = import.recorded.get(&stored.session_id).copied();
        let newer = newer || by_this_import.is_some_and(|at| at >= stored.archived_at);
        let mut written = 0;
        if !recorded && !newer {
            if !dry_run {
                self.put_archive_record(log, &entries).await?;
            }
            written += 1;
        }
        if !newer {
            if import.recorded.len() >= MAX_REMEMBERED_RECORDS {
                import.recorded.clear();
            }
            import
                .recorded
                .insert(stored.session_id.clone(), stored.archived_at);
        }
        for index_key in &entries.index_keys {
            if !object_written {
                let existing = self.kv_get(log, index_key).await?;
                let same = existing.is_some_and(|existing| {
                    existing.value == key.as_bytes()
                        && existing.metadata.as_ref() == Some(&entries.summary)
                });
                if same {
                    continue;
                }
            }
            if !dry_run {
                self.put_index_entry(log, &entries, index_key).await?;
            }
            written += 1;
        }
        Ok(written)
    }
}

/// The import's remembered tombstones, emptied every [`MAX_REMEMBERED_TOMBSTONES`] checks so
/// that memory does not grow with the number of users.
fn erasure_check(import: &mut StoreImport) -> &mut ErasureCheck {
    import.erasure_checks += 1;
    if import.erasure_checks > MAX_REMEMBERED_TOMBSTONES {
        import.erasure_checks = 1;
        import.erasures = ErasureCheck::default();
    }
    &mut import.erasures
}

/// Checks an end line against the lines since the previous one, and takes what it says.
fn check_end(import: &mut StoreImport, line_no: u64, end: EndLine) -> Result<()> {
    let what = format!("{} (the end line)", line_name(line_no));
    let digest = std::mem::take(&mut import.digest);
    if end.count != digest.count() {
        return Err(PersistenceError::ChecksumMismatch {
            what: format!("{what}: count"),
            expected: format!("{} lines", end.count),
            actual: format!("{} lines", digest.count()),
        });
    }
    let actual = digest.sha256();
    if end.sha256 != actual {
        return Err(PersistenceError::ChecksumMismatch {
            what,
            expected: end.sha256,
            actual,
        });
    }
    let report = &mut import.report;
    report.end_lines += 1;
    report.ended = true;
    report.export_complete = end.store.complete;
    report.export_cursor = end.store.cursor;
    for key in end.store.unreadable {
        if report.export_unreadable.len() < MAX_LISTED_KEYS {
            report.export_unreadable.push(key);
        }
    }
    Ok(())
}

/// Stops the run before line `line_no`; returns false (the import wants no more).
fn stop(import: &mut StoreImport, reason: StopReason, line_no: u64) -> bool {
    import.stopped = Some(reason);
    import.report.next_line = Some(line_no);
    false
}

/// A storage failure stops the run; any other error fails the import.
fn storage_stop(err: PersistenceError) -> Result<Imported> {
    match err {
        PersistenceError::StorageUnavailable { .. } | PersistenceError::CircuitOpen { .. } => {
            Ok(Imported::Stopped(stop_reason(&err)))
        }
        other => Err(other),
    }
}

/// An error about line `line_no` that says so: what a line holds is data read from the
/// stream, so whatever about it cannot be used is `CORRUPT_DATA` naming the line.
fn at_line(line_no: u64, err: PersistenceError) -> PersistenceError {
    let line = line_name(line_no);
    match err {
        err @ (PersistenceError::InvalidInput { .. } | PersistenceError::InvalidId { .. }) => {
            PersistenceError::corrupt(line, err.to_string())
        }
        err => err.renaming_data(|what| {
            if what.starts_with(&line) {
                what
            } else {
                format!("{line} ({what})")
            }
        }),
    }
}

/// Whether the object already under an imported object's key is that object: the same bytes,
/// the same erasure time (a tombstone whose sweep has completed since), or the same data key
/// (rewrapped by a rotation since).
fn same_object(object: &ImportedObject, existing: &StoredObject) -> bool {
    if existing.body == object.body {
        return true;
    }
    match &object.kind {
        ObjectKind::Tombstone { erased_at } => {
            existing
                .meta
                .custom_metadata
                .get("erasedAt")
                .and_then(|value| value.parse::<i64>().ok())
                == Some(*erased_at)
        }
        ObjectKind::DataKey { dek_id, .. } => WrappedKey::decode(&object.key, &existing.body)
            .is_ok_and(|wrapped| wrapped.dek_id.eq_ignore_ascii_case(dek_id)),
    }
}

/// Whether R2 records `sha256` for an object.
fn same_checksum(meta: &ObjectMeta, sha256: &str) -> bool {
    recorded_sha256(meta).is_some_and(|recorded| recorded.eq_ignore_ascii_case(sha256))
}

fn note_conflict(report: &mut ImportReport, key: &str) {
    if report.conflicts.len() < MAX_LISTED_KEYS {
        report.conflicts.push(key.to_owned());
    }
}
