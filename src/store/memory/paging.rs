//! Paging shared by the in-memory KV and R2: byte-ordered keys, a page limit of at most 1000,
//! and opaque cursors.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::hash::to_hex;

use crate::platform::MAX_LIST_LIMIT;

const CURSOR_TAG: &str = "mem1.";

/// The page size a `limit` option asks for: 1000 when absent, capped at 1000; `None` for 0.
pub(crate) fn page_limit(limit: Option<u32>) -> Option<usize> {
    match limit {
        None => Some(MAX_LIST_LIMIT as usize),
        Some(0) => None,
        Some(n) => Some(n.min(MAX_LIST_LIMIT) as usize),
    }
}

/// An opaque cursor continuing after `last_key`.
pub(crate) fn encode_cursor(last_key: &str) -> String {
    format!("{CURSOR_TAG}{}", to_hex(last_key.as_bytes()))
}

/// The key a cursor from [`encode_cursor`] continues after, or `None` if it is not one.
pub(crate) fn decode_cursor(cursor: &str) -> Option<String> {
    let hex = cursor.strip_prefix(CURSOR_TAG)?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Up to `limit` entries of `entries` whose key starts with `prefix` and sorts after `after`,
/// in byte order (Rust's `str` order is UTF-8 byte order), and whether more follow.
pub(crate) fn page<'a, V>(
    entries: &'a BTreeMap<String, V>,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> (Vec<(&'a String, &'a V)>, bool) {
    let start = match after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let mut selected: Vec<(&String, &V)> = entries
        .range::<str, _>((start, Bound::Unbounded))
        .take_while(|(key, _)| key.starts_with(prefix))
        .take(limit.saturating_add(1))
        .collect();
    let more = selected.len() > limit;
    selected.truncate(limit);
    (selected, more)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        for key in ["", "a/b", "ä€", "archive_meta:x"] {
            assert_eq!(decode_cursor(&encode_cursor(key)).as_deref(), Some(key));
        }
        assert_eq!(decode_cursor("abc"), None);
        assert_eq!(decode_cursor("mem1.6"), None);
        assert_eq!(decode_cursor("mem1.zz"), None);
        assert_eq!(decode_cursor("mem1.ff"), None);
    }

    #[test]
    fn limits_default_and_cap_at_1000() {
        assert_eq!(page_limit(None), Some(1000));
        assert_eq!(page_limit(Some(7)), Some(7));
        assert_eq!(page_limit(Some(5000)), Some(1000));
        assert_eq!(page_limit(Some(0)), None);
    }

    #[test]
    fn pages_respect_prefix_after_and_limit() {
        let entries: BTreeMap<String, u8> = ["a", "b/1", "b/2", "b/3", "c"]
            .iter()
            .map(|k| (k.to_string(), 0))
            .collect();
        let keys = |(page, more): (Vec<(&String, &u8)>, bool)| {
            (
                page.into_iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
                more,
            )
        };
        assert_eq!(
            keys(page(&entries, "b/", None, 2)),
            (vec!["b/1".into(), "b/2".into()], true)
        );
        assert_eq!(
            keys(page(&entries, "b/", Some("b/2"), 2)),
            (vec!["b/3".into()], false)
        );
        assert_eq!(
            keys(page(&entries, "b/", Some("a"), 1)),
            (vec!["b/1".into()], true)
        );
        assert_eq!(
            keys(page(&entries, "", Some("b/3"), 10)),
            (vec!["c".into()], false)
        );
        assert_eq!(keys(page(&entries, "d", None, 10)), (vec![], false));
    }
}
