//! Finding an archive object of the earlier TypeScript implementation from its `archive_meta`
//! record.
//!
//! That implementation read the clock once for the `archivedAt` it recorded, again for the time
//! in the object key, and a third time for the key's year and (unpadded) month folder. So the
//! key's time can differ from `archivedAt` by a few milliseconds, and near the end of a month
//! the folder can be the next (or previous) month's. The key built from `archivedAt` is tried
//! first (it is right most of the time); when nothing is stored there, the session's keys in
//! the candidate folders ([`legacy_archive_folders`]) are listed, and the newest one that is
//! an archive key of exactly this session is taken. A listed key of another session (an id
//! that continues with `_…` shares the prefix) is never taken.

use super::log::OpLog;
use super::PersistenceService;
use crate::error::Result;
use crate::keys::{
    legacy_archive_folders, legacy_archive_search_prefix, parse_archive_object_key, SessionId,
};
use crate::store::{Clock, KvStore, ListedR2Object, ObjectListOptions, ObjectStore, Rng};

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> PersistenceService<K, R, C> {
    /// The newest legacy archive object of `session` in the folders an archive recorded at
    /// `archived_at_ms` may be in (with its custom metadata), or `None`; and the number of
    /// R2 lists that took.
    ///
    /// Costs 1 R2 list per folder (1, or 2 within a day of a month's end) per 1000 objects
    /// under `conversations/<year>/<month>/archive_<sessionId>_`: 1 unless the session, or
    /// sessions whose id starts with `<sessionId>_`, have more than 1000 archives that month.
    /// Errors: `INVALID_INPUT` for an `archived_at_ms` no key can hold;
    /// `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN`.
    pub(super) async fn find_legacy_archive(
        &self,
        log: &OpLog<'_>,
        session: &SessionId,
        archived_at_ms: i64,
    ) -> Result<(Option<ListedR2Object>, u32)> {
        let mut newest: Option<(i64, ListedR2Object)> = None;
        let mut lists = 0;
        for (year, month) in legacy_archive_folders(archived_at_ms)? {
            let mut options = ObjectListOptions {
                prefix: Some(legacy_archive_search_prefix(session, year, month)),
                include_custom_metadata: true,
                ..ObjectListOptions::default()
            };
            loop {
                lists += 1;
                let page = self.r2_list(log, options.clone()).await?;
                for object in page.objects {
                    let Some(parsed) = parse_archive_object_key(&object.key) else {
                        continue;
                    };
                    let is_newer = newest
                        .as_ref()
                        .is_none_or(|(time, _)| parsed.archived_at_ms > *time);
                    if parsed.legacy && parsed.session_id == *session && is_newer {
                        newest = Some((parsed.archived_at_ms, object));
                    }
                }
                match page.cursor.filter(|_| page.truncated) {
                    Some(cursor) => options.cursor = Some(cursor),
                    None => break,
                }
            }
        }
        Ok((newest.map(|(_, object)| object), lists))
    }
}
