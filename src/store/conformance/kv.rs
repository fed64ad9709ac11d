//! The KV checks.

use serde_json::{json, Value};

use super::{
    all_byte_values, ensure, ensure_eq, pad_key, Check, During, CLOCK_TOLERANCE_MS, MAX_PAGES,
    ORDER_SUFFIXES, ORDER_SUFFIXES_SORTED, PAGINATION_KEYS, SAMPLE_TEXT,
};
use crate::store::{Clock, FailureKind, KvListOptions, KvPutOptions, KvStore, ListedKvKey, Rng};

/// The names of the KV checks, in the order [`run_kv_conformance`](super::run_kv_conformance)
/// runs them.
pub const KV_CHECKS: &[&str] = &[
    "kv.binary_round_trip",
    "kv.text_round_trip",
    "kv.metadata_round_trip",
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

/// Runs check `name` with every key under `scope`.
pub(super) async fn run<K: KvStore, C: Clock + Rng>(
    kv: &K,
    clock: &C,
    scope: &str,
    name: &str,
) -> Check {
    match name {
        "kv.binary_round_trip" => value_round_trip(kv, scope, &all_byte_values()).await,
        "kv.text_round_trip" => value_round_trip(kv, scope, SAMPLE_TEXT.as_bytes()).await,
        "kv.metadata_round_trip" => metadata_round_trip(kv, scope).await,
        "kv.get_missing_is_none" => get_missing_is_none(kv, scope).await,
        "kv.delete_removes_key" => delete_removes_key(kv, scope).await,
        "kv.delete_missing_ok" => kv
            .delete(&format!("{scope}never-written"))
            .await
            .during("delete of a missing key"),
        "kv.list_byte_order" => list_byte_order(kv, scope).await,
        "kv.list_prefix_isolation" => list_prefix_isolation(kv, scope).await,
        "kv.list_pagination" => list_pagination(kv, scope).await,
        "kv.ttl_under_60_rejected" => ttl_under_60_rejected(kv, scope).await,
        "kv.ttl_reported_in_list" => ttl_reported_in_list(kv, clock, scope).await,
        "kv.oversized_key_rejected" => oversized_key_rejected(kv, scope).await,
        "kv.oversized_metadata_rejected" => oversized_metadata_rejected(kv, scope).await,
        unknown => Err(format!("no KV check is called {unknown:?}")),
    }
}

fn plain() -> KvPutOptions {
    KvPutOptions::default()
}

async fn value_round_trip<K: KvStore>(kv: &K, scope: &str, value: &[u8]) -> Check {
    let key = format!("{scope}value");
    kv.put(&key, value, plain()).await.during("put")?;
    let read = kv
        .get(&key)
        .await
        .during("get")?
        .ok_or("get: key not found")?;
    ensure_eq("value read back", read.value.as_slice(), value)?;
    ensure_eq("metadata of a key put without any", read.metadata, None)?;
    kv.delete(&key).await.during("delete")
}

async fn metadata_round_trip<K: KvStore>(kv: &K, scope: &str) -> Check {
    let key = format!("{scope}with-metadata");
    let metadata = json!({
        "sessionId": "s-1",
        "messageCount": 3,
        "archivedAt": 1_700_000_000_000_i64,
        "topics": ["billing", "ä"],
        "nested": {"ok": true, "none": null},
    });
    let options = KvPutOptions {
        expiration_ttl_secs: None,
        metadata: Some(metadata.clone()),
    };
    kv.put(&key, b"v", options).await.during("put")?;
    let read = kv
        .get(&key)
        .await
        .during("get")?
        .ok_or("get: key not found")?;
    ensure_eq("value read back", read.value.as_slice(), b"v".as_slice())?;
    ensure_eq(
        "getWithMetadata metadata",
        read.metadata.as_ref(),
        Some(&metadata),
    )?;
    let listed = list_all(kv, scope).await?;
    ensure_eq(
        "listed keys",
        listed,
        vec![ListedKvKey {
            name: key.clone(),
            expiration_s: None,
            metadata: Some(metadata),
        }],
    )?;
    kv.delete(&key).await.during("delete")
}

async fn get_missing_is_none<K: KvStore>(kv: &K, scope: &str) -> Check {
    let read = kv
        .get(&format!("{scope}never-written"))
        .await
        .during("get")?;
    ensure_eq("get of a missing key", read, None)
}

async fn delete_removes_key<K: KvStore>(kv: &K, scope: &str) -> Check {
    let key = format!("{scope}doomed");
    kv.put(&key, b"x", plain()).await.during("put")?;
    kv.delete(&key).await.during("delete")?;
    ensure_eq("get after delete", kv.get(&key).await.during("get")?, None)?;
    ensure_eq(
        "keys listed after delete",
        list_names(kv, scope).await?,
        Vec::new(),
    )
}

async fn list_byte_order<K: KvStore>(kv: &K, scope: &str) -> Check {
    for suffix in ORDER_SUFFIXES {
        kv.put(&format!("{scope}{suffix}"), suffix.as_bytes(), plain())
            .await
            .during("put")?;
    }
    let expected: Vec<String> = ORDER_SUFFIXES_SORTED
        .iter()
        .map(|suffix| format!("{scope}{suffix}"))
        .collect();
    let page = kv
        .list(KvListOptions {
            prefix: Some(scope.to_owned()),
            ..KvListOptions::default()
        })
        .await
        .during("list")?;
    ensure_eq("list_complete of a 5-key listing", page.list_complete, true)?;
    let names: Vec<String> = page.keys.into_iter().map(|key| key.name).collect();
    ensure_eq("key order", names, expected.clone())?;
    delete_all(kv, &expected).await
}

async fn list_prefix_isolation<K: KvStore>(kv: &K, scope: &str) -> Check {
    let keys: Vec<String> = ["p/1", "p/2", "p2/1", "q/1", "o"]
        .iter()
        .map(|suffix| format!("{scope}{suffix}"))
        .collect();
    for key in &keys {
        kv.put(key, b"x", plain()).await.during("put")?;
    }
    let under = |suffixes: &[&str]| -> Vec<String> {
        suffixes.iter().map(|s| format!("{scope}{s}")).collect()
    };
    ensure_eq(
        "keys under \"p/\"",
        list_names(kv, &format!("{scope}p/")).await?,
        under(&["p/1", "p/2"]),
    )?;
    ensure_eq(
        "keys under \"p\"",
        list_names(kv, &format!("{scope}p")).await?,
        under(&["p/1", "p/2", "p2/1"]),
    )?;
    ensure_eq(
        "keys under \"z\"",
        list_names(kv, &format!("{scope}z")).await?,
        Vec::new(),
    )?;
    delete_all(kv, &keys).await
}

/// Writes more keys than a page holds (with a TTL, so a real namespace cleans itself up), then
/// pages through them with the default limit and with a small one.
async fn list_pagination<K: KvStore>(kv: &K, scope: &str) -> Check {
    let expected: Vec<String> = (0..PAGINATION_KEYS)
        .map(|i| format!("{scope}k{i:05}"))
        .collect();
    let options = KvPutOptions {
        expiration_ttl_secs: Some(3600),
        metadata: None,
    };
    for key in &expected {
        kv.put(key, b"", options.clone()).await.during("put")?;
    }
    for limit in [None, Some(300)] {
        let (keys, pages) = list_pages(kv, scope, limit).await?;
        let names: Vec<String> = keys.into_iter().map(|key| key.name).collect();
        let label = format!("keys listed with limit {limit:?}");
        ensure_eq(&label, names.len(), expected.len())?;
        ensure(names == expected, || {
            format!("{label}: not the written keys in byte order (duplicates or gaps)")
        })?;
        ensure(pages >= 2, || {
            format!("{label}: {pages} page(s) for {PAGINATION_KEYS} keys")
        })?;
    }
    Ok(())
}

async fn ttl_under_60_rejected<K: KvStore>(kv: &K, scope: &str) -> Check {
    let key = format!("{scope}short-lived");
    for ttl in [59, 30] {
        let options = KvPutOptions {
            expiration_ttl_secs: Some(ttl),
            metadata: None,
        };
        match kv.put(&key, b"x", options).await {
            Ok(()) => return Err(format!("put with expirationTtl {ttl} succeeded")),
            Err(err) => ensure_eq(
                &format!("failure kind of expirationTtl {ttl} ({err})"),
                err.kind,
                FailureKind::Rejected,
            )?,
        }
    }
    ensure_eq(
        "get after refused puts",
        kv.get(&key).await.during("get")?,
        None,
    )
}

async fn ttl_reported_in_list<K: KvStore, C: Clock + Rng>(kv: &K, clock: &C, scope: &str) -> Check {
    let key = format!("{scope}expiring");
    let ttl: u64 = 120;
    let before_s = clock.now_ms().div_euclid(1000);
    let options = KvPutOptions {
        expiration_ttl_secs: Some(ttl),
        metadata: None,
    };
    kv.put(&key, b"x", options).await.during("put")?;
    let after_s = clock.now_ms().div_euclid(1000);
    let listed = list_all(kv, scope).await?;
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
    ensure(kv.get(&key).await.during("get")?.is_some(), || {
        "key with a TTL not readable before it expires".to_owned()
    })?;
    kv.delete(&key).await.during("delete")
}

async fn oversized_key_rejected<K: KvStore>(kv: &K, scope: &str) -> Check {
    let too_long = pad_key(scope, 513);
    match kv.put(&too_long, b"x", plain()).await {
        Ok(()) => Err("put of a 513-byte key succeeded".to_owned()),
        Err(err) => ensure_eq(
            &format!("failure kind of a 513-byte key ({err})"),
            err.kind,
            FailureKind::Rejected,
        ),
    }?;
    let long = pad_key(scope, 500);
    kv.put(&long, b"x", plain())
        .await
        .during("put of a 500-byte key")?;
    kv.delete(&long).await.during("delete")
}

async fn oversized_metadata_rejected<K: KvStore>(kv: &K, scope: &str) -> Check {
    let key = format!("{scope}meta");
    let too_big = KvPutOptions {
        expiration_ttl_secs: None,
        metadata: Some(metadata_of_json_length(1025)),
    };
    match kv.put(&key, b"x", too_big).await {
        Ok(()) => Err("put with 1025 bytes of metadata succeeded".to_owned()),
        Err(err) => ensure_eq(
            &format!("failure kind of 1025 bytes of metadata ({err})"),
            err.kind,
            FailureKind::Rejected,
        ),
    }?;
    ensure_eq(
        "get after the refused put",
        kv.get(&key).await.during("get")?,
        None,
    )?;
    let fits = KvPutOptions {
        expiration_ttl_secs: None,
        metadata: Some(metadata_of_json_length(1000)),
    };
    kv.put(&key, b"x", fits)
        .await
        .during("put with 1000 bytes of metadata")?;
    kv.delete(&key).await.during("delete")
}

/// `{"p":"xxx…"}` serializing to exactly `length` bytes (at least 8).
fn metadata_of_json_length(length: usize) -> Value {
    json!({ "p": "x".repeat(length.saturating_sub(8)) })
}

/// Every key under `prefix` (following cursors, each page at most `limit`) and how many pages
/// it took.
async fn list_pages<K: KvStore>(
    kv: &K,
    prefix: &str,
    limit: Option<u32>,
) -> Result<(Vec<ListedKvKey>, usize), String> {
    let mut keys = Vec::new();
    let mut cursor = None;
    let cap = limit.unwrap_or(1000) as usize;
    for pages in 1..=MAX_PAGES {
        let page = kv
            .list(KvListOptions {
                prefix: Some(prefix.to_owned()),
                cursor: cursor.take(),
                limit,
            })
            .await
            .during("list")?;
        ensure(page.keys.len() <= cap, || {
            format!("a page held {} keys, more than {cap}", page.keys.len())
        })?;
        keys.extend(page.keys);
        if page.list_complete {
            return Ok((keys, pages));
        }
        cursor = Some(page.cursor.ok_or("list_complete is false but no cursor")?);
    }
    Err(format!("listing did not complete within {MAX_PAGES} pages"))
}

async fn list_all<K: KvStore>(kv: &K, prefix: &str) -> Result<Vec<ListedKvKey>, String> {
    Ok(list_pages(kv, prefix, None).await?.0)
}

async fn list_names<K: KvStore>(kv: &K, prefix: &str) -> Result<Vec<String>, String> {
    let keys = list_all(kv, prefix).await?;
    Ok(keys.into_iter().map(|key| key.name).collect())
}

async fn delete_all<K: KvStore>(kv: &K, keys: &[String]) -> Check {
    for key in keys {
        kv.delete(key).await.during("delete")?;
    }
    Ok(())
}
