//! R2 in memory, with R2's limits, checksum and conditional puts, batched deletes and paged
//! listing that returns custom metadata only when asked.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use super::clock::VirtualClock;
use super::faults::{Faults, OperationKind};
use super::paging::{decode_cursor, encode_cursor, page, page_limit};
use crate::hash::sha256_hex;
use crate::store::{
    Binding, Clock, FailureKind, ListedR2Object, ObjectListOptions, ObjectListPage, ObjectMeta,
    ObjectPutOptions, ObjectStore, PutOutcome, StoreError, StoreResult, StoredObject,
};

use crate::platform::{
    R2_MAX_DELETE_KEYS, R2_MAX_KEY_BYTES, R2_MAX_METADATA_BYTES, SAME_KEY_WRITE_INTERVAL_MS,
};

#[derive(Debug, Clone)]
struct R2Entry {
    body: Vec<u8>,
    meta: ObjectMeta,
}

#[derive(Debug)]
struct R2State {
    objects: BTreeMap<String, R2Entry>,
    last_put_ms: HashMap<String, i64>,
    write_rate_limit: bool,
}

/// An R2 bucket in memory. Clones share the bucket; `uploaded_ms` comes from the shared
/// [`VirtualClock`], faults and call counts from the shared [`Faults`].
///
/// Models: keys ≤ 1024 bytes, custom metadata ≤ 8192 bytes (`Rejected` otherwise), `sha256`
/// checked against the body (a mismatch is `Transient`, as damage in transit is) and recorded,
/// `only_if_absent`, delete of ≤ 1000 keys a call, `list` in byte order with ≤ 1000 objects a
/// page and custom metadata only with `include_custom_metadata`, and a second write to a key
/// within 1000 ms failing with a transient 429 (switchable, see
/// [`MemoryR2::set_write_rate_limit`]). Strongly consistent, like R2.
#[derive(Debug, Clone)]
pub struct MemoryR2 {
    state: Rc<RefCell<R2State>>,
    clock: VirtualClock,
    faults: Faults,
}

impl MemoryR2 {
    /// An empty bucket reading time from `clock` and faults from `faults`.
    pub fn new(clock: VirtualClock, faults: Faults) -> Self {
        MemoryR2 {
            state: Rc::new(RefCell::new(R2State {
                objects: BTreeMap::new(),
                last_put_ms: HashMap::new(),
                write_rate_limit: true,
            })),
            clock,
            faults,
        }
    }

    /// Turns the one-write-a-second-per-key rule on (the default) or off.
    pub fn set_write_rate_limit(&self, enabled: bool) {
        self.state.borrow_mut().write_rate_limit = enabled;
    }

    /// Inverts the byte at `position` of the body under `key`, leaving its size, recorded
    /// SHA-256 and custom metadata as they were, as storage damage would. False when there is
    /// no such object or byte.
    pub fn corrupt_body(&self, key: &str, position: usize) -> bool {
        let mut state = self.state.borrow_mut();
        match state
            .objects
            .get_mut(key)
            .and_then(|entry| entry.body.get_mut(position))
        {
            Some(byte) => {
                *byte ^= 0xff;
                true
            }
            None => false,
        }
    }

    /// Every object with its body and metadata (not a storage call: not counted, never fails).
    pub fn snapshot(&self) -> BTreeMap<String, StoredObject> {
        self.state
            .borrow()
            .objects
            .iter()
            .map(|(key, entry)| {
                let object = StoredObject {
                    meta: entry.meta.clone(),
                    body: entry.body.clone(),
                };
                (key.clone(), object)
            })
            .collect()
    }

    /// Every key in byte order (not a storage call).
    pub fn keys(&self) -> Vec<String> {
        self.state.borrow().objects.keys().cloned().collect()
    }

    /// The `put` itself, once the call was admitted; `target` names it in errors.
    fn store_object(
        &self,
        target: &str,
        key: &str,
        body: &[u8],
        options: ObjectPutOptions,
    ) -> StoreResult<PutOutcome> {
        check_key("put", key).map_err(|message| rejected(target, message))?;
        let metadata_bytes: usize = options
            .custom_metadata
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        if metadata_bytes > R2_MAX_METADATA_BYTES {
            return Err(rejected(
                target,
                "put: Your metadata headers exceed the maximum allowed metadata size. (10012)"
                    .to_owned(),
            ));
        }
        let sha256 = match options.sha256 {
            Some(declared) => {
                let declared = declared.to_ascii_lowercase();
                if declared.len() != 64 || !declared.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(rejected(
                        target,
                        format!("put: The SHA-256 checksum {declared:?} is not 64 hex digits."),
                    ));
                }
                let actual = sha256_hex(body);
                if actual != declared {
                    return Err(StoreError {
                        binding: Binding::R2,
                        operation: target.to_owned(),
                        kind: FailureKind::Transient,
                        message: format!(
                            "put: The SHA-256 checksum you specified did not match what we received. You provided a SHA-256 checksum with value: {declared} Actual SHA-256 was: {actual} (10037)"
                        ),
                    });
                }
                Some(declared)
            }
            None => None,
        };
        let now_ms = self.clock.now_ms();
        let mut state = self.state.borrow_mut();
        if options.only_if_absent && state.objects.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        if state.write_rate_limit {
            if let Some(last_ms) = state.last_put_ms.get(key) {
                if now_ms.abs_diff(*last_ms) < SAME_KEY_WRITE_INTERVAL_MS {
                    return Err(StoreError {
                        binding: Binding::R2,
                        operation: target.to_owned(),
                        kind: FailureKind::RateLimited,
                        message: "put: 429 Too Many Requests: reduce your rate of writes to the same object."
                            .to_owned(),
                    });
                }
            }
        }
        let meta = ObjectMeta {
            key: key.to_owned(),
            size: body.len() as u64,
            uploaded_ms: now_ms,
            custom_metadata: options.custom_metadata,
            sha256,
        };
        state.objects.insert(
            key.to_owned(),
            R2Entry {
                body: body.to_vec(),
                meta: meta.clone(),
            },
        );
        state.last_put_ms.insert(key.to_owned(), now_ms);
        Ok(PutOutcome::Stored(meta))
    }
}

