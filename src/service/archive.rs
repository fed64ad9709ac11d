//! `archiveConversation`, `retrieveArchivedConversation`, `listArchivedConversations`.
//!
//! Storage written per archive, in this order (each step only after the previous succeeded):
//! 1. R2 `conversations/YYYY/MM/archive_<sid>_<ms>.json.gz`, written only if absent and with
//!    its SHA-256, so R2 refuses a damaged upload and never overwrites an archive;
//! 2. KV `archive_meta:<sid>`: the [`ArchiveMetadata`] record plus the R2 `key`;
//! 3. KV `user_archives:<userKey>:<inverted ms>:<sid>` (only when the session has a user);
//! 4. KV `archive_index:<inverted ms>:<sid>`.
//!
//! Every KV entry carries the listing summary (`codec::archive::listing_summary`, with the R2
//! `key`) as list metadata, so a listing needs no `get` per key and the retention sweep can tell
//! which archive an entry points at. None gets a KV `expirationTtl`: the retention sweep deletes
//! them together with their archive (`dangling_index_entry`).
//!
//! Crash consistency: the archive key is returned only after all four writes succeeded. A crash
//! after (1) leaves an object nothing points at: unreachable, never half-visible, and deleted by
//! retention once past `archiveRetention` (the sweep judges archives by the time in their key,
//! indexed or not). A crash after (2) or (3) leaves an archive that is retrievable but missing
//! from some listing; the caller saw an error and archives again (a new archive, a new time).
//! Nothing acknowledged is lost, because nothing is acknowledged before the last write.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use super::encryption::{content_nonce, sealed_summary_overhead, ENCRYPTED_CONTENT_TYPE};
use super::index_entries::{
    archive_custom_metadata, read_archive_location, recorded_sha256, ArchiveEntries,
};
use super::log::OpLog;
use super::replica::{is_damage, served_from_replica};
use super::tombstone::ErasureCheck;
use super::DataPersistenceService;
use crate::codec::archive::{
    encode_conversation_without_checksum, listing_entry, read_conversation_input,
    ConversationInput, EncodedArchive, SummaryForm, View, ENCRYPTED_SUMMARY_FIELD,
};
use crate::crypto::aead::NONCE_LEN;
use crate::crypto::envelope;
use crate::crypto::keyring::KeyRing;
use crate::error::{PersistenceError, Result};
use crate::hash::sha256_hex_of_object;
use crate::keys::{
    archive_meta_key, archive_object_key, encrypted_archive_object_key, parse_archive_index_key,
    parse_user_index_key, user_index_prefix, SessionId, UserId, ARCHIVE_INDEX_PREFIX,
};
use crate::platform::MAX_LIST_LIMIT;
use crate::store::{
    Binding, Clock, KvListOptions, KvStore, ObjectPutOptions, ObjectStore, PutOutcome, Rng,
};

/// Content type of archive objects. Not `application/json` with `Content-Encoding: gzip`: HTTP
/// clients (browsers, `fetch`, public-bucket downloads) would then inflate the body on the way,
/// and the bytes a user saves would no longer match the recorded SHA-256.
pub const ARCHIVE_CONTENT_TYPE: &str = "application/gzip";

/// How many archive times are tried when another archive of the same session already holds
/// the key of the current one (same session, same millisecond, different content).
const MAX_KEY_COLLISIONS: u32 = 16;

/// Default page size of `listArchivedConversations` (the spec's TypeScript default).
pub const DEFAULT_LIST_LIMIT: u32 = 20;

/// One page of `listArchivedConversations`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveListing {
    /// Archive summaries, newest first: `{key, sessionId, userId?, archivedAt, messageCount,
    /// duration, topics, rawSize, storedSize, sha256, formatVersion, summary,
    /// summaryTruncated}` (docs/FORMAT.md, "KV listing metadata").
    pub archives: Vec<Value>,
    /// Pass this to the next call to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// True when no page follows. A page may be empty while this is false (KV listings skip
    /// expired keys after paging): follow the cursor.
    pub list_complete: bool,
}

