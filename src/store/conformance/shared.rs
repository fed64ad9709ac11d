//! The checks KV and R2 share (listing in byte order, under a prefix and across pages, and
//! deleting a missing key), written once over [`Listable`].

use std::fmt;

use super::{
    ensure, ensure_eq, Check, During, MAX_PAGES, ORDER_SUFFIXES, ORDER_SUFFIXES_SORTED,
    PAGINATION_KEYS,
};
use crate::platform::MAX_LIST_LIMIT;
use crate::store::StoreResult;

/// A port as the shared checks use it.
pub(super) trait Listable {
    /// What a listing gives for each key (`ListedKvKey`, `ListedR2Object`).
    type Listed: fmt::Debug;
    /// What a listing holds, as messages name it: `keys`, `objects`.
    const ENTRIES: &'static str;
    /// The key of a listed entry.
    fn key(listed: &Self::Listed) -> &str;
    /// Writes `value` under `key`.
    async fn put(&self, key: &str, value: &[u8]) -> Check;
    /// One page of at most `limit` entries under `prefix`, and the cursor of the next page when
    /// one follows.
    async fn page(
        &self,
        prefix: &str,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<(Vec<Self::Listed>, Option<String>), String>;
    /// Deletes `keys`.
    async fn delete(&self, keys: &[String]) -> StoreResult<()>;
}

pub(super) async fn delete_missing_ok<P: Listable>(port: &P, scope: &str) -> Check {
    let missing = [format!("{scope}never-written")];
    port.delete(&missing)
        .await
        .during("delete of a missing key")
}

pub(super) async fn list_byte_order<P: Listable>(port: &P, scope: &str) -> Check {
    for suffix in ORDER_SUFFIXES {
        port.put(&format!("{scope}{suffix}"), suffix.as_bytes())
            .await?;
    }
    let expected: Vec<String> = ORDER_SUFFIXES_SORTED
        .iter()
        .map(|suffix| format!("{scope}{suffix}"))
        .collect();
    let (listed, next) = port.page(scope, None, None).await?;
    ensure(next.is_none(), || {
        format!("a listing of 5 {} says more pages follow", P::ENTRIES)
    })?;
    ensure_eq("key order", keys_of::<P>(&listed), expected.clone())?;
    port.delete(&expected).await.during("delete")
}

pub(super) async fn list_prefix_isolation<P: Listable>(port: &P, scope: &str) -> Check {
    let keys: Vec<String> = ["o", "p/1", "p/2", "p2/1", "q/1"]
        .iter()
        .map(|suffix| format!("{scope}{suffix}"))
        .collect();
    for key in &keys {
        port.put(key, b"x").await?;
    }
    for (under, expected) in [("p/", &keys[1..3]), ("p", &keys[1..4]), ("z", &keys[..0])] {
        let listed = list_keys(port, &format!("{scope}{under}")).await?;
        ensure_eq(&format!("keys under {under:?}"), listed, expected.to_vec())?;
    }
    port.delete(&keys).await.during("delete")
}

/// Writes more keys than a page holds, then pages through them with the default limit and
/// with `small_limit`; the keys written.
pub(super) async fn list_pagination<P: Listable>(
    port: &P,
    scope: &str,
    small_limit: u32,
) -> Result<Vec<String>, String> {
    let expected: Vec<String> = (0..PAGINATION_KEYS)
        .map(|i| format!("{scope}k{i:05}"))
        .collect();
    for key in &expected {
        port.put(key, b"").await?;
    }
    for limit in [None, Some(small_limit)] {
        let (listed, pages) = list_pages(port, scope, limit).await?;
        let keys = keys_of::<P>(&listed);
        let label = format!("keys listed with limit {limit:?}");
        ensure_eq(&label, keys.len(), expected.len())?;
        ensure(keys == expected, || {
            format!("{label}: not the written keys in byte order (duplicates or gaps)")
        })?;
        ensure(pages >= 2, || {
            format!("{label}: {pages} page(s) for {PAGINATION_KEYS} keys")
        })?;
    }
    Ok(expected)
}

/// Every entry under `prefix` (following cursors, each page at most `limit`) and how many pages
/// it took.
pub(super) async fn list_pages<P: Listable>(
    port: &P,
    prefix: &str,
    limit: Option<u32>,
) -> Result<(Vec<P::Listed>, usize), String> {
    let mut listed = Vec::new();
    let mut cursor = None;
    let cap = limit.unwrap_or(MAX_LIST_LIMIT) as usize;
    for pages in 1..=MAX_PAGES {
        let (page, next) = port.page(prefix, cursor.take(), limit).await?;
        ensure(page.len() <= cap, || {
            format!("a page held {} {}, more than {cap}", page.len(), P::ENTRIES)
        })?;
        listed.extend(page);
        if next.is_none() {
            return Ok((listed, pages));
        }
        cursor = next;
    }
    Err(format!("listing did not complete within {MAX_PAGES} pages"))
}

/// Every key under `prefix`, in the order listed.
pub(super) async fn list_keys<P: Listable>(port: &P, prefix: &str) -> Result<Vec<String>, String> {
    Ok(keys_of::<P>(&list_pages(port, prefix, None).await?.0))
}

fn keys_of<P: Listable>(listed: &[P::Listed]) -> Vec<String> {
    listed
        .iter()
        .map(|entry| P::key(entry).to_owned())
        .collect()
}
