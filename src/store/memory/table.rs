//! What the in-memory KV and R2 share: keyed entries in byte order behind a shared handle, the
//! one-write-a-second-per-key rule, expiry on the virtual clock, paged listing with opaque
//! cursors, and every call admitted by the shared fault plan.

use std::cell::{RefCell, RefMut};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::rc::Rc;

use super::clock::VirtualClock;
use super::faults::{Faults, OperationKind, Refusal};
use crate::hash::to_hex;
use crate::platform::{MAX_LIST_LIMIT, SAME_KEY_WRITE_INTERVAL_MS};
use crate::store::{Binding, Clock, FailureKind, StoreResult};

const CURSOR_TAG: &str = "mem1.";

/// What one of the stores keeps under a key ([`KvValue`], [`StoredObject`]), and how the
/// service it models words the refusals [`InMemory`] makes for it.
///
/// [`KvValue`]: crate::store::KvValue
/// [`StoredObject`]: crate::store::StoredObject
pub trait Stored: Clone {
    /// The binding its calls go to.
    const BINDING: Binding;
    /// The refusal of a write to a key written less than a second ago.
    const RATE_LIMITED: &'static str;
    /// The refusal of a `list` with `limit: 0`.
    const ZERO_LIMIT: &'static str;
    /// The refusal of a `list` with a cursor the store never gave.
    fn bad_cursor(cursor: &str) -> String;
    /// The bytes storage damage would flip: the value or body, not its metadata.
    fn bytes_mut(&mut self) -> &mut Vec<u8>;
}

/// What is stored under a key, and when (epoch s) it expires, if ever (KV's TTL; R2 objects
/// never expire).
#[derive(Debug)]
pub(super) struct Entry<S> {
    pub(super) stored: S,
    pub(super) expiration_s: Option<u64>,
}

/// The entries of one store, in byte order of their keys.
#[derive(Debug)]
pub(super) struct Table<S> {
    pub(super) entries: BTreeMap<String, Entry<S>>,
    /// (expiration in epoch seconds, key) of the entries that expire, soonest first.
    expiries: BTreeSet<(u64, String)>,
    last_put_ms: HashMap<String, i64>,
    write_rate_limit: bool,
}

/// One binding in memory, keeping an `S` under each key: [`MemoryKv`] and [`MemoryR2`] (whose
/// docs say what each models). Clones share the entries; time comes from the shared
/// [`VirtualClock`], faults and call counts from the shared [`Faults`].
///
/// [`MemoryKv`]: super::MemoryKv
/// [`MemoryR2`]: super::MemoryR2
#[derive(Debug, Clone)]
pub struct InMemory<S> {
    table: Rc<RefCell<Table<S>>>,
    clock: VirtualClock,
    faults: Faults,
    /// The binding its calls are counted, filtered and named under (`S::BINDING` unless
    /// [`InMemory::as_binding`] says otherwise).
    binding: Binding,
}

impl<S: Stored> InMemory<S> {
    /// An empty store reading time from `clock` and faults from `faults`.
    pub fn new(clock: VirtualClock, faults: Faults) -> Self {
        let table = Table {
            entries: BTreeMap::new(),
            expiries: BTreeSet::new(),
            last_put_ms: HashMap::new(),
            write_rate_limit: true,
        };
        InMemory {
            table: Rc::new(RefCell::new(table)),
            clock,
            faults,
            binding: S::BINDING,
        }
    }

    /// The same store with its calls counted, filtered by fault plans and named in errors
    /// under `binding`: a second R2 bucket as `ARCHIVE_R2_REPLICA`.
    pub fn as_binding(mut self, binding: Binding) -> Self {
        self.binding = binding;
        self
    }

    /// Turns the one-write-a-second-per-key rule on (the default) or off.
    pub fn set_write_rate_limit(&self, enabled: bool) {
        self.table.borrow_mut().write_rate_limit = enabled;
    }

    /// Every live key in byte order (not a storage call).
    pub fn keys(&self) -> Vec<String> {
        self.live().entries.keys().cloned().collect()
    }

    /// Everything stored under every live key (not a storage call: not counted, never fails).
    pub fn snapshot(&self) -> BTreeMap<String, S> {
        let table = self.live();
        let entries = table.entries.iter();
        entries
            .map(|(key, entry)| (key.clone(), entry.stored.clone()))
            .collect()
    }