/// Everything written for one archive, computed before the first write.
pub(super) struct ArchivePlan {
    pub object_key: String,
    pub encoded: EncodedArchive,
    pub custom_metadata: BTreeMap<String, String>,
    pub entries: ArchiveEntries,
    pub content_type: &'static str,
}

/// What a retrieval gives of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// The conversation (`retrieveArchivedConversation`, `retrieveArchive`).
    Conversation,
    /// Its messages as UIMessages (`retrieveUIMessages`, `retrieveUIMessagesByKey`).
    UiMessages,
}

impl Shape {
    /// The codec's view of this shape for the archive under `key` (which names it in errors
    /// about its messages).
    pub(super) fn view(self, key: &str) -> View<'_> {
        match self {
            Shape::Conversation => View::Conversation,
            Shape::UiMessages => View::UiMessages(key),
        }
    }
}

/// Where the nonce of an encrypted archive body comes from.
pub(super) enum BodyNonce {
    /// The secure random source: every new archive.
    Random,
    /// The data key, the object key and the body ([`content_nonce`]): an archive encrypted
    /// again after a crash comes out byte for byte the same, so its retry finds its own object.
    DerivedFromContent,
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Archives a conversation (`memory`, a `ConversationMemory`) and its session (`session`, a
    /// `SessionState`), both as JSON text; returns the R2 key of the archive.
    ///
    /// Costs 1 R2 put and 2 KV puts (3 with a `userId`); plus 1 R2 head per key collision;
    /// with a replica bucket, 1 replica put (and 1 KV put when it fails and is queued).
    /// Errors: `INVALID_INPUT` / `INVALID_ID` on bad input and `ARCHIVE_TOO_LARGE`, both before
    /// anything is written; `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN` when a write failed (the
    /// archive may then be partly written but is never acknowledged; see the module docs).
    pub async fn archive_conversation(
        &self,
        memory_json: &str,
        session_json: &str,
    ) -> Result<String> {
        let log = self.begin("archiveConversation");
        // Borrows from the caller's text: the conversation is never copied whole.
        let input = read_conversation_input(memory_json, session_json)?;
        // Read once: the key, the metadata and the index entries must all carry the same time.
        self.archive_input(&log, &input, self.clock.now_ms()).await
    }

    /// Stores a checked conversation as an archive written at `archived_at_ms` (the one clock
    /// reading of the call; the next millisecond when another archive of the session holds
    /// that key): the object, then its record and index entries. The one writer of archives,
    /// whatever shape the caller gave the conversation in; returns the R2 key.
    pub(super) async fn archive_input(
        &self,
        log: &OpLog<'_>,
        input: &ConversationInput<'_>,
        mut archived_at_ms: i64,
    ) -> Result<String> {
        for _ in 0..MAX_KEY_COLLISIONS {
            let encoded = encode_conversation_without_checksum(
                input,
                archived_at_ms,
                self.options.compression_level,
                self.policy.max_archive_size_bytes,
            )?;
            let plan = match self.key_ring() {
                None => self.plan_archive(input, encoded).await?,
                Some(ring) => {
                    self.seal_archive(log, ring, encoded, BodyNonce::Random)
                        .await?
                }
            };
            if self.put_archive_object(log, &plan).await? {
                self.put_archive_entries(log, &plan).await?;
                log.event(
                    "info",
                    "archived",
                    json!({
                        "key": plan.object_key,
                        "rawSize": plan.encoded.metadata.raw_size,
                        "storedSize": plan.encoded.metadata.stored_size,
                    }),
                );
                return Ok(plan.object_key);
            }
            // Another archive of this session holds this millisecond: take the next one.
            archived_at_ms = archived_at_ms.saturating_add(1);
        }
        Err(PersistenceError::StorageUnavailable {
            binding: Binding::R2.name().to_owned(),
            operation: format!("put archive of session {}", input.session_id()),
            reason: format!("{MAX_KEY_COLLISIONS} consecutive archive keys were already taken"),
        })
    }

    /// The plan of the plaintext archive `encoded` (of `input`, without its checksum): its
    /// checksum, every key and metadata.
    async fn plan_archive(
        &self,
        input: &ConversationInput<'_>,
        mut encoded: EncodedArchive,
    ) -> Result<ArchivePlan> {
        let session_id = SessionId::parse(input.session_id())?;
        encoded.metadata.sha256 = sha256_hex_of_object(&encoded.bytes).await;
        let object_key = archive_object_key(&session_id, encoded.metadata.archived_at)?;
        let custom_metadata = archive_custom_metadata(&self.options.hasher, &encoded.metadata)?;
        let entries = ArchiveEntries::new(&self.options.hasher, &object_key, &encoded.metadata)?;
        Ok(ArchivePlan {
            object_key,
            encoded,
            custom_metadata,
            entries,
            content_type: ARCHIVE_CONTENT_TYPE,
        })
    }

    /// The plan of the archive `encoded` (its gzip'd document and metadata) encrypted under its
    /// owner's data key (made on first use): the document sealed under the encrypted archive
    /// key, and the summary encrypted in its metadata record and listing entries. Costs 1 R2
    /// get (and the first time, 1 R2 put).
    pub(super) async fn seal_archive(
        &self,
        log: &OpLog<'_>,
        ring: &KeyRing,
        encoded: EncodedArchive,
        body_nonce: BodyNonce,
    ) -> Result<ArchivePlan> {
        let EncodedArchive {
            bytes: gzipped,
            mut metadata,
        } = encoded;
        let session = SessionId::parse(&metadata.session_id)?;
        let reference = self.key_reference(&session, metadata.user_id.as_deref())?;
        let dek = self.data_key_for_write(log, ring, &reference).await?;
        let object_key = encrypted_archive_object_key(&session, metadata.archived_at)?;
        let nonce = match body_nonce {
            BodyNonce::Random => self.secure_random::<NONCE_LEN>()?,
            BodyNonce::DerivedFromContent => content_nonce(&dek, &object_key, &gzipped),
        };
        let bytes = envelope::seal(
            &dek,
            &reference,
            nonce,
            &object_key,
            session.as_str(),
            &gzipped,
        )
        .await?;
        metadata.sha256 = sha256_hex_of_object(&bytes).await;
        metadata.stored_size = bytes.len() as u64;
        // The listing entry holds as much of the summary as fits once encrypted.
        let form = SummaryForm::Sealed(sealed_summary_overhead(&reference));
        let (mut listing, kept) = listing_entry(&metadata, &object_key, form)?;
        let summary = std::mem::take(&mut metadata.summary);
        let listed = summary.get(..kept).unwrap_or_default();
        let seal = |text| self.seal_summary(&dek, &reference, &object_key, &session, text);
        listing[ENCRYPTED_SUMMARY_FIELD] = Value::String(seal(listed).await?);
        metadata.encrypted_summary = Some(seal(&summary).await?);
        let custom_metadata = archive_custom_metadata(&self.options.hasher, &metadata)?;
        let entries =
            ArchiveEntries::with_listing(&self.options.hasher, &object_key, &metadata, listing)?;
        Ok(ArchivePlan {
            object_key,
            encoded: EncodedArchive { bytes, metadata },
            custom_metadata,
            entries,
            content_type: ENCRYPTED_CONTENT_TYPE,
        })
    }

    /// Writes the archive object if its key is free, then copies it to the replica bucket
    /// (`super::replica`; 1 call more with a replica). `Ok(false)` when another archive (other
    /// bytes) holds the key; `Ok(true)` when ours is stored, including when an earlier attempt
    /// of this same call stored it and only its response was lost.
    pub(super) async fn put_archive_object(
        &self,
        log: &OpLog<'_>,
        plan: &ArchivePlan,
    ) -> Result<bool> {
        let sha256 = &plan.encoded.metadata.sha256;
        let options = ObjectPutOptions {
            custom_metadata: plan.custom_metadata.clone(),
            content_type: Some(plan.content_type.to_owned()),
            content_encoding: None,
            sha256: Some(sha256.clone()),
            only_if_absent: true,
            if_etag_matches: None,
        };
        let (key, bytes) = (&plan.object_key, &plan.encoded.bytes);
        match self.r2_put(log, key, bytes, options.clone()).await? {
            PutOutcome::Stored(_) => {
                self.replicate_put(log, key, bytes, &options).await;
                Ok(true)
            }
            PutOutcome::AlreadyExists | PutOutcome::Changed => {
                let existing = self.r2_head(log, &plan.object_key).await?;
                let ours = existing
                    .as_ref()
                    .and_then(recorded_sha256)
                    .is_some_and(|recorded| recorded.eq_ignore_ascii_case(sha256));
                log.event(
                    "warn",
                    if ours {
                        "archive already stored by an earlier attempt"
                    } else {
                        "archive key taken by another archive of the session"
                    },
                    json!({ "key": plan.object_key }),
                );
                if ours {
                    // The earlier attempt may have stopped before its copy.
                    self.replicate_put(log, key, bytes, &options).await;
                }
                Ok(ours)
            }
        }
    }

    /// Writes the metadata record of a stored archive, then its index entries.
    async fn put_archive_entries(&self, log: &OpLog<'_>, plan: &ArchivePlan) -> Result<()> {
        let entries = &plan.entries;
        self.put_archive_record(log, entries).await?;
        for index_key in &entries.index_keys {
            self.put_index_entry(log, entries, index_key).await?;
        }
        Ok(())
    }

    /// The newest archive of `session_id` as conversation JSON text (the memory's fields plus
    /// `sessionState`), verified against its checksum; `None` when the session has no archive
    /// or its object is gone.
    ///
    /// `None` too when an erasure of its user covers it (`super::tombstone`). Reads archives of
    /// the earlier TypeScript implementation too (plain JSON, no checksum), also when its
    /// object key's time or month differs from the recorded `archivedAt` (`super::legacy`).
    /// Costs 1 KV get and 1 R2 get, 1 R2 head for an archive with a user (its tombstone); for such a legacy archive, 1 R2 list
    /// per candidate month folder (2 at most) and 1 R2 get more. Errors: `INVALID_ID`;
    /// `CHECKSUM_MISMATCH` or `CORRUPT_DATA` when the stored archive is damaged (never wrong
    /// data); `UNSUPPORTED_FORMAT`; `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN`.
    ///
    /// With a replica bucket, an archive whose primary object is missing or fails its checks
    /// is read from the replica (1 or 2 replica gets more), checked against the same
    /// checksum, erasures honoured, and logged (`warn`, "archive served from the replica").
    pub async fn retrieve_archived_conversation(&self, session_id: &str) -> Result<Option<String>> {
        let log = self.begin("retrieveArchivedConversation");
        self.newest_archive_json(&log, session_id, Shape::Conversation)
            .await
    }

    /// The newest archive of `session_id` as JSON text of `shape`, verified (see
    /// [`Self::retrieve_archived_conversation`]); `None` when the session has no archive or its
    /// object is gone.
    pub(super) async fn newest_archive_json(
        &self,
        log: &OpLog<'_>,
        session_id: &str,
        shape: Shape,
    ) -> Result<Option<String>> {
        let session_id = SessionId::parse(session_id)?;
        let Some((fetched, from_replica)) = self.fetch_newest_archive(log, &session_id).await?
        else {
            return Ok(None);
        };
        let key = fetched.key.clone();
        let checks = (fetched.expected_sha256.clone(), fetched.read_limit);
        let mut erasures = ErasureCheck::default();
        let decoded = match self
            .decode_fetched(log, &mut erasures, fetched, &session_id, shape)
            .await
        {
            Err(err) if !from_replica && is_damage(&err) => {
                let found = (key.as_str(), &session_id);
                self.newest_from_replica(log, &mut erasures, found, checks, shape, err)
                    .await?
            }
            Err(err) => return Err(err),
            Ok(decoded) => {
                if from_replica && decoded.is_some() {
                    served_from_replica(log, &key, "NOT_FOUND");
                }
                decoded
            }
        };
        let Some(decoded) = decoded else {
            return Ok(None);
        };
        log.debug(
            "retrieved",
            json!({ "key": key, "formatVersion": decoded.metadata.format_version }),
        );
        Ok(Some(decoded.json))
    }

    /// The replica's copy of the archive `found` (its key and session) whose primary copy
    /// failed its checks with `primary_err`, checked the same way (`checks`: the expected
    /// SHA-256 and read limit); `primary_err` when the replica has none or it fails too.
    async fn newest_from_replica(
        &self,
        log: &OpLog<'_>,
        erasures: &mut ErasureCheck,
        found: (&str, &SessionId),
        checks: (Option<String>, u64),
        shape: Shape,
        primary_err: PersistenceError,
    ) -> Result<Option<crate::codec::archive::DecodedArchiveJson>> {
        let (primary_key, session_id) = found;
        let Some((key, object)) = self.replica_archive_object(log, primary_key).await else {
            return Err(primary_err);
        };
        let (expected_sha256, read_limit) = checks;
        let expected_sha256 = match key == primary_key {
            true => expected_sha256,
            // Its encrypted copy: only its own recorded checksum describes it.
            false => recorded_sha256(&object.meta).map(str::to_owned),
        };
        let replica = FetchedArchive {
            key: key.clone(),
            body: object.body,
            expected_sha256,
            read_limit,
        };
        match self
            .decode_fetched(log, erasures, replica, session_id, shape)
            .await
        {
            Ok(decoded) => {
                served_from_replica(log, &key, primary_err.code());
                Ok(decoded)
            }
            Err(err) => {
                log.event(
                    "warn",
                    "the replica's copy fails its checks too",
                    json!({ "key": key, "code": err.code() }),
                );
                Err(primary_err)
            }
        }
    }

    /// Decodes a fetched archive of `session_id` unless an erasure covers it; checks that it
    /// holds that session.
    async fn decode_fetched(
        &self,
        log: &OpLog<'_>,
        erasures: &mut ErasureCheck,
        fetched: FetchedArchive,
        session_id: &SessionId,
        shape: Shape,
    ) -> Result<Option<crate::codec::archive::DecodedArchiveJson>> {
        let Some(decoded) = self
            .decode_unless_erased(
                log,
                erasures,
                &fetched.key,
                &fetched.body,
                fetched.expected_sha256.as_deref(),
                fetched.read_limit,
                shape.view(&fetched.key),
            )
            .await?
        else {
            return Ok(None);
        };
        drop(fetched.body);
        check_archive_session(&fetched.key, &decoded.metadata.session_id, session_id)?;
        Ok(Some(decoded))
    }

    /// The stored bytes of the newest archive of `session_id` and what to check them against;
    /// `None` when the session has no archive or its object is gone (logged). Costs 1 KV get
    /// and 1 R2 get; for a record of the earlier implementation whose object is not under the
    /// key its `archivedAt` gives, the R2 lists of `find_legacy_archive` and 1 R2 get more.
    /// With a replica bucket, an object missing from the primary is read from the replica
    /// (1 or 2 replica gets); the flag says it was.
    pub(super) async fn fetch_newest_archive(
        &self,
        log: &OpLog<'_>,
        session_id: &SessionId,
    ) -> Result<Option<(FetchedArchive, bool)>> {
        let meta_key = archive_meta_key(session_id);
        let Some(record) = self.kv_get(log, &meta_key).await? else {
            return Ok(None);
        };
        let mut location = read_archive_location(&meta_key, &record.value, session_id)?;
        let mut stored = match self.get_archive_object(log, &location.key).await? {
            Some((key, object)) if key != location.key => {
                // Encrypted since the record was read: only R2's checksum describes it.
                location.key = key;
                location.sha256 = None;
                location.raw_size = self.read_limit(&object.meta, true);
                Some(object)
            }
            found => found.map(|(_, object)| object),
        };
        if let (None, Some(archived_at)) = (&stored, location.legacy_archived_at) {
            let found = self
                .find_legacy_archive(log, session_id, archived_at)
                .await?;
            if let Some(found) = found {
                location.key = found.key;
                stored = self.r2_get(log, &location.key).await?;
            }
        }
        let Some(object) = stored else {
            log.event(
                "warn",
                "archive metadata points at a missing object",
                json!({ "metaKey": meta_key, "key": location.key }),
            );
            let Some((key, object)) = self.replica_archive_object(log, &location.key).await else {
                return Ok(None);
            };
            let expected_sha256 = match key == location.key {
                true => location.sha256,
                false => None,
            };
            let checksummed = expected_sha256.is_some() || recorded_sha256(&object.meta).is_some();
            let fetched = FetchedArchive {
                expected_sha256: expected_sha256
                    .or(recorded_sha256(&object.meta).map(str::to_owned)),
                read_limit: self
                    .read_limit(&object.meta, checksummed)
                    .max(location.raw_size),
                key,
                body: object.body,
            };
            return Ok(Some((fetched, true)));
        };
        let recorded = recorded_sha256(&object.meta).map(str::to_owned);
        if let (Some(ours), Some(r2)) = (&location.sha256, &recorded) {
            if !ours.eq_ignore_ascii_case(r2) {
                log.event(
                    "warn",
                    "archive checksums in KV and R2 disagree; verifying against KV",
                    json!({ "key": location.key, "kv": ours, "r2": r2 }),
                );
            }
        }
        let fetched = FetchedArchive {
            expected_sha256: location.sha256.or(recorded),
            // The checksum is verified before inflating, so a size recorded with it is
            // trusted: an archive stays readable after maxArchiveSize is lowered.
            read_limit: self.policy.max_archive_size_bytes.max(location.raw_size),
            key: location.key,
            body: object.body,
        };
        Ok(Some((fetched, false)))
    }

    /// One page of archive summaries, newest first: of `user_id`'s archives, or of all
    /// archives without one. `limit` is 1..=1000 (the TypeScript default is
    /// [`DEFAULT_LIST_LIMIT`]); `cursor` comes from the previous page.
    ///
    /// Entries an erasure covers (`super::tombstone`) are left out. Costs 1 KV list, whatever
    /// the page holds, and the reading of the page's users' tombstones (`hide_erased`: 1 R2
    /// head for a user's listing); with encryption on, plus 1 R2 get per data
    /// key of the page not yet unwrapped by this service (a user's page: 1 at most; a global
    /// page: one per owner on it). KV listings are eventually consistent:
    /// an archive may take up to ~60 s to appear. Archives of the earlier TypeScript
    /// implementation appear only once indexed (it wrote no index). Errors: `INVALID_INPUT`
    /// (`limit`, `cursor`), `INVALID_ID` (`userId`), `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN`.
    pub async fn list_archived_conversations(
        &self,
        user_id: Option<&str>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<ArchiveListing> {
        let log = self.begin("listArchivedConversations");
        check_page_limit(limit)?;
        if cursor == Some("") {
            return Err(PersistenceError::invalid_input(
                "cursor",
                "must not be empty (omit it for the first page)",
            ));
        }
        let listing_user = user_id
            .map(|user_id| UserId::parse(user_id).map(|user| self.options.hasher.user_key(&user)))
            .transpose()?;
        let prefix = match &listing_user {
            Some(user_key) => user_index_prefix(user_key),
            None => ARCHIVE_INDEX_PREFIX.to_owned(),
        };
        let page = self
            .kv_list(
                &log,
                KvListOptions {
                    prefix: Some(prefix),
                    cursor: cursor.map(str::to_owned),
                    limit: Some(limit),
                },
            )
            .await?;
        let mut archives: Vec<Value> = page
            .keys
            .into_iter()
            .filter_map(|entry| match entry.metadata {
                Some(summary @ Value::Object(_)) => Some(summary),
                // Written without a summary (by hand or a foreign tool): what the key says.
                _ => summary_from_index_key(&entry.name).or_else(|| {
                    log.event(
                        "warn",
                        "skipped an unreadable index entry",
                        json!({ "key": entry.name }),
                    );
                    None
                }),
            })
            .collect();
        let mut erasures = ErasureCheck::default();
        let listing_user = listing_user.as_deref();
        self.hide_erased(&log, &mut erasures, listing_user, &mut archives)
            .await?;
        self.reveal_summaries(&log, &mut archives).await;
        self.hide_unreadable_erased(&erasures, listing_user, &mut archives);
        Ok(ArchiveListing {
            archives,
            cursor: page.cursor.filter(|_| !page.list_complete),
            list_complete: page.list_complete,
        })
    }
}

/// A listing's `limit`: 1..=1000, what one KV list returns at most.
pub(super) fn check_page_limit(limit: u32) -> Result<()> {
    if (1..=MAX_LIST_LIMIT).contains(&limit) {
        return Ok(());
    }
    let max = MAX_LIST_LIMIT.into();
    Err(PersistenceError::not_integer_in("limit", limit, 1, max))
}

/// An archive object as read, before verification.
pub(super) struct FetchedArchive {
    /// Its R2 key.
    pub key: String,
    /// Its stored bytes.
    pub body: Vec<u8>,
    /// The SHA-256 they must have (from KV, else R2); `None` for legacy archives.
    pub expected_sha256: Option<String>,
    /// Largest size it may inflate to.
    pub read_limit: u64,
}

/// `CORRUPT_DATA` naming `key` when a decoded archive holds another session than `expected`.
pub(super) fn check_archive_session(key: &str, found: &str, expected: &SessionId) -> Result<()> {
    if found == expected.as_str() {
        return Ok(());
    }
    Err(PersistenceError::corrupt(
        key,
        format!("holds session {found:?}, not {:?}", expected.as_str()),
    ))
}

/// The little a per-user or global index key says about its archive, for an entry listed
/// without metadata.
fn summary_from_index_key(name: &str) -> Option<Value> {
    let (session_id, archived_at_ms) = match parse_archive_index_key(name) {
        Some(entry) => (entry.session_id, entry.archived_at_ms),
        None => {
            let entry = parse_user_index_key(name)?;
            (entry.session_id, entry.archived_at_ms)
        }
    };
    let key = archive_object_key(&session_id, archived_at_ms).ok()?;
    Some(json!({ "key": key, "sessionId": session_id.as_str(), "archivedAt": archived_at_ms }))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::codec::json_text;

    #[test]
    fn index_keys_without_metadata_still_describe_their_archive() {
        let summary = summary_from_index_key("archive_index:8263842399999:s1").unwrap();
        assert_eq!(
            summary,
            json!({"key": "conversations/2025/01/archive_s1_1736157600000.json.gz",
                   "sessionId": "s1", "archivedAt": 1_736_157_600_000_i64})
        );
        let user = "0".repeat(64);
        let summary =
            summary_from_index_key(&format!("user_archives:{user}:8263842399999:s1")).unwrap();
        assert_eq!(summary["archivedAt"], 1_736_157_600_000_i64);
        assert_eq!(summary_from_index_key("archive_index:x:s1"), None);
    }

    #[test]
    fn listing_json_has_camel_case_fields() {
        let listing = ArchiveListing {
            archives: vec![json!({"sessionId": "s1"})],
            cursor: Some("c1".into()),
            list_complete: false,
        };
        assert_eq!(
            json_text(&listing),
            r#"{"archives":[{"sessionId":"s1"}],"cursor":"c1","listComplete":false}"#
        );
        let last = ArchiveListing {
            archives: vec![],
            cursor: None,
            list_complete: true,
        };
        assert_eq!(json_text(&last), r#"{"archives":[],"listComplete":true}"#);
    }
}
