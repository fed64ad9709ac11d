//! What an R2 key says an object is (docs/FORMAT.md, "Keys"): the parsers of `keys.rs`, so a
//! key is recognised exactly when the library could have written it.

use serde::Serialize;

use crate::keys::{
    parse_archive_object_key, parse_backup_object_key, parse_data_key_object,
    parse_erasure_tombstone_key, BackupObjectKind, SessionId, ARCHIVE_PREFIX, BACKUP_PREFIX,
    DATA_KEY_PREFIX, ERASURE_PREFIX,
};

/// Where the example Worker keeps its session records (empty objects).
const EXAMPLE_PREFIX: &str = "example/";

/// The kinds of object the library keeps in R2, by key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// `conversations/YYYY/MM/archive_<sid>_<ms>.json.gz`.
    Archive,
    /// The same with `.enc`: an envelope of the gzip bytes.
    EncryptedArchive,
    /// The earlier implementation's plain JSON `conversations/<y>/<m>/archive_<sid>_<ms>.json`.
    LegacyArchive,
    /// `keys/users/<userKey>.json` or `keys/sessions/<sid>.json`: a wrapped data key.
    DataKey,
    /// `erasures/<userKey>.json`.
    Tombstone,
    /// `erasures/conversations/<sid>.json`.
    ConversationTombstone,
    /// `backups/<id>/manifest.json`.
    BackupManifest,
    /// `backups/<id>/pack-<n>.json` (format 3) or `.json.gz` (format 2).
    BackupPack,
    /// `backups/<id>/data.json.gz` (format 1).
    BackupData,
    /// `backups/<id>/data.json` (the earlier implementation's).
    LegacyBackupData,
    /// `example/…`: the example Worker's session records.
    ExampleRecord,
    /// Under one of the library's prefixes, but none of its keys.
    Unexpected,
    /// Anything else: not the library's.
    Other,
    /// A line of a store export (`object`, `archive`, `document`) whose key is not known, or
    /// its end line.
    ExportLine,
}

impl ObjectKind {
    /// The stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Archive => "archive",
            ObjectKind::EncryptedArchive => "encrypted_archive",
            ObjectKind::LegacyArchive => "legacy_archive",
            ObjectKind::DataKey => "data_key",
            ObjectKind::Tombstone => "tombstone",
            ObjectKind::ConversationTombstone => "conversation_tombstone",
            ObjectKind::BackupManifest => "backup_manifest",
            ObjectKind::BackupPack => "backup_pack",
            ObjectKind::BackupData => "backup_data",
            ObjectKind::LegacyBackupData => "legacy_backup_data",
            ObjectKind::ExampleRecord => "example_record",
            ObjectKind::Unexpected => "unexpected",
            ObjectKind::Other => "other",
            ObjectKind::ExportLine => "export_line",
        }
    }
}

/// The kind of the object under `key`.
pub fn classify(key: &str) -> ObjectKind {
    if let Some(parsed) = parse_archive_object_key(key) {
        return match (parsed.encrypted, parsed.legacy) {
            (true, _) => ObjectKind::EncryptedArchive,
            (false, true) => ObjectKind::LegacyArchive,
            (false, false) => ObjectKind::Archive,
        };
    }
    if parse_data_key_object(key).is_some() {
        return ObjectKind::DataKey;
    }
    if parse_erasure_tombstone_key(key).is_some() {
        return ObjectKind::Tombstone;
    }
    if parse_conversation_tombstone_key(key).is_some() {
        return ObjectKind::ConversationTombstone;
    }
    if let Some((_, kind)) = parse_backup_object_key(key) {
        return match kind {
            BackupObjectKind::Manifest => ObjectKind::BackupManifest,
            BackupObjectKind::Pack(_) => ObjectKind::BackupPack,
            BackupObjectKind::Data => ObjectKind::BackupData,
            BackupObjectKind::LegacyData => ObjectKind::LegacyBackupData,
        };
    }
    if key.starts_with(EXAMPLE_PREFIX) {
        return ObjectKind::ExampleRecord;
    }
    let ours = [
        ARCHIVE_PREFIX,
        BACKUP_PREFIX,
        DATA_KEY_PREFIX,
        ERASURE_PREFIX,
    ];
    if ours.iter().any(|prefix| key.starts_with(prefix)) {
        ObjectKind::Unexpected
    } else {
        ObjectKind::Other
    }
}

/// The session of a key built by `keys::conversation_tombstone_key`.
pub(crate) fn parse_conversation_tombstone_key(key: &str) -> Option<SessionId> {
    let session = key
        .strip_prefix(ERASURE_PREFIX)?
        .strip_prefix("conversations/")?
        .strip_suffix(".json")?;
    SessionId::parse(session).ok()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn every_key_the_library_writes_has_its_kind() {
        let user_key = "6899".repeat(16);
        let cases = [
            (
                "conversations/2025/01/archive_s1_1736157600123.json.gz",
                ObjectKind::Archive,
            ),
            (
                "conversations/2025/01/archive_s1_1736157600123.json.gz.enc",
                ObjectKind::EncryptedArchive,
            ),
            (
                "conversations/2025/1/archive_s1_1736157600123.json",
                ObjectKind::LegacyArchive,
            ),
            ("keys/sessions/s1.json", ObjectKind::DataKey),
            (&format!("keys/users/{user_key}.json"), ObjectKind::DataKey),
            (&format!("erasures/{user_key}.json"), ObjectKind::Tombstone),
            (
                "erasures/conversations/chat-1.json",
                ObjectKind::ConversationTombstone,
            ),
            ("backups/b1/manifest.json", ObjectKind::BackupManifest),
            ("backups/b1/pack-0.json", ObjectKind::BackupPack),
            ("backups/b1/pack-3.json.gz", ObjectKind::BackupPack),
            ("backups/b1/data.json.gz", ObjectKind::BackupData),
            ("backups/b1/data.json", ObjectKind::LegacyBackupData),
            ("example/user_sessions/ab/s1", ObjectKind::ExampleRecord),
            // A month that is not the time's, a pack index with a leading zero.
            (
                "conversations/2025/02/archive_s1_1736157600123.json.gz",
                ObjectKind::Unexpected,
            ),
            ("backups/b1/pack-01.json", ObjectKind::Unexpected),
            ("keys/users/short.json", ObjectKind::Unexpected),
            ("photos/cat.jpg", ObjectKind::Other),
        ];
        for (key, kind) in cases {
            assert_eq!(classify(key), kind, "{key}");
        }
    }
}
