//! Which archives exist, learned from a complete R2 listing, so index entries that point at a
//! missing archive can be found. Only a listing seen from its first to its last page counts:
//! an index entry is never deleted because a listing was partial.

use std::collections::BTreeSet;

/// The archive keys that survive this sweep, while they are being listed and afterwards.
#[derive(Debug)]
pub(super) enum ArchiveCatalog {
    /// Listing from the start; holds the surviving archive keys seen so far.
    Collecting(BTreeSet<String>),
    /// The whole listing was seen; holds every surviving archive key.
    Complete(BTreeSet<String>),
    /// The listing started in the middle, or had more archives than may be remembered.
    Unavailable,
}

impl ArchiveCatalog {
    /// Remembers a surviving archive key; gives up past `max_keys`, which bounds memory.
    pub(super) fn add(&mut self, key: &str, max_keys: usize) {
        if let Self::Collecting(keys) = self {
            if keys.len() < max_keys {
                keys.insert(key.to_owned());
            } else {
                *self = Self::Unavailable;
            }
        }
    }

    /// The listing reached its end.
    pub(super) fn complete(&mut self) {
        if let Self::Collecting(keys) = self {
            *self = Self::Complete(std::mem::take(keys));
        }
    }

    /// Whether a complete listing showed that no archive is stored under `key`.
    pub(super) fn is_known_missing(&self, key: &str) -> bool {
        matches!(self, Self::Complete(keys) if !keys.contains(key))
    }
}
