//! The KV checks.

use serde_json::{json, Value};

use super::shared::{self, list_keys, list_pages, Listable};
use super::Suite;
use super::{
    all_byte_values, ensure, ensure_eq, expect_failure, pad_key, Check, During, CLOCK_TOLERANCE_MS,
    SAMPLE_TEXT,
};
use crate::store::{
    Clock, FailureKind, KvListOptions, KvPutOptions, KvStore, KvValue, ListedKvKey, Rng,
    StoreResult,
};

/// The names of the KV checks, in the order [`run_conformance`](super::run_conformance) runs
/// them.
pub const KV_CHECKS: &[&str] = &[
    "kv.binary_round_trip",
    "kv.text_round_trip",
    "kv.metadata_round_trip",
    "kv.empty_value_with_metadata",
    "kv.get_missing_is_none",
    "kv.delete_removes_key",
    "kv.delete_missing_ok",
    "kv.list_byte_order",
    "kv.list_prefix_isolation",
    "kv.list_pagination",
    "kv.ttl_under_60_rejected",
    "kv.ttl_reported_in_list",
    "kv.oversized_key_rejected",
    "kv.oversized_metadata_rejected",
];

impl<K: KvStore> Suite for Kv<'_, K> {
    const CHECKS: &'static [&'static str] = KV_CHECKS;

    async fn run<C: Clock + Rng>(&self, clock: &C, scope: &str, name: &str) -> Check {
        let (kv, port) = (self.0, self);
        match name {
            "kv.binary_round_trip" => value_round_trip(kv, scope, &all_byte_values()).await,
            "kv.text_round_trip" => value_round_trip(kv, scope, SAMPLE_TEXT.as_bytes()).await,
            "kv.metadata_round_trip" => {
                let metadata = json!({
                    "sessionId": "s-1",
                    "messageCount": 3,
                    "archivedAt": 1_700_000_000_000_i64,
                    "topics": ["billing", "ä"],
                    "nested": {"ok": true, "none": null},
                });
                metadata_round_trip(port, scope, b"v", metadata).await
            }
            "kv.empty_value_with_metadata" => {
                let metadata = json!({"createdAt": 1_736_157_600_123_i64, "kind": "automated"});
                metadata_round_trip(port, scope, b"", metadata).await
            }
            "kv.get_missing_is_none" => get_missing_is_none(kv, scope).await,
            "kv.delete_removes_key" => delete_removes_key(port, scope).await,
            "kv.delete_missing_ok" => shared::delete_missing_ok(port, scope).await,
            "kv.list_byte_order" => shared::list_byte_order(port, scope).await,
            "kv.list_prefix_isolation" => shared::list_prefix_isolation(port, scope).await,
            // The keys stay behind, with a TTL, so a real namespace cleans itself up.
            "kv.list_pagination" => shared::list_pagination(port, scope, 300).await.map(drop),
            "kv.ttl_under_60_rejected" => ttl_under_60_rejected(kv, scope).await,
            "kv.ttl_reported_in_list" => ttl_reported_in_list(port, clock, scope).await,
            "kv.oversized_key_rejected" => oversized_key_rejected(kv, scope).await,
            "kv.oversized_metadata_rejected" => oversized_metadata_rejected(kv, scope).await,
            unknown => Err(format!("no KV check is called {unknown:?}")),
        }
    }
}

/// The KV checks, over a namespace. The writes of the checks KV and R2 share carry a TTL of an
/// hour here, so a real namespace cleans up after a check that stopped half-way.
pub struct Kv<'a, K>(pub &'a K);

impl<K: KvStore> Listable for Kv<'_, K> {
    type Listed = ListedKvKey;
    const ENTRIES: &'static str = "keys";

    fn key(listed: &ListedKvKey) -> &str {
        &listed.name
    }

    async fn put(&self, key: &str, value: &[u8]) -> Check {
        self.0.put(key, value, with_ttl(3600)).await.during("put")
    }

    async fn page(
        &self,
        prefix: &str,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<(Vec<ListedKvKey>, Option<String>), String> {
        let options = KvListOptions {
            prefix: Some(prefix.to_owned()),
            cursor,
            limit,
        };
        let page = self.0.list(options).await.during("list")?;
        let next = match page.list_complete {
            true => None,
            false => Some(page.cursor.ok_or("list_complete is false but no cursor")?),
        };
        Ok((page.keys, next))
    }

    async fn delete(&self, keys: &[String]) -> StoreResult<()> {
        for key in keys {
            self.0.delete(key).await?;
        }
        Ok(())
    }
}

fn plain() -> KvPutOptions {
    KvPutOptions::default()
}

fn with_ttl(ttl: u64) -> KvPutOptions {
    KvPutOptions {
        expiration_ttl_secs: Some(ttl),
        metadata: None,
    }
}

/// What `get` reads under `key`, which must exist.
async fn read<K: KvStore>(kv: &K, key: &str) -> Result<KvValue, String> {
    let value = kv.get(key).await.during("get")?;
    value.ok_or_else(|| "get: key not found".to_owned())
}

async fn value_round_trip<K: KvStore>(kv: &K, scope: &str, value: &[u8]) -> Check {
    let key = format!("{scope}value");
    kv.put(&key, value, plain()).await.during("put")?;
    let read = read(kv, &key).await?;
    ensure_eq("value read back", read.value.as_slice(), value)?;
    ensure_eq("metadata of a key put without any", read.metadata, None)?;
    kv.delete(&key).await.during("delete")
}