/// Why R2 refuses `key`, if it does (R2's own message).
fn check_key(method: &str, key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > R2_MAX_KEY_BYTES {
        return Err(format!(
            "{method}: The specified object name is not valid. (10020)"
        ));
    }
    Ok(())
}

fn rejected(target: &str, message: String) -> StoreError {
    StoreError {
        binding: Binding::R2,
        operation: target.to_owned(),
        kind: FailureKind::Rejected,
        message,
    }
}

impl ObjectStore for MemoryR2 {
    async fn get(&self, key: &str) -> StoreResult<Option<StoredObject>> {
        let target = format!("get {key}");
        let admission = self
            .faults
            .admit(Binding::R2, OperationKind::Get, &target)?;
        let result = check_key("get", key)
            .map_err(|message| rejected(&target, message))
            .map(|()| {
                self.state
                    .borrow()
                    .objects
                    .get(key)
                    .map(|entry| StoredObject {
                        meta: entry.meta.clone(),
                        body: entry.body.clone(),
                    })
            });
        admission.finish(Binding::R2, &target, result)
    }

    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        let target = format!("head {key}");
        let admission = self
            .faults
            .admit(Binding::R2, OperationKind::Head, &target)?;
        let result = check_key("head", key)
            .map_err(|message| rejected(&target, message))
            .map(|()| {
                self.state
                    .borrow()
                    .objects
                    .get(key)
                    .map(|entry| entry.meta.clone())
            });
        admission.finish(Binding::R2, &target, result)
    }

    async fn put(
        &self,
        key: &str,
        body: &[u8],
        options: ObjectPutOptions,
    ) -> StoreResult<PutOutcome> {
        let target = format!("put {key}");
        let admission = self
            .faults
            .admit(Binding::R2, OperationKind::Put, &target)?;
        let result = self.store_object(&target, key, body, options);
        admission.finish(Binding::R2, &target, result)
    }

    async fn delete(&self, keys: &[String]) -> StoreResult<()> {
        let target = match keys {
            [] => "delete (no keys)".to_owned(),
            [only] => format!("delete {only}"),
            [first, rest @ ..] => format!("delete {first} and {} more", rest.len()),
        };
        let admission = self
            .faults
            .admit(Binding::R2, OperationKind::Delete, &target)?;
        if keys.len() > R2_MAX_DELETE_KEYS {
            return Err(rejected(
                &target,
                format!(
                    "delete: {} keys in one call; at most {R2_MAX_DELETE_KEYS} are allowed.",
                    keys.len()
                ),
            ));
        }
        for key in keys {
            check_key("delete", key).map_err(|message| rejected(&target, message))?;
        }
        let mut state = self.state.borrow_mut();
        for key in keys {
            state.objects.remove(key);
        }
        drop(state);
        admission.finish(Binding::R2, &target, Ok(()))
    }

    async fn list(&self, options: ObjectListOptions) -> StoreResult<ObjectListPage> {
        let prefix = options.prefix.unwrap_or_default();
        let target = format!("list {prefix}");
        let admission = self
            .faults
            .admit(Binding::R2, OperationKind::List, &target)?;
        let limit = page_limit(options.limit).ok_or_else(|| {
            rejected(
                &target,
                "list: MaxKeys params must be positive integer <= 1000. (10022)".to_owned(),
            )
        })?;
        let from_cursor = match options.cursor.as_deref() {
            Some(cursor) => Some(decode_cursor(cursor).ok_or_else(|| {
                rejected(
                    &target,
                    format!("list: The cursor {cursor:?} is not valid."),
                )
            })?),
            None => None,
        };
        let after = from_cursor.max(options.start_after);
        let state = self.state.borrow();
        let (entries, truncated) = page(&state.objects, &prefix, after.as_deref(), limit);
        let objects: Vec<ListedR2Object> = entries
            .into_iter()
            .map(|(key, entry)| ListedR2Object {
                key: key.clone(),
                uploaded_ms: entry.meta.uploaded_ms,
                size: entry.meta.size,
                custom_metadata: options
                    .include_custom_metadata
                    .then(|| entry.meta.custom_metadata.clone()),
            })
            .collect();
        let cursor = if truncated {
            objects.last().map(|last| encode_cursor(&last.key))
        } else {
            None
        };
        drop(state);
        let listed = ObjectListPage {
            objects,
            truncated,
            cursor,
        };
        admission.finish(Binding::R2, &target, Ok(listed))
    }
}
