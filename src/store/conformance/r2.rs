//! The R2 checks.

use std::collections::BTreeMap;

use super::{
    all_byte_values, ensure, ensure_eq, pad_key, Check, During, CLOCK_TOLERANCE_MS, MAX_PAGES,
    ORDER_SUFFIXES, ORDER_SUFFIXES_SORTED, PAGINATION_KEYS, SAMPLE_TEXT,
};
use crate::hash::sha256_hex;
use crate::store::{
    Clock, FailureKind, ListedR2Object, ObjectListOptions, ObjectMeta, ObjectPutOptions,
    ObjectStore, PutOutcome, Rng,
};

/// The names of the R2 checks, in the order [`run_r2_conformance`](super::run_r2_conformance)
/// runs them.
pub const R2_CHECKS: &[&str] = &[
    "r2.binary_round_trip",
    "r2.text_round_trip",
    "r2.head_matches_put",
    "r2.get_and_head_missing_are_none",
    "r2.sha256_recorded",
    "r2.sha256_mismatch_rejected",
    "r2.only_if_absent",
    "r2.delete_many",
    "r2.delete_missing_ok",
    "r2.list_byte_order",
    "r2.list_prefix_isolation",
    "r2.list_start_after",
    "r2.list_custom_metadata_only_with_include",
    "r2.list_pagination",
    "r2.uploaded_ms_plausible",
    "r2.oversized_key_rejected",
    "r2.oversized_metadata_rejected",
];

/// Runs check `name` with every key under `scope`.
pub(super) async fn run<R: ObjectStore, C: Clock + Rng>(
    r2: &R,
    clock: &C,
    scope: &str,
    name: &str,
) -> Check {
    match name {
        "r2.binary_round_trip" => body_round_trip(r2, scope, &all_byte_values()).await,
        "r2.text_round_trip" => body_round_trip(r2, scope, SAMPLE_TEXT.as_bytes()).await,
        "r2.head_matches_put" => head_matches_put(r2, scope).await,
        "r2.get_and_head_missing_are_none" => get_and_head_missing_are_none(r2, scope).await,
        "r2.sha256_recorded" => sha256_recorded(r2, scope).await,
        "r2.sha256_mismatch_rejected" => sha256_mismatch_rejected(r2, scope).await,
        "r2.only_if_absent" => only_if_absent(r2, scope).await,
        "r2.delete_many" => delete_many(r2, scope).await,
        "r2.delete_missing_ok" => r2
            .delete(&[format!("{scope}never-written")])
            .await
            .during("delete of a missing key"),
        "r2.list_byte_order" => list_byte_order(r2, scope).await,
        "r2.list_prefix_isolation" => list_prefix_isolation(r2, scope).await,
        "r2.list_start_after" => list_start_after(r2, scope).await,
        "r2.list_custom_metadata_only_with_include" => {
            list_custom_metadata_only_with_include(r2, scope).await
        }
        "r2.list_pagination" => list_pagination(r2, scope).await,
        "r2.uploaded_ms_plausible" => uploaded_ms_plausible(r2, clock, scope).await,
        "r2.oversized_key_rejected" => oversized_key_rejected(r2, scope).await,
        "r2.oversized_metadata_rejected" => oversized_metadata_rejected(r2, scope).await,
        unknown => Err(format!("no R2 check is called {unknown:?}")),
    }
}

fn sample_metadata() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("sessionId".to_owned(), "s-1".to_owned()),
        ("messageCount".to_owned(), "3".to_owned()),
    ])
}

fn with_metadata(custom_metadata: BTreeMap<String, String>) -> ObjectPutOptions {
    ObjectPutOptions {
        custom_metadata,
        ..ObjectPutOptions::default()
    }
}

/// The metadata of a put that must have stored its object.
fn stored(outcome: PutOutcome, step: &str) -> Result<ObjectMeta, String> {
    match outcome {
        PutOutcome::Stored(meta) => Ok(meta),
        PutOutcome::AlreadyExists => Err(format!("{step}: reported AlreadyExists")),
    }
}

async fn put_plain<R: ObjectStore>(r2: &R, key: &str, body: &[u8]) -> Result<ObjectMeta, String> {
    let outcome = r2
        .put(key, body, ObjectPutOptions::default())
        .await
        .during("put")?;
    stored(outcome, "put")
}

