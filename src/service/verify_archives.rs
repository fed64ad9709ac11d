//! `verifyStorage`'s phases over archives (`super::verify`): 1. every archive object, read and
//! checked as a retrieval checks it, then its index entries looked up; 2. every KV entry that
//! points at an archive, which must find it.

use super::archive::{check_archive_session, Shape};
use super::backup_steps::INDEX_LAG_MS;
use super::index_entries::{recorded_sha256, OWNER_KEY_FIELD};
use super::log::OpLog;
use super::run::{stop_reason, Run, StopReason};
use super::verify::{
    slot_of, storage_failure, Problem, ProblemKind, Verification, VerifyPosition,
    ARCHIVE_CHECK_CALLS, ENTRY_PREFIXES,
};
use super::verify_keys;
use super::walk::{KvPager, KvPosition};
use super::DataPersistenceService;
use crate::codec::archive::DecodedArchiveJson;
use crate::crypto::envelope;
use crate::error::{PersistenceError, Result};
use crate::hash::{sha256_hex, verify_sha256_of_object};
use crate::keys::{
    archive_index_key, encrypted_archive_object_key, parse_archive_object_key, user_index_key,
    ArchiveObjectKey, UserId, ARCHIVE_INDEX_PREFIX, ARCHIVE_PREFIX, ENCRYPTED_SUFFIX,
    USER_INDEX_PREFIX,
};
use crate::store::{Clock, KvStore, ListedKvKey, ListedR2Object, ObjectMeta, ObjectStore, Rng};

