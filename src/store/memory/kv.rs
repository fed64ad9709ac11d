//! Workers KV in memory, with KV's limits, TTL rule, expiry on the virtual clock, byte-ordered
//! paged listing, and its one-write-a-second-per-key rule.

use super::faults::{OperationKind, Refusal};
use super::table::{rejected, Entry, InMemory, Stored};
use crate::platform::{
    KV_MAX_KEY_BYTES, KV_MAX_METADATA_BYTES, KV_MAX_VALUE_BYTES, KV_MIN_EXPIRATION_TTL_SECS,
};
use crate::store::{
    Binding, KvListOptions, KvListPage, KvPutOptions, KvStore, KvValue, ListedKvKey, StoreResult,
};

/// Workers KV in memory. Clones share the namespace.
///
/// Models: keys ≤ 512 bytes (not empty, `.` or `..`), values ≤ 25 MiB, metadata ≤ 1024 bytes of
/// JSON, `expirationTtl` ≥ 60 s (all `Rejected` otherwise), keys with a TTL vanish once the clock
/// passes their expiration, `list` in byte order with ≤ 1000 keys a page, and a second `put`
/// to a key within 1000 ms failing with a transient 429 (switchable, see
/// [`InMemory::set_write_rate_limit`]). Reads see writes at once: KV's ~60 s propagation
/// delay between locations is not modelled.
pub type MemoryKv = InMemory<KvValue>;

impl Stored for KvValue {
    const BINDING: Binding = Binding::Kv;
    const RATE_LIMITED: &'static str = "KV PUT failed: 429 Too Many Requests";
    const ZERO_LIMIT: &'static str = "KV LIST failed: 400 Invalid key_count_limit of 0";

    fn bad_cursor(cursor: &str) -> String {
        format!("KV LIST failed: 400 Invalid cursor {cursor:?}")
    }

    fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.value
    }
}

/// Why KV refuses this `put`, if it does (KV's own messages).
fn check_put(key: &str, value: &[u8], options: &KvPutOptions) -> Result<(), Refusal> {
    check_key("PUT", key)?;
    if let Some(ttl) = options.expiration_ttl_secs {
        if ttl < KV_MIN_EXPIRATION_TTL_SECS {
            return Err(rejected(format!(
                "KV PUT failed: 400 Invalid expiration_ttl of {ttl}. Expiration TTL must be at least {KV_MIN_EXPIRATION_TTL_SECS}."
            )));
        }
    }
    if value.len() > KV_MAX_VALUE_BYTES {
        return Err(rejected(format!(
            "KV PUT failed: 413 Value length of {} exceeds limit of {KV_MAX_VALUE_BYTES}.",
            value.len()
        )));
    }
    if let Some(metadata) = &options.metadata {
        let length = serde_json::to_string(metadata).map_or(usize::MAX, |json| json.len());
        if length > KV_MAX_METADATA_BYTES {
            return Err(rejected(format!(
                "KV PUT failed: 413 Metadata length of {length} exceeds limit of {KV_MAX_METADATA_BYTES}."
            )));
        }
    }
    Ok(())
}

/// Why KV refuses `key`, if it does (workerd's own messages).
fn check_key(method: &str, key: &str) -> Result<(), Refusal> {
    if key.is_empty() {
        return Err(rejected("Key name cannot be empty.".to_owned()));
    }
    if key == "." || key == ".." {
        return Err(rejected(format!("\"{key}\" is not allowed as a key name.")));
    }
    if key.len() > KV_MAX_KEY_BYTES {
        return Err(rejected(format!(
            "KV {method} failed: 414 UTF-8 encoded length of {} exceeds key length limit of {KV_MAX_KEY_BYTES}.",
            key.len()
        )));
    }
    Ok(())
}

impl KvStore for MemoryKv {
    async fn get(&self, key: &str) -> StoreResult<Option<KvValue>> {
        self.call(OperationKind::Get, &format!("get {key}"), |table| {
            check_key("GET", key)?;
            Ok(table.entries.get(key).map(|entry| entry.stored.clone()))
        })
    }

    async fn put(&self, key: &str, value: &[u8], options: KvPutOptions) -> StoreResult<()> {
        let now_ms = self.now_ms();
        self.call(OperationKind::Put, &format!("put {key}"), |table| {
            check_put(key, value, &options)?;
            let now_s = u64::try_from(now_ms.div_euclid(1000)).unwrap_or(0);
            let entry = Entry {
                stored: KvValue {
                    value: value.to_vec(),
                    metadata: options.metadata,
                },
                expiration_s: options
                    .expiration_ttl_secs
                    .map(|ttl| now_s.saturating_add(ttl)),
            };
            table.write(key, entry, now_ms)
        })
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.call(OperationKind::Delete, &format!("delete {key}"), |table| {
            check_key("DELETE", key)?;
            table.remove(key);
            Ok(())
        })
    }

    async fn list(&self, options: KvListOptions) -> StoreResult<KvListPage> {
        let prefix = options.prefix.unwrap_or_default();
        self.call(OperationKind::List, &format!("list {prefix}"), |table| {
            let cursor = options.cursor.as_deref();
            let (keys, cursor) =
                table.list(&prefix, cursor, None, options.limit, |name, entry| {
                    ListedKvKey {
                        name: name.clone(),
                        expiration_s: entry.expiration_s,
                        metadata: entry.stored.metadata.clone(),
                    }
                })?;
            Ok(KvListPage {
                keys,
                list_complete: cursor.is_none(),
                cursor,
            })
        })
    }
}