async fn body_round_trip<R: ObjectStore>(r2: &R, scope: &str, body: &[u8]) -> Check {
    let key = format!("{scope}object");
    let outcome = r2
        .put(&key, body, with_metadata(sample_metadata()))
        .await
        .during("put")?;
    let put_meta = stored(outcome, "put")?;
    ensure_eq("key reported by put", put_meta.key.as_str(), key.as_str())?;
    ensure_eq("size reported by put", put_meta.size, body.len() as u64)?;
    let object = r2
        .get(&key)
        .await
        .during("get")?
        .ok_or("get: object not found")?;
    ensure_eq("body read back", object.body.as_slice(), body)?;
    ensure_eq("size read back", object.meta.size, body.len() as u64)?;
    ensure_eq(
        "custom metadata read back",
        &object.meta.custom_metadata,
        &sample_metadata(),
    )?;
    r2.delete(&[key]).await.during("delete")
}

async fn head_matches_put<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let key = format!("{scope}object");
    let outcome = r2
        .put(&key, b"twelve bytes", with_metadata(sample_metadata()))
        .await
        .during("put")?;
    let put_meta = stored(outcome, "put")?;
    let head = r2
        .head(&key)
        .await
        .during("head")?
        .ok_or("head: object not found")?;
    ensure_eq("head key", head.key.as_str(), key.as_str())?;
    ensure_eq("head size", head.size, 12)?;
    ensure_eq(
        "head custom metadata",
        &head.custom_metadata,
        &sample_metadata(),
    )?;
    ensure_eq(
        "head uploaded vs put uploaded",
        head.uploaded_ms,
        put_meta.uploaded_ms,
    )?;
    r2.delete(&[key]).await.during("delete")
}

async fn get_and_head_missing_are_none<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let key = format!("{scope}never-written");
    ensure_eq(
        "get of a missing key",
        r2.get(&key).await.during("get")?,
        None,
    )?;
    ensure_eq(
        "head of a missing key",
        r2.head(&key).await.during("head")?,
        None,
    )
}

async fn sha256_recorded<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let key = format!("{scope}checked");
    let body = all_byte_values();
    let digest = sha256_hex(&body);
    let options = ObjectPutOptions {
        sha256: Some(digest.clone()),
        ..ObjectPutOptions::default()
    };
    let put_meta = stored(r2.put(&key, &body, options).await.during("put")?, "put")?;
    ensure_eq(
        "sha256 reported by put",
        put_meta.sha256.as_deref(),
        Some(digest.as_str()),
    )?;
    let head = r2
        .head(&key)
        .await
        .during("head")?
        .ok_or("head: object not found")?;
    ensure_eq(
        "sha256 reported by head",
        head.sha256.as_deref(),
        Some(digest.as_str()),
    )?;
    let object = r2
        .get(&key)
        .await
        .during("get")?
        .ok_or("get: object not found")?;
    ensure_eq(
        "sha256 reported by get",
        object.meta.sha256.as_deref(),
        Some(digest.as_str()),
    )?;
    ensure_eq("body read back", object.body, body)?;
    r2.delete(&[key]).await.during("delete")
}

async fn sha256_mismatch_rejected<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let key = format!("{scope}damaged");
    let options = ObjectPutOptions {
        sha256: Some(sha256_hex(b"the body that was meant")),
        ..ObjectPutOptions::default()
    };
    match r2.put(&key, b"the body that arrived", options).await {
        Ok(outcome) => return Err(format!("put with a wrong sha256 succeeded: {outcome:?}")),
        Err(err) => ensure_eq(
            &format!("failure kind of a sha256 mismatch ({err})"),
            err.kind,
            FailureKind::Transient,
        )?,
    }
    ensure_eq(
        "head after the refused put",
        r2.head(&key).await.during("head")?,
        None,
    )
}

async fn only_if_absent<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let key = format!("{scope}manifest");
    let first = ObjectPutOptions {
        only_if_absent: true,
        custom_metadata: BTreeMap::from([("version".to_owned(), "first".to_owned())]),
        ..ObjectPutOptions::default()
    };
    stored(
        r2.put(&key, b"first", first).await.during("first put")?,
        "first put",
    )?;
    let second = ObjectPutOptions {
        only_if_absent: true,
        custom_metadata: BTreeMap::from([("version".to_owned(), "second".to_owned())]),
        ..ObjectPutOptions::default()
    };
    let outcome = r2.put(&key, b"second", second).await.during("second put")?;
    ensure_eq(
        "outcome of the second put",
        outcome,
        PutOutcome::AlreadyExists,
    )?;
    let object = r2
        .get(&key)
        .await
        .during("get")?
        .ok_or("get: object not found")?;
    ensure_eq(
        "body after the second put",
        object.body.as_slice(),
        b"first".as_slice(),
    )?;
    ensure_eq(
        "metadata after the second put",
        object
            .meta
            .custom_metadata
            .get("version")
            .map(String::as_str),
        Some("first"),
    )?;
    r2.delete(&[key]).await.during("delete")
}

