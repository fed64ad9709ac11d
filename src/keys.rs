//! The only place that spells a storage key: validated ids, and every KV and R2 key the library
//! writes, each with a parser for keys that come back from a listing.
//!
//! Ids are checked once, at the boundary, so `/`, `..`, control characters, whitespace and empty
//! strings can never reach a key. Keys that carry a time sort lexicographically in time order:
//! UTC, zero-padded months, and fixed-width (13-digit) millisecond fields.
// Keys and JS values arrive from storage and callers: parsing them must never panic (a panic
// traps the wasm instance).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{PersistenceError, Result};
use crate::hash::to_hex;
use crate::time::utc_year_month;

/// R2 prefix of conversation archives.
pub const ARCHIVE_PREFIX: &str = "conversations/";
/// R2 prefix of backup objects.
pub const BACKUP_PREFIX: &str = "backups/";
/// R2 prefix of the wrapped data keys of encryption at rest (`keys/users/<userKey>.json`,
/// `keys/sessions/<sessionId>.json`).
pub const DATA_KEY_PREFIX: &str = "keys/";
/// R2 prefix of erasure tombstones (`erasures/<userKey>.json`, service::tombstone).
pub const ERASURE_PREFIX: &str = "erasures/";
/// KV prefix of the resume points of unfinished erasures (`erasure:cursor:<userKey>`).
pub const ERASURE_CURSOR_PREFIX: &str = "erasure:cursor:";
/// KV prefix of cached embeddings.
pub const EMBEDDING_PREFIX: &str = "embedding:";
/// KV prefix of cached query results.
pub const QUERY_PREFIX: &str = "query:";
/// KV prefix of archive metadata, one entry per session.
pub const ARCHIVE_META_PREFIX: &str = "archive_meta:";
/// KV prefix of backup manifests.
pub const BACKUP_MANIFEST_PREFIX: &str = "backup_manifest:";
/// KV prefix of the newest-first index of backups (`listBackups`, the backup rotation).
pub const BACKUP_INDEX_PREFIX: &str = "backup_index:";
/// KV prefix of the per-user archive index.
pub const USER_INDEX_PREFIX: &str = "user_archives:";
/// KV prefix of the global archive index (every archive, newest first).
pub const ARCHIVE_INDEX_PREFIX: &str = "archive_index:";
/// KV key and R2 key the health check reads and never writes: a read probe costs no write
/// quota and cannot hit the one-write-a-second limit.
pub const HEALTH_PROBE_KEY: &str = "health_probe";
/// KV key holding where an unfinished retention sweep continues (JSON, service::retention).
pub const RETENTION_CURSOR_KEY: &str = "retention:cursor";
/// KV key of the resume point of a verification pass (`verifyStorage`).
pub const VERIFY_CURSOR_KEY: &str = "verify:cursor";
/// KV key of what verification keeps between runs: the last complete pass and the problems
/// still open (`healthCheck` reads it).
pub const VERIFY_SUMMARY_KEY: &str = "verify:summary";
/// KV key holding where an unfinished indexing of legacy archives continues (JSON,
/// service::migrate). Outside every prefix the retention sweep lists.
pub const LEGACY_INDEX_CURSOR_KEY: &str = "migration:legacy_archives:cursor";
/// KV key holding where an unfinished rebuild of the per-user index continues (JSON,
/// service::reindex). Outside every prefix the retention sweep lists.
pub const USER_REINDEX_CURSOR_KEY: &str = "migration:user_archives:cursor";
/// KV key holding where an unfinished rewrap of the data keys continues (JSON,
/// service::rotation).
pub const KEY_ROTATION_CURSOR_KEY: &str = "encryption:rotation:cursor";
/// KV key recording the KEK every data key was last found wrapped by, after a complete
/// rotation (JSON, service::rotation).
pub const KEY_ROTATION_STATE_KEY: &str = "encryption:rotation:state";
/// KV key holding where an unfinished encryption of plaintext archives continues (JSON,
/// service::encrypt_existing).
pub const ENCRYPT_EXISTING_CURSOR_KEY: &str = "encryption:existing:cursor";
/// KV prefix of the replica queue (`replica_pending:<R2 key>`, service::replica): R2 keys
/// whose copy in the replica bucket may differ from the primary's. Outside every prefix the
/// retention sweep lists.
pub const REPLICA_PENDING_PREFIX: &str = "replica_pending:";
/// KV key holding where an unfinished `syncReplica` run continues (JSON, service::replica).
pub const REPLICA_SYNC_CURSOR_KEY: &str = "replica:cursor";

/// The replica queue entry of the R2 key `object_key`.
pub fn replica_pending_key(object_key: &str) -> String {
    format!("{REPLICA_PENDING_PREFIX}{object_key}")
}

/// The R2 key a replica queue entry names, if `name` is one.
pub fn parse_replica_pending_key(name: &str) -> Option<&str> {
    name.strip_prefix(REPLICA_PENDING_PREFIX)
        .filter(|key| !key.is_empty())
}

/// Longest accepted id, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Latest time a time-bearing key can carry: 2286-11-20T17:46:39.999Z, the last millisecond
/// that fits the 13-digit fields which keep keys in time order.
pub const MAX_KEY_TIME_MS: i64 = 9_999_999_999_999;

/// Width of every millisecond field in a key.
const TIME_DIGITS: usize = 13;
/// Length of a user key: hex of a 32-byte digest.
const USER_KEY_LEN: usize = 64;
/// Longest nonce accepted by [`new_backup_id`], in bytes.
const MAX_BACKUP_NONCE_LEN: usize = 32;

const ARCHIVE_FILE_PREFIX: &str = "archive_";
const ARCHIVE_SUFFIX: &str = ".json.gz";
const LEGACY_ARCHIVE_SUFFIX: &str = ".json";
/// Appended to an archive key for the encrypted archive of the same session and time.
pub const ENCRYPTED_SUFFIX: &str = ".enc";
const BACKUP_DATA_FILE: &str = "data.json.gz";
const LEGACY_BACKUP_DATA_FILE: &str = "data.json";
const BACKUP_MANIFEST_FILE: &str = "manifest.json";
const BACKUP_PACK_PREFIX: &str = "pack-";
/// Suffix of a format 3 pack: plain JSON (its archives are compressed already).
const BACKUP_PACK_SUFFIX: &str = ".json";
const BACKUP_ID_PREFIX: &str = "backup_";

/// Why `value` cannot be an id, or `None` if it can.
fn id_rejection(value: &str) -> Option<&'static str> {
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || b"-_.:@".contains(&byte);
    if value.is_empty() {
        Some("is empty")
    } else if value.len() > MAX_ID_LEN {
        Some("is longer than 128 bytes")
    } else if value.contains('/') {
        Some("contains '/'")
    } else if value.contains("..") {
        Some("contains \"..\"")
    } else if value.chars().any(char::is_control) {
        Some("contains a control character")
    } else if value.chars().any(char::is_whitespace) {
        Some("contains whitespace")
    } else if value.starts_with('.') {
        Some("starts with '.'")
    } else if !value.bytes().all(allowed) {
        Some("contains a character other than ASCII letters, digits and - _ . : @")
    } else {
        None
    }
}

/// Why `value` cannot be a user id, or `None` if it can. User ids are only ever hashed into
/// keys, so any text is allowed (emails with `+`, Auth0's `auth0|…`, non-ASCII names), compared
/// byte for byte (no Unicode normalization), except:
/// - control characters, which have no place in the JSON documents and listings it is copied
///   into;
/// - U+FFFD: JavaScript strings reach wasm as UTF-8, with every lone surrogate replaced by
///   U+FFFD, so two different JS strings would otherwise become the same user.
fn user_id_rejection(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        Some("is empty")
    } else if value.len() > MAX_ID_LEN {
        Some("is longer than 128 bytes")
    } else if value.chars().any(char::is_control) {
        Some("contains a control character")
    } else if value.contains(char::REPLACEMENT_CHARACTER) {
        Some("contains U+FFFD (a lone surrogate in JavaScript)")
    } else {
        None
    }
}

