//! A backup's summary: the list metadata of its KV entries (`backup_manifest:<id>` and
//! `backup_index:<inverted time>:<id>`), so that `listBackups`, the backup rotation and the
//! next automated backup decide from a listing without reading any manifest
//! (docs/FORMAT.md, "Backups").

use serde::{Deserialize, Serialize};

use super::packs::{BackupKind, PackedManifest};
use crate::keys::BackupId;

/// What the KV entries of a committed backup say about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSummary {
    /// When it was made (epoch ms).
    #[serde(rename = "createdAt")]
    pub created_at_ms: i64,
    /// Who made it.
    pub kind: BackupKind,
    /// How many sessions it holds.
    pub sessions: u64,
    /// Sum of its packs' stored sizes (bytes in R2, manifest excluded).
    pub stored_size: u64,
    /// The backup it is incremental to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_backup_id: Option<BackupId>,
    /// Made with `keep: true`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep: bool,
    /// Part of the automated chain: the next automated backup may be incremental to it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub chained: bool,
    /// When the chain it belongs to started with a full backup (epoch ms).
    #[serde(
        rename = "chainStart",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub chain_start_ms: Option<i64>,
    /// The hashed id of the user it was made for (never the raw id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_key: Option<String>,
}

fn is_false(value: &bool) -> bool {
    !value
}

impl BackupSummary {
    /// The summary of `manifest`; `chain_start_ms` when it continues (or starts) the automated
    /// chain, `user_key` when it was made for a user.
    pub fn of_manifest(
        manifest: &PackedManifest,
        chain_start_ms: Option<i64>,
        user_key: Option<String>,
    ) -> Self {
        BackupSummary {
            created_at_ms: manifest.created_at_ms,
            kind: manifest.kind,
            sessions: manifest.session_ids.len() as u64,
            stored_size: manifest.packs.iter().map(|pack| pack.stored_size).sum(),
            parent_backup_id: manifest.parent_backup_id.clone(),
            keep: manifest.keep,
            chained: chain_start_ms.is_some(),
            chain_start_ms,
            user_key,
        }
    }

    /// Reads a summary from list metadata; `None` when it is absent or not one (an entry of the
    /// earlier implementation, or written by hand).
    pub fn from_metadata(metadata: Option<&serde_json::Value>) -> Option<Self> {
        BackupSummary::deserialize(metadata?).ok()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;

    #[test]
    fn summaries_round_trip_through_list_metadata_and_skip_what_is_unset() {
        let summary = BackupSummary {
            created_at_ms: 5,
            kind: BackupKind::Automated,
            sessions: 3,
            stored_size: 900,
            parent_backup_id: Some(BackupId::parse("backup_p").unwrap()),
            keep: false,
            chained: true,
            chain_start_ms: Some(1),
            user_key: None,
        };
        let metadata = serde_json::to_value(&summary).unwrap();
        assert_eq!(
            metadata,
            json!({"createdAt": 5, "kind": "automated", "sessions": 3, "storedSize": 900,
                   "parentBackupId": "backup_p", "chained": true, "chainStart": 1})
        );
        assert_eq!(BackupSummary::from_metadata(Some(&metadata)), Some(summary));
        for unreadable in [
            json!({"createdAt": 5}),
            json!("x"),
            json!({"createdAt": "5", "kind": "manual", "sessions": 1, "storedSize": 1}),
        ] {
            assert_eq!(
                BackupSummary::from_metadata(Some(&unreadable)),
                None,
                "{unreadable}"
            );
        }
        assert_eq!(BackupSummary::from_metadata(None), None);
    }
}