async fn delete_many<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let keys: Vec<String> = (0..5).map(|i| format!("{scope}k{i}")).collect();
    for key in &keys {
        put_plain(r2, key, key.as_bytes()).await?;
    }
    let mut doomed: Vec<String> = keys.iter().take(3).cloned().collect();
    doomed.push(format!("{scope}never-written"));
    r2.delete(&doomed).await.during("delete of 4 keys")?;
    ensure_eq("keys left", list_keys(r2, scope).await?, keys[3..].to_vec())?;
    r2.delete(&keys[3..]).await.during("delete of 2 keys")?;
    ensure_eq("keys left", list_keys(r2, scope).await?, Vec::new())
}

async fn list_byte_order<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    for suffix in ORDER_SUFFIXES {
        put_plain(r2, &format!("{scope}{suffix}"), suffix.as_bytes()).await?;
    }
    let expected: Vec<String> = ORDER_SUFFIXES_SORTED
        .iter()
        .map(|suffix| format!("{scope}{suffix}"))
        .collect();
    let page = r2
        .list(ObjectListOptions {
            prefix: Some(scope.to_owned()),
            ..ObjectListOptions::default()
        })
        .await
        .during("list")?;
    ensure_eq("truncated of a 5-object listing", page.truncated, false)?;
    let keys: Vec<String> = page.objects.into_iter().map(|object| object.key).collect();
    ensure_eq("key order", keys, expected.clone())?;
    r2.delete(&expected).await.during("delete")
}

async fn list_prefix_isolation<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let keys: Vec<String> = ["o", "p/1", "p/2", "p2/1", "q/1"]
        .iter()
        .map(|suffix| format!("{scope}{suffix}"))
        .collect();
    for key in &keys {
        put_plain(r2, key, b"x").await?;
    }
    ensure_eq(
        "keys under \"p/\"",
        list_keys(r2, &format!("{scope}p/")).await?,
        keys[1..3].to_vec(),
    )?;
    ensure_eq(
        "keys under \"p\"",
        list_keys(r2, &format!("{scope}p")).await?,
        keys[1..4].to_vec(),
    )?;
    ensure_eq(
        "keys under \"z\"",
        list_keys(r2, &format!("{scope}z")).await?,
        Vec::new(),
    )?;
    r2.delete(&keys).await.during("delete")
}

async fn list_start_after<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let keys: Vec<String> = (1..=5).map(|i| format!("{scope}k{i}")).collect();
    for key in &keys {
        put_plain(r2, key, b"x").await?;
    }
    let page = r2
        .list(ObjectListOptions {
            prefix: Some(scope.to_owned()),
            start_after: Some(keys[1].clone()),
            ..ObjectListOptions::default()
        })
        .await
        .during("list")?;
    let listed: Vec<String> = page.objects.into_iter().map(|object| object.key).collect();
    ensure_eq("keys after k2", listed, keys[2..].to_vec())?;
    r2.delete(&keys).await.during("delete")
}

async fn list_custom_metadata_only_with_include<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let key = format!("{scope}object");
    r2.put(&key, b"x", with_metadata(sample_metadata()))
        .await
        .during("put")?;
    for include in [false, true] {
        let page = r2
            .list(ObjectListOptions {
                prefix: Some(scope.to_owned()),
                include_custom_metadata: include,
                ..ObjectListOptions::default()
            })
            .await
            .during("list")?;
        let [object] = page.objects.as_slice() else {
            return Err(format!(
                "expected one listed object, got {:?}",
                page.objects
            ));
        };
        ensure_eq(
            &format!("listed custom metadata with include = {include}"),
            object.custom_metadata.clone(),
            include.then(sample_metadata),
        )?;
    }
    r2.delete(&[key]).await.during("delete")
}

