//! The R2 checks.

use std::collections::BTreeMap;

use super::shared::{self, list_keys, list_pages, Listable};
use super::Suite;
use super::{
    all_byte_values, ensure, ensure_eq, expect_failure, pad_key, Check, During, CLOCK_TOLERANCE_MS,
    SAMPLE_TEXT,
};
use crate::hash::sha256_hex;
use crate::keys::{archive_object_key, segment_session_id, SessionId};
use crate::platform::{R2_MAX_DELETE_KEYS, SAME_KEY_WRITE_INTERVAL_MS};
use crate::store::{
    Clock, FailureKind, ListedR2Object, ObjectListOptions, ObjectMeta, ObjectPutOptions,
    ObjectStore, PutOutcome, Rng, StoreResult, StoredObject,
};

/// The names of the R2 checks, in the order [`run_conformance`](super::run_conformance) runs
/// them.
pub const R2_CHECKS: &[&str] = &[
    "r2.binary_round_trip",
    "r2.text_round_trip",
    "r2.head_matches_put",
    "r2.get_and_head_missing_are_none",
    "r2.sha256_recorded",
    "r2.sha256_mismatch_rejected",
    "r2.only_if_absent",
    "r2.put_if_etag_matches",
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
    "r2.segment_keys_list_in_order",
];

impl<R: ObjectStore> Suite for R2<'_, R> {
    const CHECKS: &'static [&'static str] = R2_CHECKS;

    async fn run<C: Clock + Rng>(&self, clock: &C, scope: &str, name: &str) -> Check {
        let (r2, port) = (self.0, self);
        match name {
            "r2.binary_round_trip" => body_round_trip(r2, scope, &all_byte_values()).await,
            "r2.text_round_trip" => body_round_trip(r2, scope, SAMPLE_TEXT.as_bytes()).await,
            "r2.head_matches_put" => head_matches_put(r2, scope).await,
            "r2.get_and_head_missing_are_none" => get_and_head_missing_are_none(r2, scope).await,
            "r2.sha256_recorded" => sha256_recorded(r2, scope).await,
            "r2.sha256_mismatch_rejected" => sha256_mismatch_rejected(r2, scope).await,
            "r2.only_if_absent" => only_if_absent(r2, scope).await,
            "r2.put_if_etag_matches" => put_if_etag_matches(r2, clock, scope).await,
            "r2.delete_many" => delete_many(port, scope).await,
            "r2.delete_missing_ok" => shared::delete_missing_ok(port, scope).await,
            "r2.list_byte_order" => shared::list_byte_order(port, scope).await,
            "r2.list_prefix_isolation" => shared::list_prefix_isolation(port, scope).await,
            "r2.list_start_after" => list_start_after(port, scope).await,
            "r2.list_custom_metadata_only_with_include" => {
                list_custom_metadata_only_with_include(r2, scope).await
            }
            "r2.list_pagination" => list_pagination(port, scope).await,
            "r2.uploaded_ms_plausible" => uploaded_ms_plausible(port, clock, scope).await,
            "r2.oversized_key_rejected" => oversized_key_rejected(r2, scope).await,
            "r2.oversized_metadata_rejected" => oversized_metadata_rejected(r2, scope).await,
            "r2.segment_keys_list_in_order" => segment_keys_list_in_order(port, scope).await,
            unknown => Err(format!("no R2 check is called {unknown:?}")),
        }
    }
}

/// The R2 checks, over a bucket.
pub struct R2<'a, R>(pub &'a R);

