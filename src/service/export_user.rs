//! `exportUserData`: a copy of everything stored of one person (GDPR Art. 20), as NDJSON
//! (docs/FORMAT.md, "Exports"): one `conversation` line per archive, read from R2 and verified
//! (checksum, decryption, session) exactly as `retrieveArchive` reads it, then an `end` line
//! with the count of lines before it and their SHA-256.
//!
//! The archives are found through the person's index (`user_archives:<userKey>:`, newest
//! first), a page of 1000 at a time on the shared KV pager, and read one at a time: memory
//! holds one page of index entries, one archive and one chunk of output, however many
//! archives the person has. Archives an erasure tombstone of the person covers are not
//! exported; an index entry whose object is gone (a retention sweep in between) is skipped
//! and logged. A damaged archive, or one that cannot be decrypted, fails the stream with its
//! error code: a copy of a person's data must not silently leave something out.

use std::vec::IntoIter;

use serde_json::json;

use super::archive::Shape;
use super::backup_steps::indexed_archive;
use super::log::OpLog;
use super::walk::{KvPager, KvPosition};
use super::DataPersistenceService;
use crate::codec::export::{conversation_line, user_end_line, LineDigest};
use crate::error::{PersistenceError, Result};
use crate::keys::{user_index_prefix, UserId};
use crate::store::{Clock, KvStore, ListedKvKey, ObjectStore, Rng};

/// Bytes of lines a read of an export stream gathers before it hands them over (one line
/// more when a line is larger): few enough reads that a long export is not a long series of
/// calls into wasm and log lines, little enough memory.
pub const EXPORT_CHUNK_BYTES: usize = 64 * 1024;

/// The state of one person's export between reads of its stream.
pub struct UserExport {
    owner: UserId,
    user_key: String,
    request_id: String,
    pager: KvPager,
    /// The rest of the index page being exported; `None` before the first page and between
    /// pages.
    page: Option<IntoIter<ListedKvKey>>,
    /// When the person's erasure began, once the tombstone was read (`Some(None)`: none).
    erased_at: Option<Option<i64>>,
    digest: LineDigest,
    skipped_erased: u64,
    skipped_missing: u64,
    ended: bool,
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Starts the export of `user_id`'s archives; its stream is read with
    /// [`Self::next_user_export_chunk`]. Nothing is read yet. Errors: `INVALID_ID`.
    pub fn export_user_data(&self, user_id: &str) -> Result<UserExport> {
        let owner = UserId::parse(user_id)?;
        let user_key = self.options.hasher.user_key(&owner);
        Ok(UserExport {
            pager: KvPager::new(user_index_prefix(&user_key), KvPosition::default()),
            owner,
            user_key,
            request_id: self.new_request_id(),
            page: None,
            erased_at: None,
            digest: LineDigest::default(),
            skipped_erased: 0,
            skipped_missing: 0,
            ended: false,
        })
    }

    /// The next bytes of `export`'s stream: whole lines, about [`EXPORT_CHUNK_BYTES`] of them
    /// (one archive's line at least), the end line last; `None` once it was given. Costs 1 R2
    /// head (the person's tombstone) on the first read, 1 KV list per 1000 archives, and per
    /// archive what `retrieveArchive` costs: 1 R2 get (2 when a plaintext key was replaced by
    /// its encrypted copy), plus 1 R2 get the first time a data key is needed. Errors:
    /// `CHECKSUM_MISMATCH`, `CORRUPT_DATA`, `UNSUPPORTED_FORMAT`, `KEY_UNAVAILABLE`,
    /// `DECRYPTION_FAILED` naming a damaged or unreadable archive; `STORAGE_UNAVAILABLE` /
    /// `CIRCUIT_OPEN`. After an error the stream is over: export again.
    pub async fn next_user_export_chunk(&self, export: &mut UserExport) -> Result<Option<Vec<u8>>> {
        if export.ended {
            return Ok(None);
        }
        let log = self.continue_op("exportUserData", &export.request_id);
        let erased_at = match export.erased_at {
            Some(erased_at) => erased_at,
            None => {
                let tombstone = self.read_tombstone(&log, &export.user_key).await?;
                let erased_at = tombstone.map(|tombstone| tombstone.erased_at);
                export.erased_at = Some(erased_at);
                erased_at
            }
        };
        let mut chunk = Vec::new();
        while chunk.len() < EXPORT_CHUNK_BYTES {
            let Some(entry) = export.page.as_mut().and_then(Iterator::next) else {
                if export.page.take().is_some() {
                    export.pager.page_done();
                }
                if export.pager.is_finished() {
                    chunk.extend(user_end_line(&export.digest));
                    export.ended = true;
                    log.event(
                        "info",
                        "person's export finished",
                        json!({ "archives": export.digest.count(),
                            "skippedErased": export.skipped_erased,
                            "skippedMissing": export.skipped_missing }),
                    );
                    break;
                }
                let keys = self.list_kv_page(&log, &mut export.pager).await?;
                export.page = Some(keys.into_iter());
                continue;
            };
            if let Some(line) = self.export_entry(&log, export, erased_at, &entry).await? {
                export.digest.add(&line);
                chunk.extend(line);
            }
        }
        Ok(Some(chunk))
    }

    /// The line of the archive an index entry of the person names, or `None` when it is not
    /// exported (erased, gone, not an index entry, or not the person's: logged).
    async fn export_entry(
        &self,
        log: &OpLog<'_>,
        export: &mut UserExport,
        erased_at: Option<i64>,
        entry: &ListedKvKey,
    ) -> Result<Option<Vec<u8>>> {
        let Some((found, archived_at)) = indexed_archive(entry) else {
            log.event(
                "warn",
                "skipped an unreadable index entry",
                json!({ "key": entry.name }),
            );
            return Ok(None);
        };
        if erased_at.is_some_and(|erased_at| archived_at <= erased_at) {
            export.skipped_erased += 1;
            return Ok(None);
        }
        let read = self
            .read_archive_by_key(
                log,
                &found.archive_key,
                &found.session_id,
                None,
                Shape::Conversation,
            )
            .await
            .map_err(|err| naming_archive(&found.archive_key, err))?;
        let Some((key, decoded)) = read else {
            export.skipped_missing += 1;
            log.event(
                "warn",
                "index entry of a missing archive skipped",
                json!({ "key": entry.name, "archiveKey": found.archive_key }),
            );
            return Ok(None);
        };
        let metadata = &decoded.metadata;
        // The index names the person by a hash: the archive itself must be theirs.
        if metadata.user_id.as_deref() != Some(export.owner.as_str()) {
            log.event(
                "error",
                "skipped an archive of another user listed under this user's key",
                json!({ "key": entry.name, "archiveKey": key }),
            );
            return Ok(None);
        }
        if erased_at.is_some_and(|erased_at| metadata.archived_at <= erased_at) {
            export.skipped_erased += 1;
            return Ok(None);
        }
        Ok(Some(conversation_line(&key, metadata, &decoded.json)))
    }
}

/// `err` naming the archive `key` it is about (the decoder names only the part it read).
fn naming_archive(key: &str, err: PersistenceError) -> PersistenceError {
    err.renaming_data(|what| match what.contains(key) {
        true => what,
        false => format!("{key} ({what})"),
    })
}