    /// Inverts the byte at `position` of the value or body under `key`, leaving its metadata
    /// (for R2 also its size and recorded SHA-256) as it was, as storage damage would. False
    /// when there is no such key or byte.
    pub fn corrupt(&self, key: &str, position: usize) -> bool {
        let mut table = self.live();
        let entry = table.entries.get_mut(key);
        match entry.and_then(|entry| entry.stored.bytes_mut().get_mut(position)) {
            Some(byte) => {
                *byte ^= 0xff;
                true
            }
            None => false,
        }
    }

    /// The clock's time, in epoch ms.
    pub(super) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Storage call `operation`, named `target` in its errors: admitted by the fault plan, then
    /// `call` runs on the live entries.
    pub(super) fn call<T>(
        &self,
        operation: OperationKind,
        target: &str,
        call: impl FnOnce(&mut Table<S>) -> Result<T, Refusal>,
    ) -> StoreResult<T> {
        let run = || call(&mut self.live());
        self.faults.run(self.binding, operation, target, run)
    }

    /// The entries, without those whose expiration the clock has passed.
    fn live(&self) -> RefMut<'_, Table<S>> {
        let now_ms = self.clock.now_ms();
        let mut table = self.table.borrow_mut();
        while let Some((expiration_s, key)) = table.expiries.first().cloned() {
            let expiration_ms = i64::try_from(expiration_s.saturating_mul(1000));
            if now_ms < expiration_ms.unwrap_or(i64::MAX) {
                break;
            }
            table.expiries.pop_first();
            table.entries.remove(&key);
        }
        table
    }
}

impl<S: Stored> Table<S> {
    /// Stores `entry` under `key` at `now_ms`, unless the key was written less than a second
    /// ago and the rule is on (a transient 429).
    pub(super) fn write(&mut self, key: &str, entry: Entry<S>, now_ms: i64) -> Result<(), Refusal> {
        let last_ms = self.last_put_ms.get(key);
        if self.write_rate_limit
            && last_ms.is_some_and(|last| now_ms.abs_diff(*last) < SAME_KEY_WRITE_INTERVAL_MS)
        {
            return Err((FailureKind::RateLimited, S::RATE_LIMITED.to_owned()));
        }
        self.remove(key);
        if let Some(expiration_s) = entry.expiration_s {
            self.expiries.insert((expiration_s, key.to_owned()));
        }
        self.entries.insert(key.to_owned(), entry);
        self.last_put_ms.insert(key.to_owned(), now_ms);
        Ok(())
    }

    /// Deletes `key`, if present.
    pub(super) fn remove(&mut self, key: &str) {
        let removed = self.entries.remove(key);
        if let Some(expiration_s) = removed.and_then(|entry| entry.expiration_s) {
            self.expiries.remove(&(expiration_s, key.to_owned()));
        }
    }

    /// One page of `list`: at most `limit` entries under `prefix` after the key `cursor`
    /// continues after or `start_after`, whichever is later, each as `view` shows it, and the
    /// cursor of the next page when more follow.
    pub(super) fn list<T>(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        start_after: Option<String>,
        limit: Option<u32>,
        view: impl Fn(&String, &Entry<S>) -> T,
    ) -> Result<(Vec<T>, Option<String>), Refusal> {
        let limit = page_limit(limit).ok_or_else(|| rejected(S::ZERO_LIMIT.to_owned()))?;
        let after_cursor = match cursor {
            Some(cursor) => {
                Some(decode_cursor(cursor).ok_or_else(|| rejected(S::bad_cursor(cursor)))?)
            }
            None => None,
        };
        let after = after_cursor.max(start_after);
        let (entries, more) = page(&self.entries, prefix, after.as_deref(), limit);
        let next = entries
            .last()
            .filter(|_| more)
            .map(|(key, _)| encode_cursor(key));
        let listed = entries.into_iter().map(|(key, entry)| view(key, entry));
        Ok((listed.collect(), next))
    }
}

/// A refusal of the request itself: retrying cannot help.
pub(super) fn rejected(message: String) -> Refusal {
    (FailureKind::Rejected, message)
}

/// The page size a `limit` option asks for: 1000 when absent, capped at 1000; `None` for 0.
fn page_limit(limit: Option<u32>) -> Option<usize> {
    match limit {
        None => Some(MAX_LIST_LIMIT as usize),
        Some(0) => None,
        Some(n) => Some(n.min(MAX_LIST_LIMIT) as usize),
    }
}

/// An opaque cursor continuing after `last_key`.
fn encode_cursor(last_key: &str) -> String {
    format!("{CURSOR_TAG}{}", to_hex(last_key.as_bytes()))
}

/// The key a cursor from [`encode_cursor`] continues after, or `None` if it is not one.
fn decode_cursor(cursor: &str) -> Option<String> {
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
fn page<'a, V>(
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
