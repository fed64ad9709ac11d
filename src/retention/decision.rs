//! What the retention planner decides, how R2 deletions are batched, and the report of a sweep.

use serde::Serialize;

use crate::platform::{Binding, R2_MAX_DELETE_KEYS};

/// Why a key is deleted. The JSON form is a stable snake_case string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionReason {
    /// A cached embedding or query result whose own `expiresAt` has passed.
    ExpiredCacheEntry,
    /// A conversation archive older than `archiveRetention`.
    ArchivePastRetention,
    /// An object of a committed backup the backup policy no longer keeps (rotation, or age when
    /// every `backupKeep*` count is 0), or one of its KV entries.
    BackupPastRetention,
    /// Backup data that never got a manifest and is older than the grace period.
    OrphanBackupData,
    /// A KV index or metadata entry whose archive is past retention or missing.
    DanglingIndexEntry,
}

impl DeletionReason {
    /// Every reason, in declaration order.
    pub const ALL: [Self; 5] = [
        Self::ExpiredCacheEntry,
        Self::ArchivePastRetention,
        Self::BackupPastRetention,
        Self::OrphanBackupData,
        Self::DanglingIndexEntry,
    ];

    /// The stable string of this reason, the same as its JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExpiredCacheEntry => "expired_cache_entry",
            Self::ArchivePastRetention => "archive_past_retention",
            Self::BackupPastRetention => "backup_past_retention",
            Self::OrphanBackupData => "orphan_backup_data",
            Self::DanglingIndexEntry => "dangling_index_entry",
        }
    }
}

/// One key the planner wants deleted, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedDeletion {
    /// Where the key lives.
    pub store: Binding,
    /// The key.
    pub key: String,
    /// Why it is deleted.
    pub reason: DeletionReason,
    /// Size of the object for R2 keys; `None` for KV keys (a KV listing does not tell sizes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

/// The R2 keys of `deletions`, in order, in batches for R2's `delete(keys)`: at most
/// `max_per_call` keys per batch, clamped to 1..=[`R2_MAX_DELETE_KEYS`]. KV keys are left
/// out (KV deletes one key per call).
pub fn batch_r2_deletions(deletions: &[PlannedDeletion], max_per_call: usize) -> Vec<Vec<String>> {
    let batch_len = max_per_call.clamp(1, R2_MAX_DELETE_KEYS);
    let r2_keys: Vec<&str> = deletions
        .iter()
        .filter(|deletion| deletion.store == Binding::R2)
        .map(|deletion| deletion.key.as_str())
        .collect();
    r2_keys
        .chunks(batch_len)
        .map(|batch| batch.iter().map(|&key| key.to_owned()).collect())
        .collect()
}

/// Number of deleted keys per reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletionCounts {
    /// Keys deleted as [`DeletionReason::ExpiredCacheEntry`].
    pub expired_cache_entry: u64,
    /// Keys deleted as [`DeletionReason::ArchivePastRetention`].
    pub archive_past_retention: u64,
    /// Keys deleted as [`DeletionReason::BackupPastRetention`].
    pub backup_past_retention: u64,
    /// Keys deleted as [`DeletionReason::OrphanBackupData`].
    pub orphan_backup_data: u64,
    /// Keys deleted as [`DeletionReason::DanglingIndexEntry`].
    pub dangling_index_entry: u64,
}

impl DeletionCounts {
    /// The count for `reason`.
    pub fn get(&self, reason: DeletionReason) -> u64 {
        match reason {
            DeletionReason::ExpiredCacheEntry => self.expired_cache_entry,
            DeletionReason::ArchivePastRetention => self.archive_past_retention,
            DeletionReason::BackupPastRetention => self.backup_past_retention,
            DeletionReason::OrphanBackupData => self.orphan_backup_data,
            DeletionReason::DanglingIndexEntry => self.dangling_index_entry,
        }
    }

    fn get_mut(&mut self, reason: DeletionReason) -> &mut u64 {
        match reason {
            DeletionReason::ExpiredCacheEntry => &mut self.expired_cache_entry,
            DeletionReason::ArchivePastRetention => &mut self.archive_past_retention,
            DeletionReason::BackupPastRetention => &mut self.backup_past_retention,
            DeletionReason::OrphanBackupData => &mut self.orphan_backup_data,
            DeletionReason::DanglingIndexEntry => &mut self.dangling_index_entry,
        }
    }

