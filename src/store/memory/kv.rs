//! Workers KV in memory, with KV's limits, TTL rule, expiry on the virtual clock, byte-ordered
//! paged listing, and its one-write-a-second-per-key rule.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use super::clock::VirtualClock;
use super::faults::{Faults, OperationKind};
use super::paging::{decode_cursor, encode_cursor, page, page_limit};
use crate::store::{
    Binding, Clock, FailureKind, KvListOptions, KvListPage, KvPutOptions, KvStore, KvValue,
    ListedKvKey, StoreError, StoreResult,
};

use crate::platform::{
    KV_MAX_KEY_BYTES, KV_MAX_METADATA_BYTES, KV_MAX_VALUE_BYTES, KV_MIN_EXPIRATION_TTL_SECS,
    SAME_KEY_WRITE_INTERVAL_MS,
};

#[derive(Debug, Clone)]
struct KvEntry {
    value: Vec<u8>,
    metadata: Option<serde_json::Value>,
    expiration_s: Option<u64>,
}

#[derive(Debug)]
struct KvState {
    entries: BTreeMap<String, KvEntry>,
    /// (expiration in epoch seconds, key) of entries with a TTL, soonest first.
    expiries: BTreeSet<(u64, String)>,
    last_put_ms: HashMap<String, i64>,
    write_rate_limit: bool,
}

/// Workers KV in memory. Clones share the namespace; time comes from the shared
/// [`VirtualClock`], faults and call counts from the shared [`Faults`].
///
/// Models: keys ≤ 512 bytes (not empty, `.` or `..`), values ≤ 25 MiB, metadata ≤ 1024 bytes of
/// JSON, `expirationTtl` ≥ 60 s (all `Rejected` otherwise), keys with a TTL vanish once the clock
/// passes their expiration, `list` in byte order with ≤ 1000 keys a page, and a second `put`
/// to a key within 1000 ms failing with a transient 429 (switchable, see
/// [`MemoryKv::set_write_rate_limit`]). Reads see writes at once: KV's ~60 s propagation
/// delay between locations is not modelled.
#[derive(Debug, Clone)]
pub struct MemoryKv {
    state: Rc<RefCell<KvState>>,
    clock: VirtualClock,
    faults: Faults,
}