/// A value with list metadata: read back by `get` and listed with its metadata. `value` empty:
/// an entry whose metadata is all it carries (a backup index entry).
async fn metadata_round_trip<K: KvStore>(
    port: &Kv<'_, K>,
    scope: &str,
    value: &[u8],
    metadata: Value,
) -> Check {
    let key = format!("{scope}with-metadata");
    let options = KvPutOptions {
        expiration_ttl_secs: None,
        metadata: Some(metadata.clone()),
    };
    port.0.put(&key, value, options).await.during("put")?;
    let read = read(port.0, &key).await?;
    ensure_eq("value read back", read.value.as_slice(), value)?;
    ensure_eq(
        "getWithMetadata metadata",
        read.metadata.as_ref(),
        Some(&metadata),
    )?;
    let (listed, _) = list_pages(port, scope, None).await?;
    let expected = ListedKvKey {
        name: key.clone(),
        expiration_s: None,
        metadata: Some(metadata),
    };
    ensure_eq("listed keys", listed, vec![expected])?;
    port.0.delete(&key).await.during("delete")
}

async fn get_missing_is_none<K: KvStore>(kv: &K, scope: &str) -> Check {
    let read = kv
        .get(&format!("{scope}never-written"))
        .await
        .during("get")?;
    ensure_eq("get of a missing key", read, None)
}

async fn delete_removes_key<K: KvStore>(port: &Kv<'_, K>, scope: &str) -> Check {
    let key = format!("{scope}doomed");
    port.0.put(&key, b"x", plain()).await.during("put")?;
    port.0.delete(&key).await.during("delete")?;
    let read = port.0.get(&key).await.during("get")?;
    ensure_eq("get after delete", read, None)?;
    let listed = list_keys(port, scope).await?;
    ensure_eq("keys listed after delete", listed, Vec::new())
}

async fn ttl_under_60_rejected<K: KvStore>(kv: &K, scope: &str) -> Check {
    let key = format!("{scope}short-lived");
    for ttl in [59, 30] {
        let outcome = kv.put(&key, b"x", with_ttl(ttl)).await;
        expect_failure(
            &format!("put with expirationTtl {ttl}"),
            outcome,
            FailureKind::Rejected,
        )?;
    }
    let read = kv.get(&key).await.during("get")?;
    ensure_eq("get after refused puts", read, None)
}

async fn ttl_reported_in_list<K: KvStore, C: Clock + Rng>(
    port: &Kv<'_, K>,
    clock: &C,
    scope: &str,
) -> Check {
    let key = format!("{scope}expiring");
    let ttl: u64 = 120;
    let before_s = clock.now_ms().div_euclid(1000);
    port.0.put(&key, b"x", with_ttl(ttl)).await.during("put")?;
    let after_s = clock.now_ms().div_euclid(1000);
    let (listed, _) = list_pages(port, scope, None).await?;
    let [entry] = listed.as_slice() else {
        return Err(format!("expected one listed key, got {listed:?}"));
    };
    let expiration = entry.expiration_s.ok_or("listed key has no expiration")?;
    let tolerance_s = CLOCK_TOLERANCE_MS / 1000;
    let earliest = before_s + ttl as i64 - tolerance_s;
    let latest = after_s + ttl as i64 + tolerance_s;
    ensure(
        i64::try_from(expiration).is_ok_and(|e| (earliest..=latest).contains(&e)),
        || format!("expiration {expiration} s is not within [{earliest}, {latest}]"),
    )?;
    ensure(port.0.get(&key).await.during("get")?.is_some(), || {
        "key with a TTL not readable before it expires".to_owned()
    })?;
    port.0.delete(&key).await.during("delete")
}

async fn oversized_key_rejected<K: KvStore>(kv: &K, scope: &str) -> Check {
    let outcome = kv.put(&pad_key(scope, 513), b"x", plain()).await;
    expect_failure("put of a 513-byte key", outcome, FailureKind::Rejected)?;
    let long = pad_key(scope, 500);
    kv.put(&long, b"x", plain())
        .await
        .during("put of a 500-byte key")?;
    kv.delete(&long).await.during("delete")
}

async fn oversized_metadata_rejected<K: KvStore>(kv: &K, scope: &str) -> Check {
    let key = format!("{scope}meta");
    let with_metadata = |length| KvPutOptions {
        expiration_ttl_secs: None,
        metadata: Some(metadata_of_json_length(length)),
    };
    let outcome = kv.put(&key, b"x", with_metadata(1025)).await;
    expect_failure(
        "put with 1025 bytes of metadata",
        outcome,
        FailureKind::Rejected,
    )?;
    let read = kv.get(&key).await.during("get")?;
    ensure_eq("get after the refused put", read, None)?;
    kv.put(&key, b"x", with_metadata(1000))
        .await
        .during("put with 1000 bytes of metadata")?;
    kv.delete(&key).await.during("delete")
}

/// `{"p":"xxx…"}` serializing to exactly `length` bytes (at least 8).
fn metadata_of_json_length(length: usize) -> Value {
    json!({ "p": "x".repeat(length.saturating_sub(8)) })
}
