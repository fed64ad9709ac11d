//! R2 in memory, with R2's limits, checksum and conditional puts, batched deletes and paged
//! listing that returns custom metadata only when asked.

use super::faults::{OperationKind, Refusal};
use super::table::{rejected, Entry, InMemory, Stored};
use crate::hash::sha256_hex;
use crate::platform::{R2_MAX_DELETE_KEYS, R2_MAX_KEY_BYTES, R2_MAX_METADATA_BYTES};
use crate::store::{
    Binding, FailureKind, ListedR2Object, ObjectListOptions, ObjectListPage, ObjectMeta,
    ObjectPutOptions, ObjectStore, PutOutcome, StoreResult, StoredObject,
};

/// An R2 bucket in memory. Clones share the bucket; `uploaded_ms` comes from the clock.
///
/// Models: keys ≤ 1024 bytes, custom metadata ≤ 8192 bytes (`Rejected` otherwise), `sha256`
/// checked against the body (a mismatch is `Transient`, as damage in transit is) and recorded,
/// `only_if_absent`, delete of ≤ 1000 keys a call, `list` in byte order with ≤ 1000 objects a
/// page and custom metadata only with `include_custom_metadata`, and a second write to a key
/// within 1000 ms failing with a transient 429 (switchable, see
/// [`InMemory::set_write_rate_limit`]). Strongly consistent, like R2.
pub type MemoryR2 = InMemory<StoredObject>;

impl Stored for StoredObject {
    const BINDING: Binding = Binding::R2;
    const RATE_LIMITED: &'static str =
        "put: 429 Too Many Requests: reduce your rate of writes to the same object.";
    const ZERO_LIMIT: &'static str =
        "list: MaxKeys params must be positive integer <= 1000. (10022)";

    fn bad_cursor(cursor: &str) -> String {
        format!("list: The cursor {cursor:?} is not valid.")
    }

    fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }
}

/// Why R2 refuses `key`, if it does (R2's own message).
fn check_key(method: &str, key: &str) -> Result<(), Refusal> {
    if key.is_empty() || key.len() > R2_MAX_KEY_BYTES {
        return Err(rejected(format!(
            "{method}: The specified object name is not valid. (10020)"
        )));
    }
    Ok(())
}

/// The SHA-256 a `put` declared, lowercase, once it matched `body`.
fn check_sha256(declared: &str, body: &[u8]) -> Result<String, Refusal> {
    let declared = declared.to_ascii_lowercase();
    if declared.len() != 64 || !declared.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(rejected(format!(
            "put: The SHA-256 checksum {declared:?} is not 64 hex digits."
        )));
    }
    let actual = sha256_hex(body);
    if actual != declared {
        return Err((
            FailureKind::Transient,
            format!(
                "put: The SHA-256 checksum you specified did not match what we received. You provided a SHA-256 checksum with value: {declared} Actual SHA-256 was: {actual} (10037)"
            ),
        ));
    }
    Ok(declared)
}

impl ObjectStore for MemoryR2 {
    async fn get(&self, key: &str) -> StoreResult<Option<StoredObject>> {
        self.call(OperationKind::Get, &format!("get {key}"), |table| {
            check_key("get", key)?;
            Ok(table.entries.get(key).map(|entry| entry.stored.clone()))
        })
    }

    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        self.call(OperationKind::Head, &format!("head {key}"), |table| {
            check_key("head", key)?;
            Ok(table
                .entries
                .get(key)
                .map(|entry| entry.stored.meta.clone()))
        })
    }

    async fn put(
        &self,
        key: &str,
        body: &[u8],
        options: ObjectPutOptions,
    ) -> StoreResult<PutOutcome> {
        let now_ms = self.now_ms();
        self.call(OperationKind::Put, &format!("put {key}"), |table| {
            check_key("put", key)?;
            let metadata = &options.custom_metadata;
            let metadata_bytes: usize = metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
            if metadata_bytes > R2_MAX_METADATA_BYTES {
                return Err(rejected(
                    "put: Your metadata headers exceed the maximum allowed metadata size. (10012)"
                        .to_owned(),
                ));
            }
            let sha256 = options.sha256.as_deref();
            let sha256 = sha256.map(|sha| check_sha256(sha, body)).transpose()?;
            if let Some(etag) = &options.if_etag_matches {
                let current = table.entries.get(key).map(|entry| &entry.stored.meta.etag);
                if current.is_none_or(|current| current.as_ref() != Some(etag)) {
                    return Ok(PutOutcome::Changed);
                }
            } else if options.only_if_absent && table.entries.contains_key(key) {
                return Ok(PutOutcome::AlreadyExists);
            }
            let meta = ObjectMeta {
                key: key.to_owned(),
                size: body.len() as u64,
                uploaded_ms: now_ms,
                custom_metadata: options.custom_metadata,
                sha256,
                // R2's etag of a single-part upload is the body's MD5; any digest of the body
                // behaves the same for conditions.
                etag: Some(sha256_hex(body)[..32].to_owned()),
            };
            let entry = Entry {
                stored: StoredObject {
                    meta: meta.clone(),
                    body: body.to_vec(),
                },
                expiration_s: None,
            };
            table.write(key, entry, now_ms)?;
            Ok(PutOutcome::Stored(meta))
        })
    }

    async fn delete(&self, keys: &[String]) -> StoreResult<()> {
        let target = match keys {
            [] => "delete (no keys)".to_owned(),
            [only] => format!("delete {only}"),
            [first, rest @ ..] => format!("delete {first} and {} more", rest.len()),
        };
        self.call(OperationKind::Delete, &target, |table| {
            if keys.len() > R2_MAX_DELETE_KEYS {
                return Err(rejected(format!(
                    "delete: {} keys in one call; at most {R2_MAX_DELETE_KEYS} are allowed.",
                    keys.len()
                )));
            }
            for key in keys {
                check_key("delete", key)?;
            }
            keys.iter().for_each(|key| table.remove(key));
            Ok(())
        })
    }

    async fn list(&self, options: ObjectListOptions) -> StoreResult<ObjectListPage> {
        let prefix = options.prefix.unwrap_or_default();
        self.call(OperationKind::List, &format!("list {prefix}"), |table| {
            let include = options.include_custom_metadata;
            let (objects, cursor) = table.list(
                &prefix,
                options.cursor.as_deref(),
                options.start_after,
                options.limit,
                |key, entry| ListedR2Object {
                    key: key.clone(),
                    uploaded_ms: entry.stored.meta.uploaded_ms,
                    size: entry.stored.meta.size,
                    custom_metadata: include.then(|| entry.stored.meta.custom_metadata.clone()),
                },
            )?;
            Ok(ObjectListPage {
                objects,
                truncated: cursor.is_some(),
                cursor,
            })
        })
    }
}
