//! Encryption at rest in the service: each owner's data key (read, or made on first use), and
//! the sealing and opening of archives and their summaries (`crate::crypto`,
//! docs/FORMAT.md "Encryption").
//!
//! A data key lives in R2 (`keys/users/<userKey>.json`, or `keys/sessions/<sessionId>.json` for
//! a session without a user), wrapped by the newest KEK, and is written only if absent: R2 is
//! strongly consistent, so two Workers making a user's first key at once both end up with the
//! one R2 kept. Unwrapped keys are cached per service; a write still reads the key object each
//! time (1 R2 get), so that it never encrypts under a key that was destroyed meanwhile.

use std::cell::RefCell;
use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use super::log::OpLog;
use super::DataPersistenceService;
use crate::codec::archive::{
    decode_archive_json, decode_decrypted_archive_json, decode_verified_archive_json,
    DecodedArchiveJson, View, ARCHIVE_NAME, ENCRYPTED_SUMMARY_FIELD,
};
use crate::crypto::aead::{SecretKey, KEY_LEN, NONCE_LEN};
use crate::crypto::data_key::{unwrap, wrap, WrappedKey};
use crate::crypto::envelope::{self, DataKey, DEK_ID_LEN};
use crate::crypto::keyring::KeyRing;
use crate::error::{PersistenceError, Result};
use crate::hash::{to_hex, verify_sha256_of_object};
use crate::keys::{
    conversation_tombstone_key, data_key_object_of_ref, encrypted_archive_object_key,
    erasure_tombstone_key, parse_archive_object_key, parse_segment_session_id,
    session_data_key_ref, user_data_key_ref, SessionId, UserId,
};
use crate::store::{
    Binding, Clock, KvStore, ObjectPutOptions, ObjectStore, PutOutcome, Rng, StoredObject,
};

/// Content type of encrypted archive objects.
pub const ENCRYPTED_CONTENT_TYPE: &str = "application/octet-stream";

/// Content type of wrapped data key objects.
const DATA_KEY_CONTENT_TYPE: &str = "application/json";

/// Most unwrapped data keys a service keeps; past it the cache starts afresh.
const MAX_CACHED_KEYS: usize = 1024;

/// Unwrapped data keys by `<key object>#<DEK id>`.
#[derive(Default)]
pub(super) struct DataKeyCache(RefCell<BTreeMap<String, DataKey>>);

impl DataKeyCache {
    fn get(&self, object_key: &str, dek_id: &[u8; DEK_ID_LEN]) -> Option<DataKey> {
        self.0.borrow().get(&cache_key(object_key, dek_id)).cloned()
    }

    /// Drops every cached key read from `object_key` (an erasure destroyed it).
    pub fn forget(&self, object_key: &str) {
        let prefix = format!("{object_key}#");
        self.0
            .borrow_mut()
            .retain(|key, _| !key.starts_with(&prefix));
    }

    fn insert(&self, object_key: &str, dek: &DataKey) {
        let mut keys = self.0.borrow_mut();
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        keys.insert(cache_key(object_key, &dek.id), dek.clone());
    }
}

fn cache_key(object_key: &str, dek_id: &[u8; DEK_ID_LEN]) -> String {
    format!("{object_key}#{}", to_hex(dek_id))
}

/// Bytes encryption adds to a summary sealed under the data key `reference` names.
pub(super) fn sealed_summary_overhead(reference: &str) -> usize {
    envelope::overhead(reference.len())
}