/// Writes more objects than a page holds, pages through them with the default limit and with a
/// small one, then deletes them in calls of 1000 keys.
async fn list_pagination<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let expected: Vec<String> = (0..PAGINATION_KEYS)
        .map(|i| format!("{scope}k{i:05}"))
        .collect();
    for key in &expected {
        put_plain(r2, key, b"").await?;
    }
    for limit in [None, Some(400)] {
        let (objects, pages) = list_pages(r2, scope, limit).await?;
        let keys: Vec<String> = objects.into_iter().map(|object| object.key).collect();
        let label = format!("keys listed with limit {limit:?}");
        ensure_eq(&label, keys.len(), expected.len())?;
        ensure(keys == expected, || {
            format!("{label}: not the written keys in byte order (duplicates or gaps)")
        })?;
        ensure(pages >= 2, || {
            format!("{label}: {pages} page(s) for {PAGINATION_KEYS} keys")
        })?;
    }
    for batch in expected.chunks(1000) {
        r2.delete(batch)
            .await
            .during(&format!("delete of {} keys", batch.len()))?;
    }
    ensure_eq(
        "keys left after deleting all",
        list_keys(r2, scope).await?,
        Vec::new(),
    )
}

async fn uploaded_ms_plausible<R: ObjectStore, C: Clock + Rng>(
    r2: &R,
    clock: &C,
    scope: &str,
) -> Check {
    let key = format!("{scope}object");
    let before = clock.now_ms();
    let put_meta = put_plain(r2, &key, b"x").await?;
    let after = clock.now_ms();
    let earliest = before - CLOCK_TOLERANCE_MS;
    let latest = after + CLOCK_TOLERANCE_MS;
    ensure((earliest..=latest).contains(&put_meta.uploaded_ms), || {
        format!(
            "uploaded {} ms is not within [{earliest}, {latest}]",
            put_meta.uploaded_ms
        )
    })?;
    let (listed, _) = list_pages(r2, scope, None).await?;
    let [object] = listed.as_slice() else {
        return Err(format!("expected one listed object, got {listed:?}"));
    };
    ensure_eq(
        "listed uploaded vs put uploaded",
        object.uploaded_ms,
        put_meta.uploaded_ms,
    )?;
    ensure_eq("listed size", object.size, 1)?;
    r2.delete(&[key]).await.during("delete")
}

async fn oversized_key_rejected<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let too_long = pad_key(scope, 1025);
    match r2.put(&too_long, b"x", ObjectPutOptions::default()).await {
        Ok(outcome) => Err(format!("put of a 1025-byte key succeeded: {outcome:?}")),
        Err(err) => ensure_eq(
            &format!("failure kind of a 1025-byte key ({err})"),
            err.kind,
            FailureKind::Rejected,
        ),
    }
}

async fn oversized_metadata_rejected<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let key = format!("{scope}object");
    let too_big = BTreeMap::from([("p".to_owned(), "x".repeat(9000))]);
    match r2.put(&key, b"x", with_metadata(too_big)).await {
        Ok(outcome) => {
            return Err(format!(
                "put with 9001 bytes of metadata succeeded: {outcome:?}"
            ))
        }
        Err(err) => ensure_eq(
            &format!("failure kind of 9001 bytes of metadata ({err})"),
            err.kind,
            FailureKind::Rejected,
        )?,
    }
    ensure_eq(
        "head after the refused put",
        r2.head(&key).await.during("head")?,
        None,
    )
}

/// Every object under `prefix` (following cursors, each page at most `limit`) and how many
/// pages it took.
async fn list_pages<R: ObjectStore>(
    r2: &R,
    prefix: &str,
    limit: Option<u32>,
) -> Result<(Vec<ListedR2Object>, usize), String> {
    let mut objects = Vec::new();
    let mut cursor = None;
    let cap = limit.unwrap_or(1000) as usize;
    for pages in 1..=MAX_PAGES {
        let page = r2
            .list(ObjectListOptions {
                prefix: Some(prefix.to_owned()),
                cursor: cursor.take(),
                limit,
                ..ObjectListOptions::default()
            })
            .await
            .during("list")?;
        ensure(page.objects.len() <= cap, || {
            format!(
                "a page held {} objects, more than {cap}",
                page.objects.len()
            )
        })?;
        objects.extend(page.objects);
        if !page.truncated {
            return Ok((objects, pages));
        }
        cursor = Some(page.cursor.ok_or("truncated is true but no cursor")?);
    }
    Err(format!("listing did not complete within {MAX_PAGES} pages"))
}

async fn list_keys<R: ObjectStore>(r2: &R, prefix: &str) -> Result<Vec<String>, String> {
    let (objects, _) = list_pages(r2, prefix, None).await?;
    Ok(objects.into_iter().map(|object| object.key).collect())
}