    /// All deleted keys, whatever the reason.
    pub fn total(&self) -> u64 {
        DeletionReason::ALL
            .iter()
            .fold(0, |sum, &reason| sum.saturating_add(self.get(reason)))
    }
}

/// What a retention sweep deleted, as returned to JavaScript:
/// `{"deleted": {"expiredCacheEntry": 0, ...}, "bytesFreed": 0, "keys": [{"store": "r2",
/// "key": "...", "reason": "archive_past_retention", "sizeBytes": 123}]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionReport {
    /// Deleted keys per reason.
    pub deleted: DeletionCounts,
    /// Bytes of R2 objects deleted (KV sizes are unknown and not counted).
    pub bytes_freed: u64,
    /// Every deleted key, in the order recorded.
    pub keys: Vec<PlannedDeletion>,
}

impl RetentionReport {
    /// Records a deletion that was carried out.
    pub fn record(&mut self, deletion: PlannedDeletion) {
        let count = self.deleted.get_mut(deletion.reason);
        *count = count.saturating_add(1);
        self.bytes_freed = self
            .bytes_freed
            .saturating_add(deletion.size_bytes.unwrap_or(0));
        self.keys.push(deletion);
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn deletion(store: Binding, key: &str, reason: DeletionReason) -> PlannedDeletion {
        PlannedDeletion {
            store,
            key: key.to_owned(),
            reason,
            size_bytes: (store == Binding::R2).then_some(10),
        }
    }

    #[test]
    fn reasons_serialize_as_their_stable_strings() {
        let json: Vec<String> = DeletionReason::ALL
            .iter()
            .map(|reason| serde_json::to_string(reason).unwrap())
            .collect();
        assert_eq!(
            json,
            [
                "\"expired_cache_entry\"",
                "\"archive_past_retention\"",
                "\"backup_past_retention\"",
                "\"orphan_backup_data\"",
                "\"dangling_index_entry\"",
            ]
        );
        for reason in DeletionReason::ALL {
            assert_eq!(
                serde_json::to_string(&reason).unwrap(),
                format!("\"{}\"", reason.as_str())
            );
        }
    }

    #[test]
    fn batches_only_r2_keys_at_most_1000_per_call() {
        let mut deletions: Vec<PlannedDeletion> = (0..2500)
            .map(|i| {
                deletion(
                    Binding::R2,
                    &format!("r{i:04}"),
                    DeletionReason::ArchivePastRetention,
                )
            })
            .collect();
        deletions.insert(
            7,
            deletion(Binding::Kv, "query:x", DeletionReason::ExpiredCacheEntry),
        );

        let batches = batch_r2_deletions(&deletions, 5000);
        let lens: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(lens, [1000, 1000, 500]);
        assert_eq!(batches[0][0], "r0000");
        assert_eq!(batches[0][7], "r0007");
        assert_eq!(batches[2][499], "r2499");
        assert!(batches.iter().flatten().all(|key| key.starts_with('r')));

        let lens: Vec<usize> = batch_r2_deletions(&deletions, 999)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(lens, [999, 999, 502]);
        assert_eq!(batch_r2_deletions(&deletions[..3], 0).len(), 3);
        assert!(batch_r2_deletions(&[], 1000).is_empty());
    }

    #[test]
    fn report_counts_reasons_and_bytes_in_camel_case_json() {
        let mut report = RetentionReport::default();
        report.record(deletion(
            Binding::R2,
            "conversations/a",
            DeletionReason::ArchivePastRetention,
        ));
        report.record(deletion(
            Binding::R2,
            "conversations/b",
            DeletionReason::ArchivePastRetention,
        ));
        report.record(deletion(
            Binding::Kv,
            "query:q",
            DeletionReason::ExpiredCacheEntry,
        ));
        assert_eq!(report.deleted.get(DeletionReason::ArchivePastRetention), 2);
        assert_eq!(report.deleted.total(), 3);
        assert_eq!(report.bytes_freed, 20);
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            concat!(
                r#"{"deleted":{"expiredCacheEntry":1,"archivePastRetention":2,"#,
                r#""backupPastRetention":0,"orphanBackupData":0,"danglingIndexEntry":0},"#,
                r#""bytesFreed":20,"keys":["#,
                r#"{"store":"r2","key":"conversations/a","reason":"archive_past_retention","sizeBytes":10},"#,
                r#"{"store":"r2","key":"conversations/b","reason":"archive_past_retention","sizeBytes":10},"#,
                r#"{"store":"kv","key":"query:q","reason":"expired_cache_entry"}]}"#
            )
        );
    }
}