impl<R: ObjectStore> Listable for R2<'_, R> {
    type Listed = ListedR2Object;
    const ENTRIES: &'static str = "objects";

    fn key(listed: &ListedR2Object) -> &str {
        &listed.key
    }

    async fn put(&self, key: &str, value: &[u8]) -> Check {
        put_plain(self.0, key, value).await.map(drop)
    }

    async fn page(
        &self,
        prefix: &str,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<(Vec<ListedR2Object>, Option<String>), String> {
        let options = ObjectListOptions {
            prefix: Some(prefix.to_owned()),
            cursor,
            limit,
            ..ObjectListOptions::default()
        };
        let page = self.0.list(options).await.during("list")?;
        let next = match page.truncated {
            true => Some(page.cursor.ok_or("truncated is true but no cursor")?),
            false => None,
        };
        Ok((page.objects, next))
    }

    async fn delete(&self, keys: &[String]) -> StoreResult<()> {
        self.0.delete(keys).await
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

/// The metadata of a put (`step`) that must have stored its object.
async fn stored<R: ObjectStore>(
    r2: &R,
    step: &str,
    key: &str,
    body: &[u8],
    options: ObjectPutOptions,
) -> Result<ObjectMeta, String> {
    match r2.put(key, body, options).await.during(step)? {
        PutOutcome::Stored(meta) => Ok(meta),
        refused => Err(format!("{step}: reported {refused:?}")),
    }
}

async fn put_plain<R: ObjectStore>(r2: &R, key: &str, body: &[u8]) -> Result<ObjectMeta, String> {
    stored(r2, "put", key, body, ObjectPutOptions::default()).await
}

/// What `get` reads under `key`, which must exist.
async fn read<R: ObjectStore>(r2: &R, key: &str) -> Result<StoredObject, String> {
    let object = r2.get(key).await.during("get")?;
    object.ok_or_else(|| "get: object not found".to_owned())
}

/// What `head` reads under `key`, which must exist.
async fn read_head<R: ObjectStore>(r2: &R, key: &str) -> Result<ObjectMeta, String> {
    let meta = r2.head(key).await.during("head")?;
    meta.ok_or_else(|| "head: object not found".to_owned())
}

async fn body_round_trip<R: ObjectStore>(r2: &R, scope: &str, body: &[u8]) -> Check {
    let key = format!("{scope}object");
    let put_meta = stored(r2, "put", &key, body, with_metadata(sample_metadata())).await?;
    ensure_eq("key reported by put", put_meta.key.as_str(), key.as_str())?;
    ensure_eq("size reported by put", put_meta.size, body.len() as u64)?;
    let object = read(r2, &key).await?;
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
    let options = with_metadata(sample_metadata());
    let put_meta = stored(r2, "put", &key, b"twelve bytes", options).await?;
    let head = read_head(r2, &key).await?;
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
    let read = r2.get(&key).await.during("get")?;
    ensure_eq("get of a missing key", read, None)?;
    let head = r2.head(&key).await.during("head")?;
    ensure_eq("head of a missing key", head, None)
}

async fn sha256_recorded<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let key = format!("{scope}checked");
    let body = all_byte_values();
    let digest = sha256_hex(&body);
    let options = ObjectPutOptions {
        sha256: Some(digest.clone()),
        ..ObjectPutOptions::default()
    };
    let put_meta = stored(r2, "put", &key, &body, options).await?;
    let head = read_head(r2, &key).await?;
    let object = read(r2, &key).await?;
    for (call, meta) in [("put", &put_meta), ("head", &head), ("get", &object.meta)] {
        ensure_eq(
            &format!("sha256 reported by {call}"),
            meta.sha256.as_deref(),
            Some(digest.as_str()),
        )?;
    }
    ensure_eq("body read back", object.body, body)?;
    r2.delete(&[key]).await.during("delete")
}

async fn sha256_mismatch_rejected<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let key = format!("{scope}damaged");
    let options = ObjectPutOptions {
        sha256: Some(sha256_hex(b"the body that was meant")),
        ..ObjectPutOptions::default()
    };
    let outcome = r2.put(&key, b"the body that arrived", options).await;
    expect_failure("put with a wrong sha256", outcome, FailureKind::Transient)?;
    let head = r2.head(&key).await.during("head")?;
    ensure_eq("head after the refused put", head, None)
}

async fn only_if_absent<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let key = format!("{scope}manifest");
    let version = |version: &str| ObjectPutOptions {
        only_if_absent: true,
        custom_metadata: BTreeMap::from([("version".to_owned(), version.to_owned())]),
        ..ObjectPutOptions::default()
    };
    stored(r2, "first put", &key, b"first", version("first")).await?;
    let outcome = r2
        .put(&key, b"second", version("second"))
        .await
        .during("second put")?;
    ensure_eq(
        "outcome of the second put",
        outcome,
        PutOutcome::AlreadyExists,
    )?;
    let object = read(r2, &key).await?;
    ensure_eq(
        "body after the second put",
        object.body.as_slice(),
        b"first".as_slice(),
    )?;
    ensure_eq(
        "metadata after the second put",
        object.meta.custom_metadata.get("version"),
        Some(&"first".to_owned()),
    )?;
    r2.delete(&[key]).await.during("delete")
}

