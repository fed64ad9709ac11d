//! The retention planner: which stored keys a sweep deletes, and why.
//!
//! Pure: it reads listing pages (KV keys with their list metadata, R2 objects with their upload
//! time, size and custom metadata) and a `now` given as a parameter, and returns deletions; the
//! service lists, deletes and reports. Every rule decides from a timestamp that is part of the
//! listing, never from a guess: an entry whose deciding time cannot be read is kept. The rules
//! are tabled in docs/FORMAT.md, "Retention".
//!
//! Writers must store what the rules read:
//! - cache keys: list metadata `{"createdAt", "expiresAt"}` (`codec::cache::cache_list_metadata`);
//! - `archive_meta:`, `user_archives:` and `archive_index:` entries: list metadata with
//!   [`INDEX_ARCHIVE_KEY_FIELD`], the R2 key of the archive they point at;
//! - backup `manifest.json` in R2: custom metadata [`BACKUP_CREATED_AT_FIELD`] (decimal epoch
//!   ms; optional, the upload time is used as well), and `backup_manifest:` KV entries: list
//!   metadata with [`BACKUP_CREATED_AT_FIELD`] as a number.

mod archive_catalog;
mod backup_sweep;
mod decision;
mod gfs;
mod listed;
mod planner;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests;

pub use backup_sweep::{BackupDecisions, BackupFateReport};
pub use decision::{
    batch_r2_deletions, DeletionCounts, DeletionReason, PlannedDeletion, RetentionReport,
};
pub use gfs::{
    plan_backups, BackupFate, BackupRules, BackupVersion, BackupWalk, GfsPolicy, KeepReason,
};
pub use listed::{ListedKvKey, ListedR2Object};
pub use planner::{RetentionOptions, RetentionPlanner};

use crate::error::Result;
use crate::policy::DataRetentionPolicy;

/// Field of the KV list metadata of `archive_meta:`, `user_archives:` and `archive_index:`
/// entries that holds the R2 key of the archive the entry points at (as
/// `codec::archive::listing_summary` writes it).
pub const INDEX_ARCHIVE_KEY_FIELD: &str = "key";

/// Field holding a backup's creation time in epoch ms: in the custom metadata of its R2
/// `manifest.json` (a decimal string) and in the list metadata of its `backup_manifest:` KV
/// entry (a number).
pub const BACKUP_CREATED_AT_FIELD: &str = "createdAt";

/// The limits of one sweep, all measured back from `now_ms`.
#[derive(Debug, Clone, Copy)]
struct Limits {
    now_ms: i64,
    archive_retention_ms: u64,
    orphan_backup_grace_ms: u64,
    missing_archive_grace_ms: u64,
}

/// Whether something made at `time_ms` is at least `limit_ms` old at `now_ms`. Exact for every
/// input (no overflow), so nothing younger than its limit can ever qualify.
fn has_aged(time_ms: i64, now_ms: i64, limit_ms: u64) -> bool {
    i128::from(now_ms) - i128::from(time_ms) >= i128::from(limit_ms)
}

/// Plans a whole sweep at once over complete listings, as if every R2 deletion succeeded: the R2
/// listing in key order, then the KV listing. The same as feeding a [`RetentionPlanner`] page by page, however the pages are cut.
///
/// Errors: `INVALID_INPUT` naming `r2Page[i].key` if `r2_listing` is not in strictly increasing
/// key order.
pub fn plan_retention(
    policy: &DataRetentionPolicy,
    now_ms: i64,
    options: RetentionOptions,
    r2_listing: &[ListedR2Object],
    kv_listing: &[ListedKvKey],
) -> Result<Vec<PlannedDeletion>> {
    let mut planner = RetentionPlanner::new(policy, now_ms, options);
    let mut planned = planner.plan_r2_page(r2_listing)?;
    planned.extend(planner.finish_r2_listing());
    planner.confirm_all(&planned);
    planned.extend(planner.plan_kv_page(kv_listing));
    Ok(planned)
}
