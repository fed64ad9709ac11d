//! `retrieveArchive`: one archive by its R2 key, read from R2 alone.
//!
//! `retrieveArchivedConversation(sessionId)` finds the session's newest archive through KV
//! `archive_meta`, which may lag a write made elsewhere by ~60 s. A caller that holds the key
//! `archiveConversation` returned (e.g. a Durable Object that just archived its session) reads
//! it here instead: R2 is strongly consistent, so the archive is there as soon as the key was
//! returned, and the object's own recorded SHA-256 is what it is checked against.

use serde_json::json;

use super::archive::{check_archive_session, Shape};
use super::index_entries::recorded_sha256;
use super::log::OpLog;
use super::replica::{is_damage, served_from_replica};
use super::tombstone::ErasureCheck;
use super::DataPersistenceService;
use crate::codec::archive::{DecodedArchiveJson, CUSTOM_RAW_SIZE_FIELD};
use crate::error::{PersistenceError, Result};
use crate::keys::{parse_archive_object_key, SessionId};
use crate::store::{Clock, KvStore, ObjectMeta, ObjectStore, Rng, StoredObject};

/// Longest part of a refused `archiveKey` quoted in the error.
const QUOTED_KEY_CHARS: usize = 64;

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// The archive stored under `archive_key` (as `archiveConversation` returned it, or a
    /// legacy key of the earlier TypeScript implementation) as conversation JSON text, verified
    /// against the SHA-256 R2 recorded for it; `None` when no object is stored there, or an
    /// erasure of its user covers it (1 R2 head more for an archive with a user).
    ///
    /// Strongly consistent: reads R2 only, so it finds an archive the moment its key was
    /// returned, wherever it was written. Costs 1 R2 get; 2 when nothing is under a plaintext
    /// archive's key (its encrypted copy is read, see `get_archive_object`). Errors: `INVALID_INPUT` naming
    /// `archiveKey` for anything but an archive key (before any storage call);
    /// `CHECKSUM_MISMATCH` or `CORRUPT_DATA` when the stored archive is damaged or holds another
    /// session (never wrong data); `UNSUPPORTED_FORMAT`; `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN`.
    ///
    /// With a replica bucket, an archive missing from the primary or failing its checks there
    /// is read from the replica (1 or 2 replica gets more), checked against the primary's
    /// recorded SHA-256 when it has one, erasures honoured, and logged.
    pub async fn retrieve_archive(&self, archive_key: &str) -> Result<Option<String>> {
        let log = self.begin("retrieveArchive");
        self.archive_json_by_key(&log, archive_key, Shape::Conversation)
            .await
    }

    /// The archive stored under `archive_key` as JSON text of `shape`, verified (see
    /// [`Self::retrieve_archive`]); `None` when no object is stored there or it is erased.
    pub(super) async fn archive_json_by_key(
        &self,
        log: &OpLog<'_>,
        archive_key: &str,
        shape: Shape,
    ) -> Result<Option<String>> {
        let parsed = parse_archive_object_key(archive_key).ok_or_else(|| {
            let quoted: String = archive_key.chars().take(QUOTED_KEY_CHARS).collect();
            PersistenceError::invalid_input(
                "archiveKey",
                format!("{quoted:?} is not an archive key (conversations/YYYY/MM/archive_<sessionId>_<ms>.json.gz)"),
            )
        })?;
        let Some((archive_key, decoded)) = self
            .read_archive_by_key(
                log,
                archive_key,
                &parsed.session_id,
                Some(&mut ErasureCheck::default()),
                shape,
            )
            .await?
        else {
            return Ok(None);
        };
        log.debug(
            "retrieved",
            json!({ "key": archive_key, "formatVersion": decoded.metadata.format_version }),
        );
        Ok(Some(decoded.json))
    }

    /// The archive of `session` under the archive key `key` (or its encrypted copy, see
    /// `get_archive_object`) as JSON text of `shape`, checked against the SHA-256 R2 recorded
    /// for it, decrypted and decoded, with the key it was found under; `None` when nothing is
    /// stored there, or, with `erasures`, when an erasure covers it (`decode_unless_erased`; a
    /// caller that checks erasures itself passes `None`). Costs as [`Self::retrieve_archive`].
    /// Errors as `decode_stored_archive`, and `CORRUPT_DATA` when it holds another session.
    pub(super) async fn read_archive_by_key(
        &self,
        log: &OpLog<'_>,
        key: &str,
        session: &SessionId,
        mut erasures: Option<&mut ErasureCheck>,
        shape: Shape,
    ) -> Result<Option<(String, DecodedArchiveJson)>> {
        let mut expected = None;
        let mut damage = None;
        if let Some((archive_key, object)) = self.get_archive_object(log, key).await? {
            expected = recorded_sha256(&object.meta).map(str::to_owned);
            let checks = expected.as_deref();
            let found = &(archive_key.as_str(), &object);
            let erasures = erasures.as_deref_mut();
            match self
                .decode_by_key(log, found, checks, session, erasures, shape)
                .await
            {
                Err(err) if self.has_replica() && is_damage(&err) => damage = Some(err),
                decoded => return decoded.map(|decoded| decoded.map(|d| (archive_key, d))),
            }
        }
        // Missing or damaged in the primary: the replica's copy, checked the same way.
        let Some((archive_key, object)) = self.replica_archive_object(log, key).await else {
            return damage.map_or(Ok(None), Err);
        };
        let checks = match (&expected, archive_key == key) {
            (Some(primary), true) => Some(primary.as_str()),
            _ => recorded_sha256(&object.meta),
        };
        let found = &(archive_key.as_str(), &object);
        let decoded = self
            .decode_by_key(log, found, checks, session, erasures, shape)
            .await;
        let primary = damage.as_ref().map_or("NOT_FOUND", PersistenceError::code);
        match (decoded, damage) {
            (Ok(decoded), _) => {
                if decoded.is_some() {
                    served_from_replica(log, &archive_key, primary);
                }
                Ok(decoded.map(|d| (archive_key, d)))
            }
            (Err(err), damage) => {
                log.event(
                    "warn",
                    "the replica's copy fails its checks too",
                    json!({ "key": archive_key, "code": err.code() }),
                );
                Err(damage.unwrap_or(err))
            }
        }
    }

    /// Decodes the archive `found` (its key and object) of `session` as JSON text of `shape`,
    /// checked against `expected_sha256`, unless `erasures` finds it erased.
    async fn decode_by_key(
        &self,
        log: &OpLog<'_>,
        found: &(&str, &StoredObject),
        expected_sha256: Option<&str>,
        session: &SessionId,
        erasures: Option<&mut ErasureCheck>,
        shape: Shape,
    ) -> Result<Option<DecodedArchiveJson>> {
        let (key, object) = *found;
        let read_limit = self.read_limit(&object.meta, expected_sha256.is_some());
        let body = &object.body;
        let view = shape.view(key);
        let decoded = match erasures {
            Some(check) => {
                let decoded = self
                    .decode_unless_erased(log, check, key, body, expected_sha256, read_limit, view)
                    .await?;
                let Some(decoded) = decoded else {
                    return Ok(None);
                };
                decoded
            }
            None => {
                self.decode_stored_archive(log, key, body, expected_sha256, read_limit, view)
                    .await?
            }
        };
        check_archive_session(key, &decoded.metadata.session_id, session)?;
        Ok(Some(decoded))
    }

    /// Largest size the object may inflate to: the policy's limit, or the size recorded with
    /// the object's checksum when that is larger. A checksum is verified before inflating, so
    /// the size written beside it is trusted and an archive stays readable after
    /// `maxArchiveSize` is lowered (as through `retrieveArchivedConversation`).
    pub(super) fn read_limit(&self, meta: &ObjectMeta, checksummed: bool) -> u64 {
        let recorded = meta
            .custom_metadata
            .get(CUSTOM_RAW_SIZE_FIELD)
            .and_then(|size| size.parse::<u64>().ok())
            .filter(|_| checksummed)
            .unwrap_or(0);
        self.policy.max_archive_size_bytes.max(recorded)
    }
}