/// A put conditioned on an etag writes over that version only: never over a newer one, and
/// never brings back an object deleted meanwhile (what rewrapping a data key relies on).
async fn put_if_etag_matches<R: ObjectStore, C: Clock + Rng>(
    r2: &R,
    clock: &C,
    scope: &str,
) -> Check {
    let key = format!("{scope}data-key");
    let if_matches = |etag: &Option<String>| ObjectPutOptions {
        if_etag_matches: Some(etag.clone().unwrap_or_default()),
        ..ObjectPutOptions::default()
    };
    let first = stored(r2, "first put", &key, b"first", ObjectPutOptions::default()).await?;
    if first.etag.is_none() {
        return Err("first put: no etag".to_owned());
    }
    // R2 takes one write a second per key.
    clock.sleep(SAME_KEY_WRITE_INTERVAL_MS).await;
    let second = stored(
        r2,
        "put over the first",
        &key,
        b"second",
        if_matches(&first.etag),
    )
    .await?;
    let stale = r2
        .put(&key, b"third", if_matches(&first.etag))
        .await
        .during("put over a stale etag")?;
    ensure_eq(
        "outcome of the put over a stale etag",
        stale,
        PutOutcome::Changed,
    )?;
    let object = read(r2, &key).await?;
    ensure_eq(
        "body after the stale put",
        object.body.as_slice(),
        b"second".as_slice(),
    )?;
    ensure_eq("etag of the body read", &object.meta.etag, &second.etag)?;
    r2.delete(std::slice::from_ref(&key))
        .await
        .during("delete")?;
    let gone = r2
        .put(&key, b"again", if_matches(&second.etag))
        .await
        .during("put over a deleted object")?;
    ensure_eq(
        "outcome of the put over a deleted object",
        gone,
        PutOutcome::Changed,
    )?;
    ensure_eq(
        "head after the put over a deleted object",
        r2.head(&key).await.during("head")?,
        None,
    )
}

async fn delete_many<R: ObjectStore>(port: &R2<'_, R>, scope: &str) -> Check {
    let keys: Vec<String> = (0..5).map(|i| format!("{scope}k{i}")).collect();
    for key in &keys {
        put_plain(port.0, key, key.as_bytes()).await?;
    }
    let mut doomed: Vec<String> = keys.iter().take(3).cloned().collect();
    doomed.push(format!("{scope}never-written"));
    port.0.delete(&doomed).await.during("delete of 4 keys")?;
    ensure_eq(
        "keys left",
        list_keys(port, scope).await?,
        keys[3..].to_vec(),
    )?;
    port.0.delete(&keys[3..]).await.during("delete of 2 keys")?;
    ensure_eq("keys left", list_keys(port, scope).await?, Vec::new())
}

async fn list_start_after<R: ObjectStore>(port: &R2<'_, R>, scope: &str) -> Check {
    let keys: Vec<String> = (1..=5).map(|i| format!("{scope}k{i}")).collect();
    for key in &keys {
        put_plain(port.0, key, b"x").await?;
    }
    let options = ObjectListOptions {
        prefix: Some(scope.to_owned()),
        start_after: Some(keys[1].clone()),
        ..ObjectListOptions::default()
    };
    let page = port.0.list(options).await.during("list")?;
    let listed: Vec<String> = page.objects.into_iter().map(|object| object.key).collect();
    ensure_eq("keys after k2", listed, keys[2..].to_vec())?;
    port.0.delete(&keys).await.during("delete")
}

async fn list_custom_metadata_only_with_include<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let key = format!("{scope}object");
    stored(r2, "put", &key, b"x", with_metadata(sample_metadata())).await?;
    for include in [false, true] {
        let options = ObjectListOptions {
            prefix: Some(scope.to_owned()),
            include_custom_metadata: include,
            ..ObjectListOptions::default()
        };
        let page = r2.list(options).await.during("list")?;
        let [object] = page.objects.as_slice() else {
            let objects = page.objects;
            return Err(format!("expected one listed object, got {objects:?}"));
        };
        ensure_eq(
            &format!("listed custom metadata with include = {include}"),
            object.custom_metadata.clone(),
            include.then(sample_metadata),
        )?;
    }
    r2.delete(&[key]).await.during("delete")
}