/// The index prefixes phase 0 lists, in order.
const INDEX_PREFIXES: [&str; 2] = [ARCHIVE_INDEX_PREFIX, USER_INDEX_PREFIX];

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Phase 1: every archive object in the sample.
    pub(super) async fn verify_archives(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
    ) -> Result<(), StopReason> {
        loop {
            let page = self
                .next_verify_page(log, run, ARCHIVE_PREFIX, true)
                .await?;
            for listed in &page.objects {
                let in_sample =
                    slot_of(&listed.key, run.position.pass.of) == run.position.pass.slot;
                if in_sample {
                    if let Some(parsed) = parse_archive_object_key(&listed.key) {
                        let calls = ARCHIVE_CHECK_CALLS + self.replica_calls(2);
                        self.afford_check(log, run, calls)?;
                        self.verify_archive(log, run, job, listed, &parsed).await?;
                        run.position.pass.checked += 1;
                    }
                }
                run.position.after = Some(listed.key.clone());
            }
            if !page.truncated {
                return Ok(());
            }
        }
    }

    /// Reads and checks one archive, then its index entries; a problem is recorded (and
    /// repaired if asked and possible). Stops the run, before the archive counts as handled,
    /// on a storage failure or when a repair does not fit the budget.
    async fn verify_archive(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
        listed: &ListedR2Object,
        parsed: &ArchiveObjectKey,
    ) -> Result<(), StopReason> {
        let key = listed.key.as_str();
        let stop = |err: PersistenceError| stop_reason(&err);
        let Some(object) = self.r2_get(log, key).await.map_err(stop)? else {
            // Deleted since it was listed (retention, an erasure): nothing to check.
            return Ok(());
        };
        job.report.objects_checked += 1;
        job.report.bytes_checked += object.body.len() as u64;
        verify_keys::insert(&mut run.position.archives_seen, key);
        let expected = recorded_sha256(&object.meta);
        let checked = if self.key_ring().is_none() && envelope::is_encrypted(&object.body) {
            // No encryptionKeys here: only what the checksum proves; the archive is not
            // damaged because this service cannot open it (nor are its entries checked).
            job.report.not_decrypted += 1;
            match expected {
                Some(sha256) => verify_sha256_of_object(key, &object.body, sha256)
                    .await
                    .map(|()| None),
                None => Err(PersistenceError::corrupt(
                    key,
                    "encrypted, but no SHA-256 is recorded",
                )),
            }
        } else {
            let limit = self.read_limit(&object.meta, expected.is_some());
            let view = Shape::Conversation.view(key);
            self.decode_stored_archive(log, key, &object.body, expected, limit, view)
                .await
                .and_then(|decoded| {
                    check_archive_session(key, &decoded.metadata.session_id, &parsed.session_id)
                        .map(|()| Some(decoded))
                })
        };
        let decoded = match checked {
            Ok(decoded) => decoded,
            Err(err) if storage_failure(&err) => return Err(stop_reason(&err)),
            Err(err) => {
                if self
                    .erased_object(log, job, parsed, &object.meta)
                    .await
                    .map_err(stop)?
                {
                    return Ok(());
                }
                let expected = expected.map(str::to_owned);
                return self
                    .damaged_archive(log, run, job, key, parsed, &err, expected)
                    .await;
            }
        };
        job.sound(key);
        let sha256 = expected.map_or_else(|| sha256_hex(&object.body), str::to_owned);
        self.compare_replica(log, run, job, &object, &sha256)
            .await?;
        let Some(decoded) = decoded else {
            return Ok(());
        };
        let fresh = job.now_ms.saturating_sub(parsed.archived_at_ms) < INDEX_LAG_MS;
        if parsed.legacy || fresh {
            return Ok(());
        }
        self.verify_index_entries(
            log,
            run,
            job,
            key,
            parsed,
            &object.meta,
            &object.body,
            decoded,
        )
        .await
    }

    /// Looks up an archive's global and per-user index entries; rebuilds missing ones when
    /// repairing.
    // The archive as read and decoded: bundling would only move the list into a struct.
    #[allow(clippy::too_many_arguments)]
    async fn verify_index_entries(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
        key: &str,
        parsed: &ArchiveObjectKey,
        meta: &ObjectMeta,
        stored: &[u8],
        decoded: DecodedArchiveJson,
    ) -> Result<(), StopReason> {
        let stop = |err: PersistenceError| stop_reason(&err);
        let session = &parsed.session_id;
        let at = parsed.archived_at_ms;
        let mut wanted = vec![archive_index_key(at, session).map_err(stop)?];
        let user_key = match (
            &decoded.metadata.user_id,
            meta.custom_metadata.get(OWNER_KEY_FIELD),
        ) {
            (Some(user_id), _) => UserId::parse(user_id)
                .ok()
                .map(|user| self.options.hasher.user_key(&user)),
            (None, owner) => owner.cloned(),
        };
        if let Some(user_key) = &user_key {
            wanted.push(user_index_key(user_key, at, session).map_err(stop)?);
        }
        let mut missing = Vec::new();
        let position = &run.position;
        let listed = [&position.indexed_global, &position.indexed_user];
        let unlisted: Vec<String> = wanted
            .into_iter()
            .zip(listed)
            .filter(|(_, set)| !verify_keys::holds(set, key))
            .map(|(index_key, _)| index_key)
            .collect();
        job.report.entries_checked += u64::from(user_key.is_some()) + 1;
        run.position.pass.checked += u64::from(user_key.is_some()) + 1;
        // Not in the listing: written since, or missing.
        for index_key in unlisted {
            if self.kv_get(log, &index_key).await.map_err(stop)?.is_none() {
                missing.push(index_key);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let user_id = decoded.metadata.user_id.clone();
        let erased = self
            .is_erased_archive(
                log,
                &mut job.erasures,
                session.as_str(),
                user_id.as_deref(),
                at,
            )
            .await
            .map_err(stop)?;
        if erased {
            return Ok(());
        }
        let detail = format!("no index entry {}", missing.join(", "));
        let mut problem = Problem {
            key: key.to_owned(),
            problem: ProblemKind::NotIndexed,
            detail,
            repaired: false,
            repaired_from: None,
        };
        let calls = missing.len() as u32 + 2;
        if job.options.repair && self.afford_repair(log, run, &mut problem, calls) {
            self.rebuild_index_entries(log, key, stored, decoded.metadata, &missing)
                .await
                .map_err(stop)?;
            problem.repaired = true;
        }
        job.record(problem);
        Ok(())
    }

    /// Whether an erasure covers the archive `parsed` (its user's tombstone, by the owner its
    /// custom metadata names, or for a segment its conversation's). Costs 1 R2 head the first
    /// time a run meets a user.
    pub(super) async fn erased_object(
        &self,
        log: &OpLog<'_>,
        job: &mut Verification,
        parsed: &ArchiveObjectKey,
        meta: &ObjectMeta,
    ) -> Result<bool> {
        let at = parsed.archived_at_ms;
        if let Some(owner) = meta.custom_metadata.get(OWNER_KEY_FIELD) {
            let tombstone = self.tombstone_of(log, &mut job.erasures, owner).await?;
            return Ok(tombstone.is_some_and(|tombstone| tombstone.covers(at)));
        }
        let session = parsed.session_id.as_str();
        self.is_erased_archive(log, &mut job.erasures, session, None, at)
            .await
    }

    /// Phase 0: the global and per-user index entries of the slot, listed to know which
    /// archives they point at (1 KV list per 1000 entries, no call per entry).
    pub(super) async fn list_index_entries(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
    ) -> Result<(), StopReason> {
        while let Some(prefix) = INDEX_PREFIXES.get(run.position.prefix) {
            let mut pager = KvPager::new(*prefix, std::mem::take(&mut run.position.kv));
            let outcome = loop {
                if let Err(stopped) = self.afford_check(log, run, 1) {
                    break Err(stopped);
                }
                let page = match self.next_kv_page(log, run, &mut pager, 0).await {
                    Ok(Some(page)) => page,
                    Ok(None) => break Ok(()),
                    Err(stopped) => break Err(stopped),
                };
                let (of, slot) = (run.position.pass.of, run.position.pass.slot);
                let position = &mut run.position;
                let set = if *prefix == ARCHIVE_INDEX_PREFIX {
                    &mut position.indexed_global
                } else {
                    &mut position.indexed_user
                };
                for archive_key in page.iter().filter_map(pointed_archive) {
                    if slot_of(archive_key, of) == slot {
                        verify_keys::insert(set, archive_key);
                    }
                }
                pager.page_done();
            };
            run.position.kv = pager.at;
            outcome?;
            run.position.prefix += 1;
            run.position.kv = KvPosition::default();
        }
        Ok(())
    }

    /// Phase 2: every KV entry that points at an archive in the sample must find it.
    pub(super) async fn verify_entries(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
    ) -> Result<(), StopReason> {
        while let Some(prefix) = ENTRY_PREFIXES.get(run.position.prefix) {
            let mut pager = KvPager::new(*prefix, std::mem::take(&mut run.position.kv));
            let outcome = self.verify_entries_of(log, run, job, &mut pager).await;
            run.position.kv = pager.at;
            outcome?;
            run.position.prefix += 1;
            run.position.kv = KvPosition::default();
        }
        Ok(())
    }

    /// [`Self::verify_entries`] of one prefix.
    async fn verify_entries_of(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
        pager: &mut KvPager,
    ) -> Result<(), StopReason> {
        let stop = |err: PersistenceError| stop_reason(&err);
        loop {
            self.afford_check(log, run, 1)?;
            let Some(page) = self.next_kv_page(log, run, pager, 1).await? else {
                return Ok(());
            };
            for entry in &page {
                // The archive the entry points at; the earlier implementation's records
                // (no `key`) are checked through the archives they name in phase 1.
                let Some(archive_key) = pointed_archive(entry) else {
                    continue;
                };
                let Some(parsed) = parse_archive_object_key(archive_key) else {
                    continue;
                };
                if slot_of(archive_key, run.position.pass.of) != run.position.pass.slot {
                    continue;
                }
                job.report.entries_checked += 1;
                run.position.pass.checked += 1;
                let seen = &run.position.archives_seen;
                let encrypted = format!("{archive_key}{ENCRYPTED_SUFFIX}");
                if verify_keys::holds(seen, archive_key) || verify_keys::holds(seen, &encrypted) {
                    continue;
                }
                pager.claim(&entry.name);
                self.afford_check(log, run, 2)?;
                if self
                    .archive_exists(log, archive_key, &parsed)
                    .await
                    .map_err(stop)?
                {
                    continue;
                }
                let at = parsed.archived_at_ms;
                if self.past_retention(at) {
                    // Retention deleted the archive; its sweep deletes the entry next.
                    continue;
                }
                let metadata = entry.metadata.as_ref();
                let user_id = metadata
                    .and_then(|metadata| metadata.get("userId"))
                    .and_then(|user| user.as_str());
                let session = parsed.session_id.as_str();
                if self
                    .is_erased_archive(log, &mut job.erasures, session, user_id, at)
                    .await
                    .map_err(stop)?
                {
                    continue;
                }
                let sha256 = metadata
                    .and_then(|metadata| metadata.get("sha256"))
                    .and_then(|sha| sha.as_str())
                    .map(str::to_owned);
                let missing = PersistenceError::NotFound {
                    key: format!("{archive_key} ({} points at it)", entry.name),
                };
                self.damaged_archive(log, run, job, archive_key, &parsed, &missing, sha256)
                    .await?;
            }
            pager.page_done();
        }
    }

    /// Whether the archive `key` is stored: under its key, or for a plaintext key, encrypted
    /// (`encryptExistingArchives` replaced it; entries may still name the plaintext key).
    /// Costs 1 R2 head, 2 on such a miss.
    async fn archive_exists(
        &self,
        log: &OpLog<'_>,
        key: &str,
        parsed: &ArchiveObjectKey,
    ) -> Result<bool> {
        if self.r2_head(log, key).await?.is_some() {
            return Ok(true);
        }
        if parsed.encrypted || parsed.legacy {
            return Ok(false);
        }
        let encrypted = encrypted_archive_object_key(&parsed.session_id, parsed.archived_at_ms)?;
        Ok(self.r2_head(log, &encrypted).await?.is_some())
    }
}

/// The archive key a KV entry's list metadata names (the earlier implementation's
/// `archive_meta` records name none).
fn pointed_archive(entry: &ListedKvKey) -> Option<&str> {
    entry.metadata.as_ref()?.get("key")?.as_str()
}