/// What an encrypted summary is bound to, besides its session: its archive's key.
fn summary_storage_key(archive_key: &str) -> String {
    format!("{archive_key}#summary")
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// The configured key ring, or `None` when encryption is off.
    pub(super) fn key_ring(&self) -> Option<&KeyRing> {
        self.options.encryption.as_ref()
    }

    /// The reference of the data key that encrypts what belongs to `session` of `user_id`:
    /// the user's key, or the session's own when it has no user; a segment of a conversation
    /// (`<sessionId>:segment-<n>`, archived without a user) uses its conversation's, so one
    /// key covers the whole conversation and no key is made per segment.
    pub(super) fn key_reference(
        &self,
        session: &SessionId,
        user_id: Option<&str>,
    ) -> Result<String> {
        Ok(match user_id {
            Some(user_id) => {
                user_data_key_ref(&self.options.hasher.user_key(&UserId::parse(user_id)?))
            }
            None => match parse_segment_session_id(session.as_str()) {
                Some((conversation, _)) => session_data_key_ref(&SessionId::parse(conversation)?),
                None => session_data_key_ref(session),
            },
        })
    }

    /// `N` secure random bytes (keys, key ids, nonces); a failing source (the runtime has no
    /// `crypto.getRandomValues`) is `CRYPTO_UNAVAILABLE`: there is no weaker fallback.
    pub(super) fn secure_random<const N: usize>(&self) -> Result<[u8; N]> {
        let mut bytes = [0u8; N];
        self.clock.fill_secure(&mut bytes).map_err(|reason| {
            PersistenceError::CryptoUnavailable {
                what: "secure random bytes".to_owned(),
                reason,
            }
        })?;
        Ok(bytes)
    }

    /// The data key `reference` names, made (and stored only if absent) when it has none.
    /// Costs 1 R2 get; the first time, 1 R2 put more (and 1 R2 get when another Worker stored
    /// one first), and with a replica bucket its queue entry and its copy (2 calls).
    pub(super) async fn data_key_for_write(
        &self,
        log: &OpLog<'_>,
        ring: &KeyRing,
        reference: &str,
    ) -> Result<DataKey> {
        let object_key = data_key_object(reference)?;
        if let Some(dek) = self.read_data_key(log, ring, &object_key, None).await? {
            return Ok(dek);
        }
        let dek = DataKey {
            id: self.secure_random::<DEK_ID_LEN>()?,
            key: SecretKey(self.secure_random::<KEY_LEN>()?),
        };
        let nonce = self.secure_random::<NONCE_LEN>()?;
        let wrapped = wrap(&object_key, &dek, ring.newest(), nonce, self.clock.now_ms()).await?;
        let options = ObjectPutOptions {
            only_if_absent: true,
            ..data_key_put_options(&wrapped)
        };
        let body = wrapped.encode();
        // Without its key, an encrypted replica is unreadable once the primary is lost; queued
        // first, as nothing writes the key again should a crash follow the primary's write.
        self.queue_replica_sync(log, std::slice::from_ref(&object_key))
            .await;
        match self
            .r2_put(log, &object_key, &body, options.clone())
            .await?
        {
            PutOutcome::Stored(_) => {
                log.event("info", "made a data key", json!({ "key": object_key }));
                self.copy_queued(log, &object_key, &body, &options).await;
                self.data_keys.insert(&object_key, &dek);
                Ok(dek)
            }
            // Another Worker made this owner's key first: use that one.
            PutOutcome::AlreadyExists | PutOutcome::Changed => self
                .read_data_key(log, ring, &object_key, None)
                .await?
                .ok_or_else(|| PersistenceError::StorageUnavailable {
                    binding: Binding::R2.name().to_owned(),
                    operation: format!("get {object_key}"),
                    reason: "the data key R2 reported as existing is gone".to_owned(),
                }),
        }
    }

    /// The data key stored under `object_key` (with id `dek_id`, when given: cached keys are
    /// served without a storage call); `None` when no key object exists. Errors:
    /// `KEY_UNAVAILABLE` (its KEK is not configured, or it holds another key than `dek_id`),
    /// `DECRYPTION_FAILED`, `CORRUPT_DATA`.
    async fn read_data_key(
        &self,
        log: &OpLog<'_>,
        ring: &KeyRing,
        object_key: &str,
        dek_id: Option<&[u8; DEK_ID_LEN]>,
    ) -> Result<Option<DataKey>> {
        if let Some(cached) = dek_id.and_then(|id| self.data_keys.get(object_key, id)) {
            return Ok(Some(cached));
        }
        let Some(object) = self.r2_get(log, object_key).await? else {
            return Ok(None);
        };
        self.unwrap_key_object(ring, object_key, &object, dek_id)
            .await
            .map(Some)
    }

    /// The data key in the stored `object` of `object_key` (with id `dek_id`, when given),
    /// unwrapped and cached. Errors as [`Self::read_data_key`].
    async fn unwrap_key_object(
        &self,
        ring: &KeyRing,
        object_key: &str,
        object: &StoredObject,
        dek_id: Option<&[u8; DEK_ID_LEN]>,
    ) -> Result<DataKey> {
        let wrapped = WrappedKey::decode(object_key, &object.body)?;
        let stored_id = wrapped.dek_id_bytes(object_key)?;
        if let Some(wanted) = dek_id.filter(|wanted| **wanted != stored_id) {
            return Err(destroyed(object_key, wanted));
        }
        if let Some(cached) = self.data_keys.get(object_key, &stored_id) {
            return Ok(cached);
        }
        let dek = unwrap(ring, object_key, &wrapped).await?;
        self.data_keys.insert(object_key, &dek);
        Ok(dek)
    }

    /// For a read whose data key is missing from the primary: the replica's copy, unless an
    /// erasure covers the key's owner (a destroyed key must stay destroyed, also while its
    /// replica copy waits in the queue to be deleted). `None` without a replica, when it has
    /// none, when it fails (logged), or when the owner is erased. Costs 1 R2 head (the
    /// tombstone) and 1 replica get.
    async fn replica_data_key(
        &self,
        log: &OpLog<'_>,
        ring: &KeyRing,
        object_key: &str,
        reference: &str,
        dek_id: &[u8; DEK_ID_LEN],
    ) -> Result<Option<DataKey>> {
        if !self.has_replica() {
            return Ok(None);
        }
        let tombstone = match reference.split_once('/') {
            Some(("users", user_key)) => erasure_tombstone_key(user_key),
            Some(("sessions", session)) => conversation_tombstone_key(&SessionId::parse(session)?),
            _ => return Ok(None),
        };
        if self.r2_head(log, &tombstone).await?.is_some() {
            return Ok(None);
        }
        let object = match self.replica_get(log, object_key).await {
            Ok(Some(object)) => object,
            Ok(None) => return Ok(None),
            Err(err) => {
                log.event(
                    "warn",
                    "could not read the replica's copy",
                    json!({ "key": object_key, "code": err.code(), "error": err.to_string() }),
                );
                return Ok(None);
            }
        };
        let dek = self
            .unwrap_key_object(ring, object_key, &object, Some(dek_id))
            .await?;
        log.event(
            "warn",
            "data key served from the replica",
            json!({ "key": object_key, "primary": "NOT_FOUND" }),
        );
        Ok(Some(dek))
    }

    /// The data key an envelope names (`what` names the encrypted object in errors).
    pub(super) async fn data_key_for_read(
        &self,
        log: &OpLog<'_>,
        what: &str,
        reference: &str,
        dek_id: &[u8; DEK_ID_LEN],
    ) -> Result<DataKey> {
        let object_key = data_key_object(reference)?;
        let Some(ring) = self.key_ring() else {
            return Err(PersistenceError::KeyUnavailable {
                what: what.to_owned(),
                key_id: format!("{object_key} (no encryptionKeys are configured)"),
            });
        };
        if let Some(dek) = self
            .read_data_key(log, ring, &object_key, Some(dek_id))
            .await?
        {
            return Ok(dek);
        }
        self.replica_data_key(log, ring, &object_key, reference, dek_id)
            .await?
            .ok_or_else(|| destroyed(&object_key, dek_id))
    }

    /// The object under the archive key `key`, or, when a plaintext archive's key holds
    /// nothing, its encrypted copy (`encryptExistingArchives` replaced it): keys handed out
    /// before (kept by callers, segments, a KV record not yet updated everywhere) stay valid.
    /// Returns the key the object was found under. Costs 1 R2 get, 2 on such a miss.
    pub(super) async fn get_archive_object(
        &self,
        log: &OpLog<'_>,
        key: &str,
    ) -> Result<Option<(String, StoredObject)>> {
        if let Some(object) = self.r2_get(log, key).await? {
            return Ok(Some((key.to_owned(), object)));
        }
        let Some(parsed) = parse_archive_object_key(key).filter(|p| !p.encrypted && !p.legacy)
        else {
            return Ok(None);
        };
        let encrypted = encrypted_archive_object_key(&parsed.session_id, parsed.archived_at_ms)?;
        let found = self.r2_get(log, &encrypted).await?;
        if found.is_some() {
            log.event(
                "info",
                "archive read under its encrypted key",
                json!({ "key": key, "encryptedKey": encrypted }),
            );
        }
        Ok(found.map(|object| (encrypted, object)))
    }

    /// Encrypts `summary` of the archive under `archive_key`, as `encryptedSummary` holds it:
    /// its header names the data key (`reference`), like the archive's, so it stays readable
    /// after the hash secret (and with it the user's key reference) changed.
    pub(super) async fn seal_summary(
        &self,
        dek: &DataKey,
        reference: &str,
        archive_key: &str,
        session: &SessionId,
        summary: &str,
    ) -> Result<String> {
        let nonce = self.secure_random::<NONCE_LEN>()?;
        let storage_key = summary_storage_key(archive_key);
        let sealed = envelope::seal(
            dek,
            reference,
            nonce,
            &storage_key,
            session.as_str(),
            summary.as_bytes(),
        )
        .await?;
        Ok(STANDARD.encode(sealed))
    }

    /// Decodes an archive's stored bytes in `view`, decrypting them first when they are
    /// encrypted. The stored SHA-256 is checked before anything else; an encrypted archive
    /// without one is refused. Errors as `decode_archive_json`, plus `KEY_UNAVAILABLE` and
    /// `DECRYPTION_FAILED` naming `key`.
    pub(super) async fn decode_stored_archive(
        &self,
        log: &OpLog<'_>,
        key: &str,
        stored: &[u8],
        expected_sha256: Option<&str>,
        read_limit: u64,
        view: View<'_>,
    ) -> Result<DecodedArchiveJson> {
        if !envelope::is_encrypted(stored) {
            let Some(sha256) = expected_sha256 else {
                return decode_archive_json(stored, None, read_limit, view);
            };
            verify_sha256_of_object(ARCHIVE_NAME, stored, sha256).await?;
            return decode_verified_archive_json(stored, sha256, read_limit, view);
        }
        let sha256 = expected_sha256.ok_or_else(|| {
            PersistenceError::corrupt(key, "encrypted, but no SHA-256 is recorded")
        })?;
        verify_sha256_of_object(key, stored, sha256).await?;
        let session = parse_archive_object_key(key)
            .ok_or_else(|| {
                PersistenceError::corrupt(key, "encrypted, but not under an archive key")
            })?
            .session_id;
        let sealed = envelope::parse(key, stored)?;
        let dek = self
            .data_key_for_read(log, key, sealed.key_ref, &sealed.dek_id)
            .await?;
        let gzipped = envelope::open(key, &sealed, &dek, key, session.as_str()).await?;
        decode_decrypted_archive_json(&gzipped, stored.len() as u64, sha256, read_limit, view)
    }

    /// Replaces each listed archive's `encryptedSummary` by its `summary`, decrypted. An entry
    /// whose summary cannot be decrypted (its key destroyed, a KEK not configured) is listed
    /// as it is, and logged. Costs 1 R2 get per data key not yet cached.
    pub(super) async fn reveal_summaries(&self, log: &OpLog<'_>, archives: &mut [Value]) {
        if self.key_ring().is_none() {
            return;
        }
        for archive in archives {
            let Some(entry) = archive.as_object_mut() else {
                continue;
            };
            let Some(Value::String(sealed)) = entry.get(ENCRYPTED_SUMMARY_FIELD) else {
                continue;
            };
            match self.open_summary(log, entry, sealed).await {
                Ok(summary) => {
                    entry.remove(ENCRYPTED_SUMMARY_FIELD);
                    entry.insert("summary".to_owned(), Value::String(summary));
                }
                Err(err) => log.event(
                    "warn",
                    "listed an archive whose summary cannot be decrypted",
                    json!({ "key": entry.get("key"), "code": err.code(), "error": err.to_string() }),
                ),
            }
        }
    }

    /// The summary a listing entry carries encrypted.
    async fn open_summary(
        &self,
        log: &OpLog<'_>,
        entry: &serde_json::Map<String, Value>,
        sealed: &str,
    ) -> Result<String> {
        let field = |name: &str| entry.get(name).and_then(Value::as_str);
        let archive_key = field("key").unwrap_or_default();
        let what = format!("{ENCRYPTED_SUMMARY_FIELD} of {archive_key}");
        let session = SessionId::parse(field("sessionId").unwrap_or_default())?;
        let bytes = STANDARD
            .decode(sealed)
            .map_err(|_| PersistenceError::corrupt(&what, "not base64"))?;
        let envelope = envelope::parse(&what, &bytes)?;
        let dek = self
            .data_key_for_read(log, &what, envelope.key_ref, &envelope.dek_id)
            .await?;
        let storage_key = summary_storage_key(archive_key);
        let text = envelope::open(&what, &envelope, &dek, &storage_key, session.as_str()).await?;
        String::from_utf8(text).map_err(|_| PersistenceError::corrupt(&what, "not UTF-8"))
    }
}

