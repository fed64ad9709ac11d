//! `archiveUIMessages`, `retrieveUIMessages`: AI SDK `UIMessage` conversations as archives.
//!
//! A second shape of conversation over the same archive kind, not a second storage system:
//! the UIMessages are read into the conversation an archive holds
//! (`codec::archive::read_ui_messages_input`, docs/FORMAT.md "UIMessage conversations") and
//! stored by the one writer of archives (`archive_input`), so keys, checksums, write order,
//! indexes, listing, backups and retention are those of `archiveConversation`, and a crash
//! leaves what one of its crashes leaves. Retrieval reads the newest archive as
//! `retrieveArchivedConversation` does, as UIMessages (`codec::archive::View::UiMessages`).

use super::archive::Shape;
use super::DataPersistenceService;
use crate::codec::archive::read_ui_messages_input;
use crate::error::Result;
use crate::store::{Clock, KvStore, ObjectStore, Rng};

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Archives the AI SDK `UIMessage`s of session `session_id` (`messages_json`: the JSON
    /// text of the array) with the options `{userId?, summary?}` (`options_json`); returns the
    /// R2 key of the archive.
    ///
    /// Costs what `archive_conversation` costs: 1 R2 put and 2 KV puts (3 with a `userId`),
    /// plus 1 R2 head per key collision. Errors: `INVALID_ID` for the session or user id and
    /// `INVALID_INPUT` naming the path (`messages[3].parts`) on bad input, `ARCHIVE_TOO_LARGE`,
    /// all before anything is written; `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN` as for
    /// `archive_conversation`.
    pub async fn archive_ui_messages(
        &self,
        session_id: &str,
        messages_json: &str,
        options_json: &str,
    ) -> Result<String> {
        let log = self.begin("archiveUIMessages");
        // One reading: undated messages, the key, the metadata and the index entries share it.
        let now_ms = self.clock.now_ms();
        let input = read_ui_messages_input(session_id, messages_json, options_json, now_ms)?;
        self.archive_input(&log, &input, now_ms).await
    }

    /// The newest archive of `session_id` as the JSON text of a `UIMessage` array, verified
    /// against its checksum; `None` when the session has no archive or its object is gone.
    /// Messages archived from UIMessages come back as they were given; plain chat messages
    /// (from `archive_conversation`, or the earlier implementation) as one text part each.
    ///
    /// Costs what `retrieve_archived_conversation` costs (1 KV get, 1 R2 get). Errors: those of
    /// `retrieve_archived_conversation`; `CORRUPT_DATA` naming the archive's key when a message
    /// cannot be read.
    pub async fn retrieve_ui_messages(&self, session_id: &str) -> Result<Option<String>> {
        let log = self.begin("retrieveUIMessages");
        self.newest_archive_json(&log, session_id, Shape::UiMessages)
            .await
    }
}
