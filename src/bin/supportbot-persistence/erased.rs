//! The erasure tombstones of a bucket copy, and the archives they cover: `export` leaves those
//! out and `verify` reports them `erased` (docs/FORMAT.md "Erasure"). Plaintext archives are
//! matched by their `userId` hashed as the store hashes it, with `PERSISTENCE_HASH_SECRET` when
//! the store has a hash secret; encrypted ones also by the user key their envelope names.

use supportbot_persistence::check::erasure::{Erased, Erasures};
use supportbot_persistence::check::{classify, ObjectKind};
use supportbot_persistence::hash::KeyHasher;

use crate::bucket::Bucket;

/// The environment variable holding the store's hash secret: the Worker secret's name.
pub const HASH_SECRET_VAR: &str = "PERSISTENCE_HASH_SECRET";

/// The tombstones of a copy and the hasher its user ids are hashed with.
pub struct Tombstones {
    erasures: Erasures,
    hasher: KeyHasher,
    keyed: bool,
    /// Whether some archive's hashed `userId` is a tombstone's user key.
    matched: bool,
}

impl Tombstones {
    /// Reads every tombstone of `bucket` (those that do not read are left to `verify`), with
    /// the hasher of [`HASH_SECRET_VAR`] (its errors never show the secret).
    pub fn read(bucket: &Bucket) -> Result<Tombstones, String> {
        let hasher = hasher_from_env()?;
        let keyed = hasher.is_keyed();
        let mut erasures = Erasures::default();
        let keys: Vec<&str> = bucket
            .keys()
            .filter(|key| {
                matches!(
                    classify(key),
                    ObjectKind::Tombstone | ObjectKind::ConversationTombstone
                )
            })
            .collect();
        for key in keys {
            if let Some(bytes) = bucket.read(key)? {
                erasures.add(key, &bytes);
            }
        }
        Ok(Tombstones {
            erasures,
            hasher,
            keyed,
            matched: false,
        })
    }

    /// Whether an erasure covers the archive `bytes` under `key` (`user_id`: its document's,
    /// when it was read).
    pub fn erasure_of(
        &mut self,
        key: &str,
        bytes: &[u8],
        user_id: Option<&str>,
        readable: bool,
    ) -> Option<Erased> {
        let owner = Erasures::owner(&self.hasher, key, bytes, user_id);
        if let Some(user_key) = &owner.hashed_user_key {
            self.matched |= self.erasures.is_erased_user(user_key);
        }
        self.erasures.erasure_of(key, &owner, readable)
    }

    /// The warning to print when the copy holds users' tombstones, no archive's hashed user id
    /// is one of theirs and no hash secret was given: a store with a hash secret hashes user
    /// ids with it, so without it its erased users' plaintext archives cannot be recognised.
    pub fn warning(&self) -> Option<String> {
        (self.erasures.has_users() && !self.matched && !self.keyed).then(|| {
            format!(
                "warning: the copy holds erasure tombstones, but no archive's user matches one \
                 of them: if the store has a hash secret, set {HASH_SECRET_VAR} to it, or the \
                 archives of erased users cannot be recognised"
            )
        })
    }
}

/// The hasher of [`HASH_SECRET_VAR`]: keyed with it when it is set and not empty, else plain
/// SHA-256. Its errors name the variable and the secret's length, never the secret.
fn hasher_from_env() -> Result<KeyHasher, String> {
    let Some(value) = std::env::var_os(HASH_SECRET_VAR) else {
        return Ok(KeyHasher::plain());
    };
    let secret = value
        .into_string()
        .map_err(|_| format!("{HASH_SECRET_VAR} is not UTF-8"))?;
    if secret.is_empty() {
        return Ok(KeyHasher::plain());
    }
    KeyHasher::keyed(secret.as_bytes()).map_err(|err| format!("{HASH_SECRET_VAR}: {err}"))
}