/// The nonce of an archive body encrypted under `dek` as `object_key`, derived from them and
/// the body: HMAC-SHA-256, under a subkey of the data key (so the AES key itself keys no other
/// function), of the key and the body's SHA-256, cut to 12 bytes. Two different bodies get the same nonce only by a 96-bit collision, as with
/// random nonces; the same body under the same key gets the same ciphertext, which reveals
/// nothing the key does not already (what `encryptExistingArchives` relies on to be
/// crash-consistent).
pub(super) fn content_nonce(dek: &DataKey, object_key: &str, body: &[u8]) -> [u8; NONCE_LEN] {
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};
    // HMAC takes a key of any length.
    let hmac = |key: &[u8]| Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    // HKDF-Expand(DEK, label), one block: the subkey of the nonce derivation.
    let mut expand = hmac(&dek.key.0);
    expand.update(b"supportbot-persistence/archive-nonce/v1\x01");
    let subkey = expand.finalize().into_bytes();
    let mut mac = hmac(&subkey);
    mac.update(object_key.as_bytes());
    mac.update(b"\0");
    mac.update(&Sha256::digest(body));
    let tag = mac.finalize().into_bytes();
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&tag[..NONCE_LEN]);
    nonce
}

/// How a wrapped data key is stored: JSON, with its checksum and, as custom metadata, the id
/// of the KEK wrapping it (so that a rotation tells current keys from a listing alone).
pub(super) fn data_key_put_options(wrapped: &WrappedKey) -> ObjectPutOptions {
    ObjectPutOptions {
        content_type: Some(DATA_KEY_CONTENT_TYPE.to_owned()),
        sha256: Some(crate::hash::sha256_hex(&wrapped.encode())),
        custom_metadata: [(KEK_ID_FIELD.to_owned(), wrapped.kek_id.clone())].into(),
        ..ObjectPutOptions::default()
    }
}

/// The custom metadata field of a data key object naming the KEK that wraps it.
pub(super) const KEK_ID_FIELD: &str = "kekId";

/// The R2 key of the data key `reference` names; `CORRUPT_DATA` for a reference no key has.
fn data_key_object(reference: &str) -> Result<String> {
    data_key_object_of_ref(reference).ok_or_else(|| {
        PersistenceError::corrupt(
            "encryption header",
            format!("{reference:?} is not a data key reference"),
        )
    })
}

/// `KEY_UNAVAILABLE`: the data key with id `dek_id` is no longer under `object_key`.
fn destroyed(object_key: &str, dek_id: &[u8; DEK_ID_LEN]) -> PersistenceError {
    PersistenceError::KeyUnavailable {
        what: object_key.to_owned(),
        key_id: format!("data key {} (destroyed or replaced)", to_hex(dek_id)),
    }
}
