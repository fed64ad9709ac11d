//! `archiveSegment`, `retrieveUIMessagesByKey`: the oldest messages of a live conversation,
//! moved out of a Durable Object into R2 while the conversation goes on (the Agents SDK
//! integration's offload, `supportbot-persistence/agents`).
//!
//! A segment is an archive of the one kind, of UIMessages (`archive_ui_messages`), under the
//! session id `<sessionId>:segment-<6-digit n>` (`keys::segment_session_id`, docs/FORMAT.md
//! "Segments"). So its object is verified, written and indexed like any archive: the global
//! archive index takes it into whole-store backups, retention ages it, and an erasure of the
//! session finds it by the session id prefix. It records no user: a user's listing shows one
//! entry per conversation (its archive), never its segments.

use super::archive::Shape;
use super::DataPersistenceService;
use crate::error::Result;
use crate::keys::{segment_session_id, SessionId};
use crate::store::{Clock, KvStore, ObjectStore, Rng};

/// Options of a segment: no user (kept out of user listings) and no summary.
const SEGMENT_OPTIONS: &str = "{}";

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Archives the UIMessages `messages_json` (the JSON text of an array) as segment `seq`
    /// (1..=999999) of session `session_id`; returns the R2 key of the segment's archive.
    ///
    /// Costs what `archive_ui_messages` costs without a user: 1 R2 put and 2 KV puts (plus 1 R2
    /// head per key collision). Errors: `INVALID_ID` for the session id; `INVALID_INPUT` naming
    /// `seq`, `sessionId` (longer than 113 bytes) or the message path; `ARCHIVE_TOO_LARGE`, all
    /// before anything is written; `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN`.
    pub async fn archive_segment(
        &self,
        session_id: &str,
        seq: u32,
        messages_json: &str,
    ) -> Result<String> {
        let segment = segment_session_id(&SessionId::parse(session_id)?, seq)?;
        self.archive_ui_messages(segment.as_str(), messages_json, SEGMENT_OPTIONS)
            .await
    }

    /// The archive (or segment) stored under `archive_key` as the JSON text of a UIMessage
    /// array, verified as `retrieve_archive` verifies it; `None` when no object is stored there.
    ///
    /// Strongly consistent (R2 only): a segment is readable the moment its key was returned.
    /// Costs 1 R2 get. Errors: those of `retrieve_archive`; `CORRUPT_DATA` naming the key when
    /// a message cannot be read.
    pub async fn retrieve_ui_messages_by_key(&self, archive_key: &str) -> Result<Option<String>> {
        // Logged as the retrieval of an archive by its key, which it is.
        let log = self.begin("retrieveArchive");
        self.archive_json_by_key(&log, archive_key, Shape::UiMessages)
            .await
    }
}