/// Checks `value` with `rejection`; `field` names it in the error, which quotes `value` (cut to
/// 64 characters) only when `quote` is set: a rejected user id stays out of error messages, and
/// so out of whatever logs them.
fn check_id(
    field: &'static str,
    value: &str,
    rejection: impl Fn(&str) -> Option<&'static str>,
    quote: bool,
) -> Result<()> {
    match rejection(value) {
        None => Ok(()),
        Some(reason) => Err(PersistenceError::InvalidId {
            field,
            value: if quote {
                value.chars().take(64).collect()
            } else {
                String::new()
            },
            reason,
        }),
    }
}

/// Defines a validated id newtype; the JSON form is the plain string.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $rejection:ident, $quote:literal, $rules:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Validates `value` as a ", $field, ": ", $rules)]
            #[doc = ""]
            #[doc = concat!("Fails with `INVALID_ID` naming `", $field, "` and the reason.")]
            pub fn parse(value: &str) -> Result<Self> {
                check_id($field, value, $rejection, $quote)?;
                Ok(Self(value.to_owned()))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = PersistenceError;

            fn try_from(value: String) -> Result<Self> {
                check_id($field, &value, $rejection, $quote)?;
                Ok(Self(value))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

id_type!(
    /// A conversation session id, safe to embed in any key.
    SessionId,
    "sessionId",
    id_rejection,
    true,
    "1 to 128 bytes of ASCII letters, digits and `- _ . : @`, not starting with `.` and never containing `..`."
);
id_type!(
    /// A user id. It is only ever hashed into keys (see `hash::KeyHasher::user_key`).
    UserId,
    "userId",
    user_id_rejection,
    false,
    "1 to 128 bytes of any text without control characters or U+FFFD."
);
id_type!(
    /// A backup id, safe to embed in any key.
    BackupId,
    "backupId",
    id_rejection,
    true,
    "1 to 128 bytes of ASCII letters, digits and `- _ . : @`, not starting with `.` and never containing `..`."
);

/// Separator between a session id and a segment number in a segment's session id.
const SEGMENT_SEPARATOR: &str = ":segment-";
/// Digits of a segment number in a segment's session id (so segments sort in order).
const SEGMENT_DIGITS: usize = 6;
/// Largest segment number: [`SEGMENT_DIGITS`] decimal digits.
pub const MAX_SEGMENT_SEQ: u32 = 999_999;

/// The session id under which segment `seq` (1..=[`MAX_SEGMENT_SEQ`]) of `session` is archived:
/// `<sessionId>:segment-<6-digit seq>` (docs/FORMAT.md "Segments"). A segment is an archive of
/// the one kind, so backups, retention and erasure by session id prefix find it.
///
/// Fails with `INVALID_INPUT` naming `seq` out of range, or `sessionId` when it is too long to
/// leave room for the suffix (more than 113 bytes).
pub fn segment_session_id(session: &SessionId, seq: u32) -> Result<SessionId> {
    if !(1..=MAX_SEGMENT_SEQ).contains(&seq) {
        return Err(PersistenceError::invalid_input(
            "seq",
            format!("{seq} is not a segment number (1..={MAX_SEGMENT_SEQ})"),
        ));
    }
    let room = MAX_ID_LEN - SEGMENT_SEPARATOR.len() - SEGMENT_DIGITS;
    if session.as_str().len() > room {
        return Err(PersistenceError::invalid_input(
            "sessionId",
            format!("is longer than {room} bytes, too long to hold segments"),
        ));
    }
    SessionId::parse(&format!(
        "{session}{SEGMENT_SEPARATOR}{seq:0width$}",
        width = SEGMENT_DIGITS
    ))
}

/// The parent session and number of a segment's session id built by [`segment_session_id`];
/// `None` for any other session id.
pub fn parse_segment_session_id(value: &str) -> Option<(&str, u32)> {
    let (parent, digits) = value.rsplit_once(SEGMENT_SEPARATOR)?;
    if parent.is_empty()
        || digits.len() != SEGMENT_DIGITS
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let seq: u32 = digits.parse().ok()?;
    (seq >= 1).then_some((parent, seq))
}

/// Checks that `ms` fits a 13-digit time field; `field` names it in the error.
fn check_key_time(field: &str, ms: i64) -> Result<()> {
    if (0..=MAX_KEY_TIME_MS).contains(&ms) {
        Ok(())
    } else {
        Err(PersistenceError::invalid_input(
            field,
            format!("{ms} ms is outside 0..={MAX_KEY_TIME_MS}, the range storage keys can hold"),
        ))
    }
}

/// Parses a field of exactly [`TIME_DIGITS`] ASCII digits.
fn parse_time_field(text: &str) -> Option<i64> {
    if text.len() == TIME_DIGITS && text.bytes().all(|byte| byte.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

/// Parses an unpadded decimal millisecond value (as the legacy TypeScript keys wrote it).
fn parse_plain_ms(text: &str) -> Option<i64> {
    if !text.is_empty() && text.len() <= TIME_DIGITS && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

/// R2 key of an archive: `conversations/YYYY/MM/archive_<sessionId>_<archivedAtMs>.json.gz`,
/// with the UTC year and zero-padded month of `archived_at_ms`, and the time as 13 digits.
///
/// Fails with `INVALID_INPUT` (field `archivedAt`) outside 0..=[`MAX_KEY_TIME_MS`].
pub fn archive_object_key(session: &SessionId, archived_at_ms: i64) -> Result<String> {
    check_key_time("archivedAt", archived_at_ms)?;
    let (year, month) = utc_year_month("archivedAt", archived_at_ms)?;
    Ok(format!(
        "{ARCHIVE_PREFIX}{year:04}/{month:02}/{ARCHIVE_FILE_PREFIX}{session}_{archived_at_ms:013}{ARCHIVE_SUFFIX}"
    ))
}

/// R2 key of an encrypted archive: [`archive_object_key`] with `.enc` appended. Its own key, so
/// that encrypting a stored plaintext archive writes a new object before the old one goes.
pub fn encrypted_archive_object_key(session: &SessionId, archived_at_ms: i64) -> Result<String> {
    Ok(archive_object_key(session, archived_at_ms)? + ENCRYPTED_SUFFIX)
}

/// R2 key of a user's wrapped data key, `keys/users/<userKey>.json` (`user_key` is the hashed
/// user id, never the raw one).
pub fn user_data_key_object(user_key: &str) -> String {
    format!("{DATA_KEY_PREFIX}{}.json", user_data_key_ref(user_key))
}

/// The reference an encryption header records for a user's data key: `users/<userKey>`.
pub fn user_data_key_ref(user_key: &str) -> String {
    format!("users/{user_key}")
}

/// The reference an encryption header records for the data key of a session without a user:
/// `sessions/<sessionId>`.
pub fn session_data_key_ref(session: &SessionId) -> String {
    format!("sessions/{session}")
}

/// R2 key of the data key a header's reference names: `keys/<reference>.json`; `None` unless
/// the reference is `users/<64 hex digits>` or `sessions/<valid session id>`.
pub fn data_key_object_of_ref(reference: &str) -> Option<String> {
    let valid = match reference.split_once('/')? {
        ("users", user_key) => is_user_key(user_key),
        ("sessions", session) => SessionId::parse(session).is_ok(),
        _ => false,
    };
    valid.then(|| format!("{DATA_KEY_PREFIX}{reference}.json"))
}

/// The reference of a key built by [`data_key_object_of_ref`].
pub fn parse_data_key_object(key: &str) -> Option<&str> {
    let reference = key.strip_prefix(DATA_KEY_PREFIX)?.strip_suffix(".json")?;
    data_key_object_of_ref(reference).map(|_| reference)
}

/// R2 key of the erasure tombstone of a user, `erasures/<userKey>.json` (`user_key` is the
/// hashed user id, never the raw one).
pub fn erasure_tombstone_key(user_key: &str) -> String {
    format!("{ERASURE_PREFIX}{user_key}.json")
}

/// R2 key of the erasure tombstone of a conversation whose segments an erasure deleted,
/// `erasures/conversations/<sessionId>.json`: segments record no user, so restores and imports
/// recognise an erased user's segments by it.
pub fn conversation_tombstone_key(session: &SessionId) -> String {
    format!("{ERASURE_PREFIX}conversations/{session}.json")
}

/// The user key of a key built by [`erasure_tombstone_key`].
pub fn parse_erasure_tombstone_key(key: &str) -> Option<&str> {
    let user_key = key.strip_prefix(ERASURE_PREFIX)?.strip_suffix(".json")?;
    is_user_key(user_key).then_some(user_key)
}

/// KV key of the resume point of an unfinished erasure of a user, `erasure:cursor:<userKey>`.
pub fn erasure_cursor_key(user_key: &str) -> String {
    format!("{ERASURE_CURSOR_PREFIX}{user_key}")
}

/// R2 key the earlier TypeScript implementation used for an archive:
/// `conversations/<year>/<unpadded month>/archive_<sessionId>_<archivedAtMs>.json`, in the
/// month folder of `archived_at_ms`.
///
/// Only needed to find objects written before this library; new archives use
/// [`archive_object_key`]. That implementation read the clock separately for the key's time,
/// for its folder and for the `archivedAt` it recorded, so an object it wrote may be under a
/// slightly different time and, near a month's end, in the neighbouring folder
/// ([`legacy_archive_folders`], [`legacy_archive_search_prefix`]).
pub fn legacy_archive_object_key(session: &SessionId, archived_at_ms: i64) -> Result<String> {
    check_key_time("archivedAt", archived_at_ms)?;
    let (year, month) = utc_year_month("archivedAt", archived_at_ms)?;
    Ok(legacy_key_in_folder(year, month, session, archived_at_ms))
}

/// A legacy archive key in the folder `year`/`month`.
fn legacy_key_in_folder(year: i32, month: u32, session: &SessionId, archived_at_ms: i64) -> String {
    format!(
        "{}{archived_at_ms}{LEGACY_ARCHIVE_SUFFIX}",
        legacy_archive_search_prefix(session, year, month)
    )
}

/// How far from the month of a legacy archive's time its folder may be: the earlier
/// implementation took the folder from another clock reading than the time, milliseconds apart.
const LEGACY_FOLDER_SLACK_MS: i64 = 24 * 60 * 60 * 1000;

/// The month folders `(year, month)` in which the earlier implementation may have stored an
/// archive of a time within milliseconds of `archived_at_ms`: its own month, then the
/// neighbouring one when `archived_at_ms` is within a day of the boundary.
///
/// Fails with `INVALID_INPUT` (field `archivedAt`) outside 0..=[`MAX_KEY_TIME_MS`].
pub fn legacy_archive_folders(archived_at_ms: i64) -> Result<Vec<(i32, u32)>> {
    check_key_time("archivedAt", archived_at_ms)?;
    let mut folders = vec![utc_year_month("archivedAt", archived_at_ms)?];
    for neighbour in [
        archived_at_ms - LEGACY_FOLDER_SLACK_MS,
        archived_at_ms + LEGACY_FOLDER_SLACK_MS,
    ] {
        let folder = utc_year_month("archivedAt", neighbour.clamp(0, MAX_KEY_TIME_MS))?;
        if !folders.contains(&folder) {
            folders.push(folder);
        }
    }
    Ok(folders)
}

/// The R2 prefix of every legacy archive key of `session` in the folder `year`/`month`:
/// `conversations/<year>/<unpadded month>/archive_<sessionId>_`. It also matches sessions
/// whose id continues with `_…`: parse what it lists ([`parse_archive_object_key`]).
pub fn legacy_archive_search_prefix(session: &SessionId, year: i32, month: u32) -> String {
    format!("{ARCHIVE_PREFIX}{year}/{month}/{ARCHIVE_FILE_PREFIX}{session}_")
}

/// What an archive's R2 key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveObjectKey {
    /// The archived session.
    pub session_id: SessionId,
    /// When it was archived, in epoch milliseconds.
    pub archived_at_ms: i64,
    /// Whether the key has the earlier TypeScript implementation's form (plain JSON object).
    pub legacy: bool,
    /// Whether it is an encrypted archive's key ([`encrypted_archive_object_key`]).
    pub encrypted: bool,
}

/// Parses a key built by [`archive_object_key`] or [`legacy_archive_object_key`]; `None` for
/// anything else, including keys whose year or month disagree with the time they carry (for a
/// legacy key: are not one of its [`legacy_archive_folders`]).
pub fn parse_archive_object_key(key: &str) -> Option<ArchiveObjectKey> {
    if let Some(plain) = key.strip_suffix(ENCRYPTED_SUFFIX) {
        let parsed = parse_archive_object_key(plain).filter(|parsed| !parsed.legacy)?;
        return Some(ArchiveObjectKey {
            encrypted: true,
            ..parsed
        });
    }
    let file = key.strip_prefix(ARCHIVE_PREFIX)?.rsplit('/').next()?;
    let (stem, legacy) = match file.strip_suffix(ARCHIVE_SUFFIX) {
        Some(stem) => (stem, false),
        None => (file.strip_suffix(LEGACY_ARCHIVE_SUFFIX)?, true),
    };
    // Session ids may contain '_' but the time cannot, so the last '_' separates them.
    let (session_text, ms_text) = stem.strip_prefix(ARCHIVE_FILE_PREFIX)?.rsplit_once('_')?;
    let archived_at_ms = if legacy {
        parse_plain_ms(ms_text)?
    } else {
        parse_time_field(ms_text)?
    };
    let session_id = SessionId::parse(session_text).ok()?;
    // Rebuilding checks everything else at once: prefix, year, month, padding.
    let matches = if legacy {
        legacy_archive_folders(archived_at_ms)
            .ok()?
            .into_iter()
            .any(|(year, month)| {
                legacy_key_in_folder(year, month, &session_id, archived_at_ms) == key
            })
    } else {
        archive_object_key(&session_id, archived_at_ms).ok()? == key
    };
    matches.then_some(ArchiveObjectKey {
        session_id,
        archived_at_ms,
        legacy,
        encrypted: false,
    })
}

/// KV key of a session's archive metadata: `archive_meta:<sessionId>`.
pub fn archive_meta_key(session: &SessionId) -> String {
    format!("{ARCHIVE_META_PREFIX}{session}")
}

/// The session of a key built by [`archive_meta_key`]; `None` for anything else.
pub fn parse_archive_meta_key(key: &str) -> Option<SessionId> {
    SessionId::parse(key.strip_prefix(ARCHIVE_META_PREFIX)?).ok()
}

/// Whether `user_key` is what `hash::KeyHasher::user_key` returns: 64 lowercase hex digits.
fn is_user_key(user_key: &str) -> bool {
    user_key.len() == USER_KEY_LEN
        && user_key
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// KV prefix under which one user's index entries are listed: `user_archives:<userKey>:`.
pub fn user_index_prefix(user_key: &str) -> String {
    format!("{USER_INDEX_PREFIX}{user_key}:")
}

/// KV key of a per-user index entry, so that one `list({prefix: user_index_prefix(..)})`
/// returns the user's archives newest first:
/// `user_archives:<userKey>:<13-digit (9999999999999 - archivedAtMs)>:<sessionId>`.
///
/// `user_key` is the hashed user id from `hash::KeyHasher::user_key`; raw user ids never appear
/// in keys. Fails with `INVALID_INPUT` on a `userKey` that is not 64 lowercase hex digits or an
/// `archivedAt` outside 0..=[`MAX_KEY_TIME_MS`].
pub fn user_index_key(user_key: &str, archived_at_ms: i64, session: &SessionId) -> Result<String> {
    if !is_user_key(user_key) {
        return Err(PersistenceError::invalid_input(
            "userKey",
            "must be 64 lowercase hex digits (a hashed user id)",
        ));
    }
    check_key_time("archivedAt", archived_at_ms)?;
    let newest_first = MAX_KEY_TIME_MS - archived_at_ms;
    Ok(format!(
        "{}{newest_first:013}:{session}",
        user_index_prefix(user_key)
    ))
}

/// What a per-user index key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIndexKey {
    /// The hashed user id (64 lowercase hex digits).
    pub user_key: String,
    /// When the session was archived, in epoch milliseconds.
    pub archived_at_ms: i64,
    /// The archived session.
    pub session_id: SessionId,
}

/// Parses a key built by [`user_index_key`]; `None` for anything else.
pub fn parse_user_index_key(key: &str) -> Option<UserIndexKey> {
    let rest = key.strip_prefix(USER_INDEX_PREFIX)?;
    let (user_key, rest) = rest.split_once(':')?;
    let (inverted_ms, session_text) = rest.split_once(':')?;
    if !is_user_key(user_key) {
        return None;
    }
    Some(UserIndexKey {
        user_key: user_key.to_owned(),
        archived_at_ms: MAX_KEY_TIME_MS - parse_time_field(inverted_ms)?,
        session_id: SessionId::parse(session_text).ok()?,
    })
}

/// KV key of a global index entry, so that one `list({prefix: ARCHIVE_INDEX_PREFIX})` returns
/// every archive newest first, without a user id:
/// `archive_index:<13-digit (9999999999999 - archivedAtMs)>:<sessionId>`.
///
/// Fails with `INVALID_INPUT` on an `archivedAt` outside 0..=[`MAX_KEY_TIME_MS`].
pub fn archive_index_key(archived_at_ms: i64, session: &SessionId) -> Result<String> {
    check_key_time("archivedAt", archived_at_ms)?;
    let newest_first = MAX_KEY_TIME_MS - archived_at_ms;
    Ok(format!(
        "{ARCHIVE_INDEX_PREFIX}{newest_first:013}:{session}"
    ))
}

/// What a global index key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveIndexKey {
    /// When the session was archived, in epoch milliseconds.
    pub archived_at_ms: i64,
    /// The archived session.
    pub session_id: SessionId,
}

/// Parses a key built by [`archive_index_key`]; `None` for anything else.
pub fn parse_archive_index_key(key: &str) -> Option<ArchiveIndexKey> {
    let (inverted_ms, session_text) = key.strip_prefix(ARCHIVE_INDEX_PREFIX)?.split_once(':')?;
    Some(ArchiveIndexKey {
        archived_at_ms: MAX_KEY_TIME_MS - parse_time_field(inverted_ms)?,
        session_id: SessionId::parse(session_text).ok()?,
    })
}

/// KV key of a cached embedding: `embedding:<hash>`, with the hash from
/// `hash::KeyHasher::embedding_cache_hash`.
pub fn embedding_key(hash_hex: &str) -> String {
    format!("{EMBEDDING_PREFIX}{hash_hex}")
}

/// KV key of a cached query result: `query:<hash>`, with the hash from
/// `hash::KeyHasher::query_cache_hash`.
pub fn query_key(hash_hex: &str) -> String {
    format!("{QUERY_PREFIX}{hash_hex}")
}

/// R2 key of a backup's data bundle: `backups/<backupId>/data.json.gz`.
pub fn backup_data_key(id: &BackupId) -> String {
    format!("{BACKUP_PREFIX}{id}/{BACKUP_DATA_FILE}")
}

/// R2 key of pack `index` of a backup as written today (format 3, plain JSON):
/// `backups/<backupId>/pack-<n>.json`.
pub fn backup_pack_key(id: &BackupId, index: u32) -> String {
    format!("{BACKUP_PREFIX}{id}/{BACKUP_PACK_PREFIX}{index}{BACKUP_PACK_SUFFIX}")
}

/// R2 key of pack `index` of a format 2 backup (gzip'd JSON):
/// `backups/<backupId>/pack-<n>.json.gz`.
pub fn gzip_backup_pack_key(id: &BackupId, index: u32) -> String {
    format!("{BACKUP_PREFIX}{id}/{BACKUP_PACK_PREFIX}{index}{ARCHIVE_SUFFIX}")
}

/// R2 key of a backup's data as the earlier TypeScript implementation wrote it (plain JSON):
/// `backups/<backupId>/data.json`.
pub fn legacy_backup_data_key(id: &BackupId) -> String {
    format!("{BACKUP_PREFIX}{id}/{LEGACY_BACKUP_DATA_FILE}")
}

/// R2 key of a backup's manifest, written last as the backup's commit point:
/// `backups/<backupId>/manifest.json`.
pub fn backup_manifest_object_key(id: &BackupId) -> String {
    format!("{BACKUP_PREFIX}{id}/{BACKUP_MANIFEST_FILE}")
}

/// KV key of a copy of a backup's manifest: `backup_manifest:<backupId>`.
pub fn backup_manifest_kv_key(id: &BackupId) -> String {
    format!("{BACKUP_MANIFEST_PREFIX}{id}")
}

/// The backup of a key built by [`backup_manifest_kv_key`]; `None` for anything else.
pub fn parse_backup_manifest_kv_key(key: &str) -> Option<BackupId> {
    BackupId::parse(key.strip_prefix(BACKUP_MANIFEST_PREFIX)?).ok()
}

/// KV key of a backup's entry in the newest-first index of backups, so that one
/// `list({prefix: "backup_index:"})` returns backups newest first:
/// `backup_index:<13-digit (9999999999999 - createdAtMs)>:<backupId>`. Fails with
/// `INVALID_INPUT` (field `createdAt`) outside 0..=[`MAX_KEY_TIME_MS`].
pub fn backup_index_key(id: &BackupId, created_at_ms: i64) -> Result<String> {
    check_key_time("createdAt", created_at_ms)?;
    let newest_first = MAX_KEY_TIME_MS - created_at_ms;
    Ok(format!("{BACKUP_INDEX_PREFIX}{newest_first:013}:{id}"))
}

/// The backup and creation time of a key built by [`backup_index_key`]; `None` for anything
/// else.
pub fn parse_backup_index_key(key: &str) -> Option<(BackupId, i64)> {
    let (inverted_ms, id) = key.strip_prefix(BACKUP_INDEX_PREFIX)?.split_once(':')?;
    Some((
        BackupId::parse(id).ok()?,
        MAX_KEY_TIME_MS - parse_time_field(inverted_ms)?,
    ))
}

/// Which object of a backup an R2 key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupObjectKind {
    /// `data.json.gz`, the gzip'd data bundle of a format 1 backup.
    Data,
    /// `pack-<n>.json` (format 3) or `pack-<n>.json.gz` (format 2), one pack of a backup.
    Pack(u32),
    /// `data.json`, plain JSON data from the earlier TypeScript implementation.
    LegacyData,
    /// `manifest.json`, the commit point.
    Manifest,
}

/// The `<n>` of `pack-<n>.json` or `pack-<n>.json.gz`: decimal, without leading zeros.
fn parse_pack_index(file: &str) -> Option<u32> {
    let name = file.strip_prefix(BACKUP_PACK_PREFIX)?;
    let digits = name
        .strip_suffix(ARCHIVE_SUFFIX)
        .or_else(|| name.strip_suffix(BACKUP_PACK_SUFFIX))?;
    let index: u32 = digits.parse().ok()?;
    (index.to_string() == digits).then_some(index)
}

/// Parses a key built by [`backup_data_key`], [`backup_pack_key`], [`gzip_backup_pack_key`],
/// [`legacy_backup_data_key`]
/// or [`backup_manifest_object_key`]; `None` for anything else.
pub fn parse_backup_object_key(key: &str) -> Option<(BackupId, BackupObjectKind)> {
    let (id_text, file) = key.strip_prefix(BACKUP_PREFIX)?.split_once('/')?;
    let kind = match file {
        BACKUP_DATA_FILE => BackupObjectKind::Data,
        LEGACY_BACKUP_DATA_FILE => BackupObjectKind::LegacyData,
        BACKUP_MANIFEST_FILE => BackupObjectKind::Manifest,
        _ => BackupObjectKind::Pack(parse_pack_index(file)?),
    };
    Some((BackupId::parse(id_text).ok()?, kind))
}

/// A new backup id from the creation time and caller-supplied entropy (the core has no
/// randomness): `backup_<13-digit createdAtMs>_<hex of nonce>`. Ids sort in creation order.
///
/// Fails with `INVALID_INPUT` on a `createdAt` outside 0..=[`MAX_KEY_TIME_MS`] or a `nonce`
/// that is empty or longer than 32 bytes.
pub fn new_backup_id(created_at_ms: i64, nonce: &[u8]) -> Result<BackupId> {
    check_key_time("createdAt", created_at_ms)?;
    if nonce.is_empty() || nonce.len() > MAX_BACKUP_NONCE_LEN {
        return Err(PersistenceError::invalid_input(
            "nonce",
            format!(
                "must be 1 to {MAX_BACKUP_NONCE_LEN} bytes, got {}",
                nonce.len()
            ),
        ));
    }
    BackupId::parse(&format!(
        "{BACKUP_ID_PREFIX}{created_at_ms:013}_{}",
        to_hex(nonce)
    ))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::platform::{KV_MAX_KEY_BYTES, R2_MAX_KEY_BYTES};

    /// 2025-01-06T10:00:00.123Z
    const JAN_2025: i64 = 1_736_157_600_123;
    const USER_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn session(value: &str) -> SessionId {
        SessionId::parse(value).unwrap()
    }

    #[test]
    fn accepts_ids_of_the_allowed_alphabet() {
        for ok in ["a", "sess-1_x.y:z@host", "A.b", &"x".repeat(128)] {
            assert_eq!(SessionId::parse(ok).unwrap().as_str(), ok);
            assert_eq!(UserId::parse(ok).unwrap().to_string(), ok);
            assert_eq!(String::from(BackupId::parse(ok).unwrap()), ok);
        }
    }

    #[test]
    fn rejects_each_bad_id_class_with_its_reason() {
        let long = "x".repeat(129);
        let cases = [
            ("", "is empty"),
            (long.as_str(), "is longer than 128 bytes"),
            ("a/b", "contains '/'"),
            ("a..b", "contains \"..\""),
            ("..", "contains \"..\""),
            ("a\u{0}b", "contains a control character"),
            ("a\nb", "contains a control character"),
            ("a b", "contains whitespace"),
            ("a\u{3000}b", "contains whitespace"),
            (".hidden", "starts with '.'"),
            (
                "a+b",
                "contains a character other than ASCII letters, digits and - _ . : @",
            ),
            (
                "é",
                "contains a character other than ASCII letters, digits and - _ . : @",
            ),
        ];
        for (value, reason) in cases {
            let err = SessionId::parse(value).unwrap_err();
            assert_eq!(err.code(), "INVALID_ID", "{value:?}");
            assert_eq!(
                err,
                PersistenceError::InvalidId {
                    field: "sessionId",
                    value: value.chars().take(64).collect(),
                    reason,
                }
            );
        }
    }

    #[test]
    fn user_ids_are_only_hashed_so_any_text_without_control_characters_is_one() {
        for ok in [
            "alice+support@example.com",
            "auth0|5f7c8ec7c33c6c004bbafe82",
            "José Núñez",
            "a/b..c",
        ] {
            assert_eq!(UserId::parse(ok).unwrap().as_str(), ok);
            assert!(SessionId::parse(ok).is_err(), "{ok}");
        }
        for (bad, reason) in [
            ("", "is empty"),
            ("a\tb", "contains a control character"),
            ("a\u{85}b", "contains a control character"),
            (
                "x\u{FFFD}",
                "contains U+FFFD (a lone surrogate in JavaScript)",
            ),
        ] {
            let err = UserId::parse(bad).unwrap_err();
            assert_eq!(
                err,
                PersistenceError::InvalidId {
                    field: "userId",
                    value: String::new(),
                    reason,
                }
            );
            assert_eq!(err.to_string(), format!("invalid userId: {reason}"));
        }
        assert!(UserId::parse(&"é".repeat(64)).is_ok());
        assert!(UserId::parse(&"é".repeat(65)).is_err());
    }

    #[test]
    fn errors_name_the_id_field_and_shorten_the_value() {
        let Err(PersistenceError::InvalidId { field, value, .. }) =
            SessionId::parse(&"é".repeat(100))
        else {
            panic!("expected InvalidId");
        };
        assert_eq!(field, "sessionId");
        assert_eq!(value.chars().count(), 64);
        let err = BackupId::parse("a/b").unwrap_err();
        assert!(err.to_string().starts_with("invalid backupId \"a/b\""));
    }

    #[test]
    fn ids_serialize_as_plain_strings_and_validate_on_deserialize() {
        let id = session("s1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"s1\"");
        assert_eq!(serde_json::from_str::<SessionId>("\"s1\"").unwrap(), id);
        let err = serde_json::from_str::<SessionId>("\"../etc\"").unwrap_err();
        assert!(err.to_string().contains("invalid sessionId"), "{err}");
    }

    #[test]
    fn archive_key_uses_utc_padded_month_and_13_digit_time() {
        let key = archive_object_key(&session("s1"), JAN_2025).unwrap();
        assert_eq!(
            key,
            "conversations/2025/01/archive_s1_1736157600123.json.gz"
        );
        // 2025-01-31T23:30:00Z is still January in UTC.
        let key = archive_object_key(&session("s1"), 1_738_366_200_000).unwrap();
        assert_eq!(
            key,
            "conversations/2025/01/archive_s1_1738366200000.json.gz"
        );
        let key = archive_object_key(&session("s1"), 0).unwrap();
        assert_eq!(
            key,
            "conversations/1970/01/archive_s1_0000000000000.json.gz"
        );
    }

    #[test]
    fn archive_key_rejects_times_outside_the_key_range() {
        for bad in [-1, MAX_KEY_TIME_MS + 1, i64::MAX] {
            let err = archive_object_key(&session("s"), bad).unwrap_err();
            assert_eq!(err.code(), "INVALID_INPUT");
            assert!(err.to_string().contains("archivedAt"), "{err}");
        }
    }

    #[test]
    fn data_key_objects_are_named_by_their_reference() {
        let user_key = "ab".repeat(32);
        let object = user_data_key_object(&user_key);
        assert_eq!(object, format!("keys/users/{user_key}.json"));
        assert_eq!(
            data_key_object_of_ref(&user_data_key_ref(&user_key)),
            Some(object.clone())
        );
        assert_eq!(
            parse_data_key_object(&object),
            Some(format!("users/{user_key}").as_str())
        );
        let session_ref = session_data_key_ref(&session("s:1"));
        assert_eq!(
            data_key_object_of_ref(&session_ref).as_deref(),
            Some("keys/sessions/s:1.json")
        );
        for bad in [
            "users/AB",
            "users/../x",
            "sessions/a b",
            "other/x",
            "users",
            "",
        ] {
            assert_eq!(data_key_object_of_ref(bad), None, "{bad}");
        }
        assert_eq!(parse_data_key_object("keys/users/x.json"), None);
    }

    #[test]
    fn parses_current_and_legacy_archive_keys() {
        let parsed =
            parse_archive_object_key("conversations/2025/01/archive_s_1_1736157600123.json.gz")
                .unwrap();
        assert_eq!(
            parsed,
            ArchiveObjectKey {
                session_id: session("s_1"),
                archived_at_ms: JAN_2025,
                legacy: false,
                encrypted: false,
            }
        );
        let encrypted = encrypted_archive_object_key(&session("s_1"), JAN_2025).unwrap();
        assert_eq!(
            encrypted,
            "conversations/2025/01/archive_s_1_1736157600123.json.gz.enc"
        );
        assert_eq!(
            parse_archive_object_key(&encrypted),
            Some(ArchiveObjectKey {
                encrypted: true,
                ..parsed.clone()
            })
        );
        assert_eq!(
            parse_archive_object_key("conversations/2025/1/archive_s_1_1736157600123.json.enc"),
            None
        );
        let legacy =
            parse_archive_object_key("conversations/2025/1/archive_s_1_1736157600123.json")
                .unwrap();
        assert!(legacy.legacy);
        assert_eq!(legacy.archived_at_ms, JAN_2025);
        assert_eq!(
            legacy_archive_object_key(&session("s_1"), JAN_2025).unwrap(),
            "conversations/2025/1/archive_s_1_1736157600123.json"
        );
    }

    #[test]
    fn legacy_folders_add_the_neighbouring_month_within_a_day_of_its_boundary() {
        // 2025-01-31T23:59:59.999Z and 2025-02-01T00:00:00.000Z.
        let (last_jan_ms, first_feb_ms) = (1_738_367_999_999, 1_738_368_000_000);
        assert_eq!(
            legacy_archive_folders(last_jan_ms).unwrap(),
            [(2025, 1), (2025, 2)]
        );
        assert_eq!(
            legacy_archive_folders(first_feb_ms).unwrap(),
            [(2025, 2), (2025, 1)]
        );
        assert_eq!(legacy_archive_folders(JAN_2025).unwrap(), [(2025, 1)]);
        // 2024-12-31T23:00:00Z: the year changes with the month.
        assert_eq!(
            legacy_archive_folders(1_735_686_000_000).unwrap(),
            [(2024, 12), (2025, 1)]
        );
        assert_eq!(legacy_archive_folders(0).unwrap(), [(1970, 1)]);
        assert_eq!(
            legacy_archive_folders(-1).unwrap_err().code(),
            "INVALID_INPUT"
        );
        assert_eq!(
            legacy_archive_search_prefix(&session("s_1"), 2025, 2),
            "conversations/2025/2/archive_s_1_"
        );
    }

    #[test]
    fn a_legacy_key_may_sit_in_the_neighbouring_month_of_its_time() {
        // Written by the earlier implementation a moment after midnight: the folder is
        // February, the time in the key still January's last millisecond.
        let key = "conversations/2025/2/archive_s1_1738367999999.json";
        let parsed = parse_archive_object_key(key).unwrap();
        assert_eq!(parsed.archived_at_ms, 1_738_367_999_999);
        assert!(parsed.legacy);
        // Not for the current form, and not a month further.
        for bad in [
            "conversations/2025/02/archive_s1_1738367999999.json.gz",
            "conversations/2025/3/archive_s1_1738367999999.json",
            "conversations/2025/2/archive_s1_1736157600123.json",
        ] {
            assert_eq!(parse_archive_object_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn rejects_malformed_archive_keys() {
        for bad in [
            "conversations/2025/02/archive_s1_1736157600123.json.gz", // wrong month
            "conversations/2024/01/archive_s1_1736157600123.json.gz", // wrong year
            "conversations/2025/1/archive_s1_1736157600123.json.gz",  // unpadded, gz
            "conversations/2025/01/archive_s1_1736157600123.json",    // padded, legacy
            "conversations/2025/01/archive_s1_736157600123.json.gz",  // short time
            "conversations/2025/01/archive_s1_+736157600123.json.gz",
            "conversations/2025/01/archive__1736157600123.json.gz", // empty session
            "conversations/2025/01/archive_.x_1736157600123.json.gz",
            "conversations/2025/01/x/archive_s1_1736157600123.json.gz",
            "conversations/2025/01/archive_s1_1736157600123.json.gz.bak",
            "conversations/2025/01/other_s1_1736157600123.json.gz",
            "backups/2025/01/archive_s1_1736157600123.json.gz",
            "conversations/",
            "",
        ] {
            assert_eq!(parse_archive_object_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn meta_and_cache_keys() {
        assert_eq!(archive_meta_key(&session("s1")), "archive_meta:s1");
        assert_eq!(
            parse_archive_meta_key("archive_meta:s1"),
            Some(session("s1"))
        );
        assert_eq!(parse_archive_meta_key("archive_meta:a/b"), None);
        assert_eq!(parse_archive_meta_key("query:s1"), None);
        assert_eq!(embedding_key("ab12"), "embedding:ab12");
        assert_eq!(query_key("ab12"), "query:ab12");
    }

    #[test]
    fn user_index_key_inverts_time_for_newest_first() {
        let key = user_index_key(USER_KEY, JAN_2025, &session("s1")).unwrap();
        assert_eq!(key, format!("user_archives:{USER_KEY}:8263842399876:s1"));
        assert!(key.starts_with(&user_index_prefix(USER_KEY)));
        assert_eq!(
            parse_user_index_key(&key),
            Some(UserIndexKey {
                user_key: USER_KEY.to_owned(),
                archived_at_ms: JAN_2025,
                session_id: session("s1"),
            })
        );
        let newer = user_index_key(USER_KEY, JAN_2025 + 1, &session("s0")).unwrap();
        assert!(newer < key);
    }

    #[test]
    fn user_index_key_rejects_raw_user_ids_and_bad_times() {
        for bad_user in ["alice", &USER_KEY.to_uppercase(), &USER_KEY[1..]] {
            let err = user_index_key(bad_user, JAN_2025, &session("s")).unwrap_err();
            assert_eq!(err.code(), "INVALID_INPUT");
            assert!(err.to_string().contains("userKey"), "{err}");
        }
        let err = user_index_key(USER_KEY, -5, &session("s")).unwrap_err();
        assert!(err.to_string().contains("archivedAt"), "{err}");
        for bad in [
            format!("user_archives:{USER_KEY}:826384239987:s1"),
            format!("user_archives:{USER_KEY}:8263842399876:"),
            format!("user_archives:{USER_KEY}:8263842399876:a/b"),
            "user_archives:alice:8263842399876:s1".to_owned(),
            format!("user_archive:{USER_KEY}:8263842399876:s1"),
        ] {
            assert_eq!(parse_user_index_key(&bad), None, "{bad}");
        }
    }

    #[test]
    fn segment_session_ids_name_their_session_and_sort_by_number() {
        let first = segment_session_id(&session("s1"), 1).unwrap();
        assert_eq!(first.as_str(), "s1:segment-000001");
        assert_eq!(parse_segment_session_id(first.as_str()), Some(("s1", 1)));
        let later = segment_session_id(&session("s1"), 12).unwrap();
        assert!(first < later);
        assert_eq!(parse_segment_session_id("s1"), None);
        assert_eq!(parse_segment_session_id("s1:segment-000000"), None);
        assert_eq!(parse_segment_session_id("s1:segment-12"), None);
        let err = segment_session_id(&session("s1"), 0).unwrap_err();
        assert_eq!(
            (err.code(), err.to_string().contains("seq")),
            ("INVALID_INPUT", true)
        );
        let err = segment_session_id(&session("s1"), MAX_SEGMENT_SEQ + 1).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        let long = session(&"a".repeat(114));
        let err = segment_session_id(&long, 1).unwrap_err();
        assert!(err.to_string().contains("sessionId"), "{err}");
        let longest = session(&"a".repeat(113));
        assert_eq!(
            segment_session_id(&longest, MAX_SEGMENT_SEQ)
                .unwrap()
                .as_str()
                .len(),
            MAX_ID_LEN
        );
    }

    #[test]
    fn archive_index_key_inverts_time_for_newest_first() {
        let key = archive_index_key(JAN_2025, &session("s1")).unwrap();
        assert_eq!(key, "archive_index:8263842399876:s1");
        assert!(key.starts_with(ARCHIVE_INDEX_PREFIX));
        assert_eq!(
            parse_archive_index_key(&key),
            Some(ArchiveIndexKey {
                archived_at_ms: JAN_2025,
                session_id: session("s1"),
            })
        );
        // Newer sorts first, whatever the session ids; the same ms falls back to the id.
        let newer = archive_index_key(JAN_2025 + 1, &session("zz")).unwrap();
        assert!(newer < key);
        let sibling = archive_index_key(JAN_2025, &session("s2")).unwrap();
        assert!(key < sibling);
        assert_eq!(
            archive_index_key(0, &session("a")).unwrap(),
            "archive_index:9999999999999:a"
        );
        assert_eq!(
            archive_index_key(MAX_KEY_TIME_MS, &session("a")).unwrap(),
            "archive_index:0000000000000:a"
        );
    }

    #[test]
    fn archive_index_key_rejects_bad_times_and_keys() {
        for ms in [-1, MAX_KEY_TIME_MS + 1] {
            let err = archive_index_key(ms, &session("s")).unwrap_err();
            assert_eq!(err.code(), "INVALID_INPUT");
            assert!(err.to_string().contains("archivedAt"), "{err}");
        }
        for bad in [
            "archive_index:826384239987:s1",
            "archive_index:82638423998761:s1",
            "archive_index:8263842399876:",
            "archive_index:8263842399876:a/b",
            "archive_index:-263842399876:s1",
            "archive_index:8263842399876",
            "archive_indexes:8263842399876:s1",
            &format!("user_archives:{USER_KEY}:8263842399876:s1"),
        ] {
            assert_eq!(parse_archive_index_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn backup_keys_and_parsing() {
        let id = BackupId::parse("b1").unwrap();
        assert_eq!(backup_data_key(&id), "backups/b1/data.json.gz");
        assert_eq!(legacy_backup_data_key(&id), "backups/b1/data.json");
        assert_eq!(backup_manifest_object_key(&id), "backups/b1/manifest.json");
        assert_eq!(backup_manifest_kv_key(&id), "backup_manifest:b1");
        assert_eq!(
            parse_backup_manifest_kv_key("backup_manifest:b1"),
            Some(id.clone())
        );
        assert_eq!(
            parse_backup_object_key("backups/b1/data.json.gz"),
            Some((id.clone(), BackupObjectKind::Data))
        );
        assert_eq!(
            parse_backup_object_key("backups/b1/data.json"),
            Some((id.clone(), BackupObjectKind::LegacyData))
        );
        assert_eq!(
            parse_backup_object_key("backups/b1/manifest.json"),
            Some((id.clone(), BackupObjectKind::Manifest))
        );
        assert_eq!(backup_pack_key(&id, 12), "backups/b1/pack-12.json");
        assert_eq!(gzip_backup_pack_key(&id, 12), "backups/b1/pack-12.json.gz");
        assert_eq!(
            parse_backup_object_key("backups/b1/pack-0.json.gz"),
            Some((id.clone(), BackupObjectKind::Pack(0)))
        );
        assert_eq!(
            parse_backup_object_key("backups/b1/pack-7.json"),
            Some((id, BackupObjectKind::Pack(7)))
        );
        for bad in [
            "backups/b1/pack-.json.gz",
            "backups/b1/pack-01.json.gz",
            "backups/b1/pack-+1.json.gz",
            "backups/b1/pack-4294967296.json.gz",
            "backups/b1/pack-01.json",
            "backups/b1/pack-1.json.gz.json",
            "backups/b1/pack-1",
            "backups/b1/other.json",
            "backups/b1/x/manifest.json",
            "backups//manifest.json",
            "backups/../manifest.json",
            "backup_manifest:b1",
        ] {
            assert_eq!(parse_backup_object_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn backup_index_keys_sort_newest_first_and_parse_back() {
        let backup = |id: &str| BackupId::parse(id).unwrap();
        let old = backup("backup_a");
        let new = backup("backup_b");
        let old_key = backup_index_key(&old, JAN_2025).unwrap();
        let new_key = backup_index_key(&new, JAN_2025 + 1).unwrap();
        assert_eq!(old_key, "backup_index:8263842399876:backup_a");
        assert!(new_key < old_key);
        assert_eq!(parse_backup_index_key(&old_key), Some((old, JAN_2025)));
        assert_eq!(parse_backup_index_key(&new_key), Some((new, JAN_2025 + 1)));
        for bad in [
            "backup_index:826384239987:backup_a",
            "backup_index:8263842399876",
            "backup_index:8263842399876:a/b",
            "backup_manifest:backup_a",
        ] {
            assert_eq!(parse_backup_index_key(bad), None, "{bad}");
        }
        let err = backup_index_key(&backup("b"), -1).unwrap_err();
        assert!(err.to_string().contains("createdAt"), "{err}");
    }

    #[test]
    fn new_backup_ids_carry_padded_time_and_nonce() {
        let id = new_backup_id(JAN_2025, &[0xde, 0xad, 0x01]).unwrap();
        assert_eq!(id.as_str(), "backup_1736157600123_dead01");
        assert_eq!(
            new_backup_id(5, &[0]).unwrap().as_str(),
            "backup_0000000000005_00"
        );
        assert_eq!(new_backup_id(-1, &[0]).unwrap_err().code(), "INVALID_INPUT");
        for bad_nonce in [&[][..], &[7; 33][..]] {
            let err = new_backup_id(JAN_2025, bad_nonce).unwrap_err();
            assert_eq!(err.code(), "INVALID_INPUT");
            assert!(err.to_string().contains("nonce"), "{err}");
        }
        let longest = new_backup_id(MAX_KEY_TIME_MS, &[0xff; 32]).unwrap();
        assert_eq!(longest.as_str().len(), 7 + 13 + 1 + 64);
    }

    #[test]
    fn longest_keys_fit_platform_limits() {
        let id = "x".repeat(MAX_ID_LEN);
        let s = session(&id);
        let b = BackupId::parse(&id).unwrap();
        let r2 = [
            archive_object_key(&s, MAX_KEY_TIME_MS).unwrap(),
            legacy_archive_object_key(&s, MAX_KEY_TIME_MS).unwrap(),
            backup_data_key(&b),
            legacy_backup_data_key(&b),
            backup_manifest_object_key(&b),
        ];
        assert!(r2.iter().all(|key| key.len() <= R2_MAX_KEY_BYTES));
        assert_eq!(r2[0].len(), 22 + 8 + 128 + 1 + 13 + 8);
        let kv = [
            archive_meta_key(&s),
            user_index_key(USER_KEY, 0, &s).unwrap(),
            archive_index_key(0, &s).unwrap(),
            backup_manifest_kv_key(&b),
            backup_index_key(&b, 0).unwrap(),
            embedding_key(USER_KEY),
            query_key(USER_KEY),
        ];
        assert!(kv.iter().all(|key| key.len() <= KV_MAX_KEY_BYTES));
        assert_eq!(kv[1].len(), 14 + 64 + 1 + 13 + 1 + 128);
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))] // proptest runs natively only
mod proptests {
    use proptest::prelude::*;

    use super::*;
    use crate::platform::{KV_MAX_KEY_BYTES, R2_MAX_KEY_BYTES};

    /// Strings near the id alphabet, so both outcomes of `parse` are exercised.
    fn id_like() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9._:@/ -]{0,140}",
            "[a-zA-Z0-9_:@-][a-zA-Z0-9._:@-]{0,127}",
            any::<String>(),
        ]
    }

    fn valid_id() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_:@-][a-zA-Z0-9._:@-]{0,127}".prop_filter("no ..", |id| !id.contains(".."))
    }

    fn key_time() -> impl Strategy<Value = i64> {
        0..=MAX_KEY_TIME_MS
    }

    fn user_key() -> impl Strategy<Value = String> {
        "[0-9a-f]{64}"
    }

    proptest! {
        #[test]
        fn any_string_is_a_round_tripping_id_or_rejected(
            value in id_like(), ms in key_time(), user in user_key()
        ) {
            match SessionId::parse(&value) {
                Ok(id) => {
                    prop_assert!(!value.is_empty() && value.len() <= MAX_ID_LEN);
                    prop_assert!(!value.contains('/') && !value.contains(".."));
                    prop_assert!(!value.starts_with('.'));
                    prop_assert_eq!(id.as_str(), value.as_str());
                    let key = archive_object_key(&id, ms).unwrap();
                    prop_assert_eq!(parse_archive_object_key(&key).unwrap().session_id, id.clone());
                    let key = legacy_archive_object_key(&id, ms).unwrap();
                    prop_assert_eq!(parse_archive_object_key(&key).unwrap().session_id, id.clone());
                    let key = user_index_key(&user, ms, &id).unwrap();
                    prop_assert_eq!(parse_user_index_key(&key).unwrap().session_id, id.clone());
                    prop_assert_eq!(parse_archive_meta_key(&archive_meta_key(&id)), Some(id));
                    let backup = BackupId::parse(&value).unwrap();
                    for key in [backup_data_key(&backup), legacy_backup_data_key(&backup),
                                backup_manifest_object_key(&backup)] {
                        prop_assert_eq!(parse_backup_object_key(&key).unwrap().0, backup.clone());
                    }
                    prop_assert_eq!(
                        parse_backup_manifest_kv_key(&backup_manifest_kv_key(&backup)),
                        Some(backup)
                    );
                }
                Err(err) => {
                    prop_assert_eq!(err.code(), "INVALID_ID");
                    prop_assert!(BackupId::parse(&value).is_err());
                }
            }
        }

        #[test]
        fn a_user_id_is_any_short_text_without_control_characters(value in id_like()) {
            let acceptable = !value.is_empty()
                && value.len() <= MAX_ID_LEN
                && !value.chars().any(|c| c.is_control() || c == '\u{FFFD}');
            match UserId::parse(&value) {
                Ok(id) => {
                    prop_assert!(acceptable);
                    prop_assert_eq!(id.as_str(), value.as_str());
                }
                Err(err) => {
                    prop_assert!(!acceptable);
                    prop_assert_eq!(err.code(), "INVALID_ID");
                    if let PersistenceError::InvalidId { value: quoted, .. } = &err {
                        prop_assert!(quoted.is_empty(), "a rejected user id is never quoted");
                    }
                }
            }
            if SessionId::parse(&value).is_ok() {
                prop_assert!(UserId::parse(&value).is_ok(), "every session id is a user id");
            }
        }

        #[test]
        fn archive_keys_round_trip(id in valid_id(), ms in key_time(), legacy in any::<bool>()) {
            let session = SessionId::parse(&id).unwrap();
            let key = if legacy {
                legacy_archive_object_key(&session, ms)
            } else {
                archive_object_key(&session, ms)
            }.unwrap();
            prop_assert!(key.len() <= R2_MAX_KEY_BYTES);
            prop_assert_eq!(
                parse_archive_object_key(&key),
                Some(ArchiveObjectKey { session_id: session, archived_at_ms: ms, legacy, encrypted: false })
            );
        }

        #[test]
        fn archive_keys_sort_in_time_order(
            a in valid_id(), b in valid_id(), t1 in key_time(), t2 in key_time()
        ) {
            let (early, late) = (t1.min(t2), t1.max(t2));
            let (a, b) = (SessionId::parse(&a).unwrap(), SessionId::parse(&b).unwrap());
            // Same session: total time order.
            prop_assert!(archive_object_key(&a, early).unwrap() <= archive_object_key(&a, late).unwrap());
            // Different sessions: ordered by month.
            if utc_year_month("t", early).unwrap() != utc_year_month("t", late).unwrap() {
                prop_assert!(archive_object_key(&a, early).unwrap() < archive_object_key(&b, late).unwrap());
            }
        }

        #[test]
        fn user_index_keys_round_trip_and_sort_newest_first(
            user in user_key(), a in valid_id(), b in valid_id(), t1 in key_time(), t2 in key_time()
        ) {
            let (a, b) = (SessionId::parse(&a).unwrap(), SessionId::parse(&b).unwrap());
            let key_a = user_index_key(&user, t1, &a).unwrap();
            let key_b = user_index_key(&user, t2, &b).unwrap();
            prop_assert!(key_a.len() <= KV_MAX_KEY_BYTES);
            prop_assert_eq!(
                parse_user_index_key(&key_a),
                Some(UserIndexKey { user_key: user.clone(), archived_at_ms: t1, session_id: a })
            );
            if t1 > t2 {
                prop_assert!(key_a < key_b);
            }
        }

        #[test]
        fn archive_index_keys_round_trip_and_sort_newest_first(
            a in valid_id(), b in valid_id(), t1 in key_time(), t2 in key_time()
        ) {
            let (a, b) = (SessionId::parse(&a).unwrap(), SessionId::parse(&b).unwrap());
            let key_a = archive_index_key(t1, &a).unwrap();
            let key_b = archive_index_key(t2, &b).unwrap();
            prop_assert!(key_a.len() <= KV_MAX_KEY_BYTES);
            prop_assert_eq!(
                parse_archive_index_key(&key_a),
                Some(ArchiveIndexKey { archived_at_ms: t1, session_id: a })
            );
            if t1 > t2 {
                prop_assert!(key_a < key_b);
            }
        }

        #[test]
        fn backup_ids_sort_in_creation_order(
            t1 in key_time(), t2 in key_time(),
            n1 in proptest::collection::vec(any::<u8>(), 1..=32),
            n2 in proptest::collection::vec(any::<u8>(), 1..=32),
        ) {
            let (id1, id2) = (new_backup_id(t1, &n1).unwrap(), new_backup_id(t2, &n2).unwrap());
            if t1 < t2 {
                prop_assert!(id1 < id2);
            }
            let key = backup_manifest_object_key(&id1);
            prop_assert_eq!(parse_backup_object_key(&key), Some((id1, BackupObjectKind::Manifest)));
        }

        #[test]
        fn parsers_never_panic(key in any::<String>()) {
            let _ = parse_archive_object_key(&key);
            let _ = parse_user_index_key(&key);
            let _ = parse_archive_index_key(&key);
            let _ = parse_backup_object_key(&key);
        }
    }
}