impl MemoryKv {
    /// An empty namespace reading time from `clock` and faults from `faults`.
    pub fn new(clock: VirtualClock, faults: Faults) -> Self {
        MemoryKv {
            state: Rc::new(RefCell::new(KvState {
                entries: BTreeMap::new(),
                expiries: BTreeSet::new(),
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

    /// Inverts the byte at `position` of the value under `key` (metadata untouched), as storage
    /// damage would. False when there is no such key or byte.
    pub fn corrupt_value(&self, key: &str, position: usize) -> bool {
        let mut state = self.live_state();
        match state
            .entries
            .get_mut(key)
            .and_then(|entry| entry.value.get_mut(position))
        {
            Some(byte) => {
                *byte ^= 0xff;
                true
            }
            None => false,
        }
    }

    /// Every live key with its value and metadata (not a storage call: not counted, never fails).
    pub fn snapshot(&self) -> BTreeMap<String, KvValue> {
        self.live_state()
            .entries
            .iter()
            .map(|(key, entry)| {
                let value = KvValue {
                    value: entry.value.clone(),
                    metadata: entry.metadata.clone(),
                };
                (key.clone(), value)
            })
            .collect()
    }

    /// Every live key in byte order (not a storage call).
    pub fn keys(&self) -> Vec<String> {
        self.live_state().entries.keys().cloned().collect()
    }

    /// The state with every entry whose expiration has passed removed.
    fn live_state(&self) -> std::cell::RefMut<'_, KvState> {
        let now_ms = self.clock.now_ms();
        let mut state = self.state.borrow_mut();
        while let Some((expiration_s, key)) = state.expiries.first().cloned() {
            if now_ms < expiration_ms(expiration_s) {
                break;
            }
            state.expiries.pop_first();
            state.entries.remove(&key);
        }
        state
    }
}

/// Why KV refuses this `put`, if it does (KV's own messages).
fn check_put(key: &str, value: &[u8], options: &KvPutOptions) -> Result<(), String> {
    check_key("PUT", key)?;
    if let Some(ttl) = options.expiration_ttl_secs {
        if ttl < KV_MIN_EXPIRATION_TTL_SECS {
            return Err(format!(
                "KV PUT failed: 400 Invalid expiration_ttl of {ttl}. Expiration TTL must be at least {KV_MIN_EXPIRATION_TTL_SECS}."
            ));
        }
    }
    if value.len() > KV_MAX_VALUE_BYTES {
        return Err(format!(
            "KV PUT failed: 413 Value length of {} exceeds limit of {KV_MAX_VALUE_BYTES}.",
            value.len()
        ));
    }
    if let Some(metadata) = &options.metadata {
        let length = serde_json::to_string(metadata).map_or(usize::MAX, |json| json.len());
        if length > KV_MAX_METADATA_BYTES {
            return Err(format!(
                "KV PUT failed: 413 Metadata length of {length} exceeds limit of {KV_MAX_METADATA_BYTES}."
            ));
        }
    }
    Ok(())
}

/// Why KV refuses `key`, if it does (workerd's own messages).
fn check_key(method: &str, key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("Key name cannot be empty.".to_owned());
    }
    if key == "." || key == ".." {
        return Err(format!("\"{key}\" is not allowed as a key name."));
    }
    if key.len() > KV_MAX_KEY_BYTES {
        return Err(format!(
            "KV {method} failed: 414 UTF-8 encoded length of {} exceeds key length limit of {KV_MAX_KEY_BYTES}.",
            key.len()
        ));
    }
    Ok(())
}

fn expiration_ms(expiration_s: u64) -> i64 {
    i64::try_from(expiration_s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn rejected(target: &str, message: String) -> StoreError {
    StoreError {
        binding: Binding::Kv,
        operation: target.to_owned(),
        kind: FailureKind::Rejected,
        message,
    }
}

impl KvStore for MemoryKv {
    async fn get(&self, key: &str) -> StoreResult<Option<KvValue>> {
        let target = format!("get {key}");
        let admission = self
            .faults
            .admit(Binding::Kv, OperationKind::Get, &target)?;
        let result = check_key("GET", key)
            .map_err(|message| rejected(&target, message))
            .map(|()| {
                self.live_state().entries.get(key).map(|entry| KvValue {
                    value: entry.value.clone(),
                    metadata: entry.metadata.clone(),
                })
            });
        admission.finish(Binding::Kv, &target, result)
    }

    async fn put(&self, key: &str, value: &[u8], options: KvPutOptions) -> StoreResult<()> {
        let target = format!("put {key}");
        let admission = self
            .faults
            .admit(Binding::Kv, OperationKind::Put, &target)?;
        check_put(key, value, &options).map_err(|message| rejected(&target, message))?;
        let now_ms = self.clock.now_ms();
        let mut state = self.live_state();
        if state.write_rate_limit {
            if let Some(last_ms) = state.last_put_ms.get(key) {
                if now_ms.abs_diff(*last_ms) < SAME_KEY_WRITE_INTERVAL_MS {
                    return Err(StoreError {
                        binding: Binding::Kv,
                        operation: target,
                        kind: FailureKind::RateLimited,
                        message: "KV PUT failed: 429 Too Many Requests".to_owned(),
                    });
                }
            }
        }
        let expiration_s = options.expiration_ttl_secs.map(|ttl| {
            u64::try_from(now_ms.div_euclid(1000))
                .unwrap_or(0)
                .saturating_add(ttl)
        });
        if let Some(previous) = state.entries.get(key).and_then(|entry| entry.expiration_s) {
            state.expiries.remove(&(previous, key.to_owned()));
        }
        if let Some(expiration_s) = expiration_s {
            state.expiries.insert((expiration_s, key.to_owned()));
        }
        state.entries.insert(
            key.to_owned(),
            KvEntry {
                value: value.to_vec(),
                metadata: options.metadata,
                expiration_s,
            },
        );
        state.last_put_ms.insert(key.to_owned(), now_ms);
        drop(state);
        admission.finish(Binding::Kv, &target, Ok(()))
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let target = format!("delete {key}");
        let admission = self
            .faults
            .admit(Binding::Kv, OperationKind::Delete, &target)?;
        check_key("DELETE", key).map_err(|message| rejected(&target, message))?;
        let mut state = self.live_state();
        if let Some(expiration_s) = state
            .entries
            .remove(key)
            .and_then(|entry| entry.expiration_s)
        {
            state.expiries.remove(&(expiration_s, key.to_owned()));
        }
        drop(state);
        admission.finish(Binding::Kv, &target, Ok(()))
    }

    async fn list(&self, options: KvListOptions) -> StoreResult<KvListPage> {
        let prefix = options.prefix.unwrap_or_default();
        let target = format!("list {prefix}");
        let admission = self
            .faults
            .admit(Binding::Kv, OperationKind::List, &target)?;
        let limit = page_limit(options.limit).ok_or_else(|| {
            rejected(
                &target,
                "KV LIST failed: 400 Invalid key_count_limit of 0".to_owned(),
            )
        })?;
        let after = match options.cursor.as_deref() {
            Some(cursor) => Some(decode_cursor(cursor).ok_or_else(|| {
                rejected(
                    &target,
                    format!("KV LIST failed: 400 Invalid cursor {cursor:?}"),
                )
            })?),
            None => None,
        };
        let state = self.live_state();
        let (entries, more) = page(&state.entries, &prefix, after.as_deref(), limit);
        let keys: Vec<ListedKvKey> = entries
            .into_iter()
            .map(|(name, entry)| ListedKvKey {
                name: name.clone(),
                expiration_s: entry.expiration_s,
                metadata: entry.metadata.clone(),
            })
            .collect();
        let cursor = if more {
            keys.last().map(|last| encode_cursor(&last.name))
        } else {
            None
        };
        drop(state);
        let listed = KvListPage {
            keys,
            list_complete: !more,
            cursor,
        };
        admission.finish(Binding::Kv, &target, Ok(listed))
    }
}
