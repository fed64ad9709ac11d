//! Finding an archive object of the earlier TypeScript implementation from its `archive_meta`
//! record.
//!
//! That implementation read the clock once for the `archivedAt` it recorded, again for the time
//! in the object key, and a third time for the key's year and (unpadded) month folder. So the
//! key's time can differ from `archivedAt` by a few milliseconds, and near the end of a month
//! the folder can be the next (or previous) month's. The key built from `archivedAt` is tried
//! first (it is right most of the time); when nothing is stored there, each candidate folder
//! ([`legacy_archive_folders`]) is listed once, from the session's keys
//! [`LEGACY_KEY_TIME_SLACK_MS`] before `archivedAt`, and the newest archive key of exactly
//! this session within that slack on either side is taken. A listed key of another session (an
//! id that continues with `_…` shares the prefix) is never taken, nor an archive of the session
//! from another time: the record names one archive, and if it is gone the answer is `None`.

use super::log::OpLog;
use super::DataPersistenceService;
use crate::error::Result;
use crate::keys::{
    legacy_archive_folders, legacy_archive_search_prefix, parse_archive_object_key, SessionId,
};
use crate::store::{Clock, KvStore, ListedR2Object, ObjectListOptions, ObjectStore, Rng};

/// How far the time in a legacy key may be from the recorded `archivedAt`: the clock readings
/// were milliseconds apart; a minute leaves room for a slow isolate and excludes every other
/// archive of the session but one made within the same minute.
pub(super) const LEGACY_KEY_TIME_SLACK_MS: i64 = 60_000;

/// Objects one listing returns: the window holds the session's archives of two minutes, then
/// sessions whose id continues with `_…` (`_` sorts after every digit), so a short page suffices.
const SEARCH_PAGE_LIMIT: u32 = 100;

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// The newest legacy archive object of `session` whose key time is within
    /// [`LEGACY_KEY_TIME_SLACK_MS`] of `archived_at_ms`, in the folders such an archive may be
    /// in (with its custom metadata), or `None`.
    ///
    /// Costs exactly one R2 list per candidate folder: 1, or 2 within a day of a month's end
    /// ([`legacy_archive_folders`]). Errors: `INVALID_INPUT` for an `archived_at_ms` no key can
    /// hold; `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN`.
    pub(super) async fn find_legacy_archive(
        &self,
        log: &OpLog<'_>,
        session: &SessionId,
        archived_at_ms: i64,
    ) -> Result<Option<ListedR2Object>> {
        let earliest = archived_at_ms
            .saturating_sub(LEGACY_KEY_TIME_SLACK_MS)
            .max(0);
        let latest = archived_at_ms.saturating_add(LEGACY_KEY_TIME_SLACK_MS);
        let mut newest: Option<(i64, ListedR2Object)> = None;
        for (year, month) in legacy_archive_folders(archived_at_ms)? {
            let prefix = legacy_archive_search_prefix(session, year, month);
            // Times of one digit count sort as numbers; across a change of digit count (2001)
            // the listing starts at the prefix.
            let before = earliest.saturating_sub(1);
            let start_after = (before.to_string().len() == latest.to_string().len())
                .then(|| format!("{prefix}{before}"));
            let options = ObjectListOptions {
                prefix: Some(prefix),
                start_after,
                limit: Some(SEARCH_PAGE_LIMIT),
                include_custom_metadata: true,
                ..ObjectListOptions::default()
            };
            for object in self.r2_list(log, options).await?.objects {
                let Some(parsed) = parse_archive_object_key(&object.key) else {
                    continue;
                };
                let time = parsed.archived_at_ms;
                let in_window = (earliest..=latest).contains(&time);
                let is_newer = newest.as_ref().is_none_or(|(newest, _)| time > *newest);
                if parsed.legacy && parsed.session_id == *session && in_window && is_newer {
                    newest = Some((time, object));
                }
            }
        }
        Ok(newest.map(|(_, object)| object))
    }
}