/// The shared pagination check, then the objects deleted in calls of 1000 keys.
async fn list_pagination<R: ObjectStore>(port: &R2<'_, R>, scope: &str) -> Check {
    let written = shared::list_pagination(port, scope, 400).await?;
    for batch in written.chunks(R2_MAX_DELETE_KEYS) {
        let step = format!("delete of {} keys", batch.len());
        port.0.delete(batch).await.during(&step)?;
    }
    let left = list_keys(port, scope).await?;
    ensure_eq("keys left after deleting all", left, Vec::new())
}

async fn uploaded_ms_plausible<R: ObjectStore, C: Clock + Rng>(
    port: &R2<'_, R>,
    clock: &C,
    scope: &str,
) -> Check {
    let key = format!("{scope}object");
    let before = clock.now_ms();
    let put_meta = put_plain(port.0, &key, b"x").await?;
    let after = clock.now_ms();
    let earliest = before - CLOCK_TOLERANCE_MS;
    let latest = after + CLOCK_TOLERANCE_MS;
    let uploaded_ms = put_meta.uploaded_ms;
    ensure((earliest..=latest).contains(&uploaded_ms), || {
        format!("uploaded {uploaded_ms} ms is not within [{earliest}, {latest}]")
    })?;
    let (listed, _) = list_pages(port, scope, None).await?;
    let [object] = listed.as_slice() else {
        return Err(format!("expected one listed object, got {listed:?}"));
    };
    ensure_eq(
        "listed uploaded vs put uploaded",
        object.uploaded_ms,
        uploaded_ms,
    )?;
    ensure_eq("listed size", object.size, 1)?;
    port.0.delete(&[key]).await.during("delete")
}

async fn oversized_key_rejected<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let outcome = r2
        .put(&pad_key(scope, 1025), b"x", ObjectPutOptions::default())
        .await;
    expect_failure("put of a 1025-byte key", outcome, FailureKind::Rejected)
}

async fn oversized_metadata_rejected<R: ObjectStore>(r2: &R, scope: &str) -> Check {
    let key = format!("{scope}object");
    let too_big = BTreeMap::from([("p".to_owned(), "x".repeat(9000))]);
    let outcome = r2.put(&key, b"x", with_metadata(too_big)).await;
    expect_failure(
        "put with 9001 bytes of metadata",
        outcome,
        FailureKind::Rejected,
    )?;
    let head = r2.head(&key).await.during("head")?;
    ensure_eq("head after the refused put", head, None)
}

/// Segments of the Agents SDK offload (`<sessionId>:segment-<n>`, docs/FORMAT.md "Segments"):
/// their archive keys (with `:`) are stored and read back as written, and a listing of the
/// session's segment prefix gives them in segment order, without the session's own archive.
async fn segment_keys_list_in_order<R: ObjectStore>(port: &R2<'_, R>, scope: &str) -> Check {
    let session = SessionId::parse("chat-1").map_err(|err| err.to_string())?;
    let segment_key = |seq: u32, at_ms: i64| -> Result<String, String> {
        let id = segment_session_id(&session, seq).map_err(|err| err.to_string())?;
        let key = archive_object_key(&id, at_ms).map_err(|err| err.to_string())?;
        Ok(format!("{scope}{key}"))
    };
    const AT_MS: i64 = 1_736_157_600_000;
    let keys = [segment_key(1, AT_MS)?, segment_key(2, AT_MS - 1)?];
    let archive = archive_object_key(&session, AT_MS).map_err(|err| err.to_string())?;
    let archive = format!("{scope}{archive}");
    for key in [&keys[1], &archive, &keys[0]] {
        port.put(key, key.as_bytes()).await?;
    }
    let prefix = format!("{scope}conversations/2025/01/archive_chat-1:segment-");
    ensure_eq(
        "segment keys listed",
        list_keys(port, &prefix).await?,
        keys.to_vec(),
    )?;
    for key in &keys {
        let object = read(port.0, key).await?;
        ensure_eq(
            "segment body read back",
            object.body.as_slice(),
            key.as_bytes(),
        )?;
    }
    let all: Vec<String> = keys.iter().cloned().chain([archive]).collect();
    port.delete(&all).await.during("delete")
}
