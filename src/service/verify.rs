//! `verifyStorage`: reads back what is stored and checks it, on the run driver (`super::run`),
//! repairing what it can when asked.
//!
//! A *pass* has three phases, each resumable at the key it stopped at:
//! 1. **archives**: every object under `conversations/` is read and checked as a retrieval
//!    checks it (its recorded SHA-256, gzip, document, decryption, session), then its global and
//!    per-user index entries are looked up (archives younger than `INDEX_LAG_MS`, which KV may
//!    not show yet, and the earlier implementation's, indexed by `archive_meta` alone, skip
//!    that);
//! 2. **entries**: every KV entry that points at an archive (`archive_meta:`, `archive_index:`,
//!    `user_archives:`, by the `key` in its list metadata) must find it in R2;
//! 3. **backups**: every committed backup's manifest is read, then each pack against it.
//!
//! With `sample: "1/n"` a pass checks only what hashes to its slot (an archive and the entries
//! pointing at it by the archive's key, a backup by its id); each pass takes the slot after the
//! previous pass's, so n passes check everything once ("1/7" on a daily cron: a week). The
//! resume point is `verify:cursor`; `verify:summary` keeps the last complete pass and every
//! problem still open, for `healthCheck` (docs/FORMAT.md, "Verification").
//!
//! Repair (`repair: true`) never deletes anything: a damaged or missing archive is written
//! back from a verified copy (`super::verify_repair`), a missing index entry is rebuilt from
//! the archive. What an erasure covers is not a problem, and never brought back.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::archive::{check_archive_session, Shape};
use super::backup_steps::INDEX_LAG_MS;
use super::index_entries::{recorded_sha256, OWNER_KEY_FIELD};
use super::log::OpLog;
use super::run::{stop_reason, Run, RunBudget, RunReport, RunStatus, StopReason};
use super::tombstone::ErasureCheck;
use super::walk::{KvPager, KvPosition};
use super::DataPersistenceService;
use crate::codec::archive::DecodedArchiveJson;
use crate::codec::backup::{decode_packed_manifest, manifest_shape, verify_pack, ManifestShape};
use crate::codec::json_text;
use crate::error::{PersistenceError, Result};
use crate::hash::sha256;
use crate::keys::{
    archive_index_key, backup_manifest_kv_key, backup_manifest_object_key,
    parse_archive_object_key, parse_backup_object_key, user_index_key, ArchiveObjectKey, BackupId,
    BackupObjectKind, SessionId, UserId, ARCHIVE_INDEX_PREFIX, ARCHIVE_META_PREFIX, ARCHIVE_PREFIX,
    BACKUP_PREFIX, USER_INDEX_PREFIX, VERIFY_CURSOR_KEY, VERIFY_SUMMARY_KEY,
};
use crate::store::{Clock, KvPutOptions, KvStore, ListedR2Object, ObjectMeta, ObjectStore, Rng};

/// Smallest budget a run needs: its resume point and summary read and written, one listing
/// and one archive checked.
pub const MIN_VERIFY_CALLS: u32 = 12;
/// Calls checking one archive may take: its get, its data key, two index entries and its
/// user's tombstone (read only when something is wrong).
const ARCHIVE_CHECK_CALLS: u32 = 5;
/// Calls reserved to write the summary at the end of a run (besides the resume point).
const SUMMARY_CALLS: u32 = 1;
/// Problems one report lists (`problemsFound` counts them all).
pub const MAX_REPORTED_PROBLEMS: usize = 100;
/// Open problems the summary keeps; past it, new ones are counted but not listed.
const MAX_OPEN_PROBLEMS: usize = 1000;
/// The KV prefixes whose entries point at archives, in the order a pass checks them.
const ENTRY_PREFIXES: [&str; 3] = [ARCHIVE_META_PREFIX, ARCHIVE_INDEX_PREFIX, USER_INDEX_PREFIX];

/// Which part of the store a verification run samples: `1/n` of it (`n` = 1: everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The sample's denominator, 1..=[`Sample::MAX_OF`].
    pub of: u32,
}

impl Default for Sample {
    fn default() -> Self {
        Sample { of: 1 }
    }
}

impl Sample {
    /// Largest denominator: a sample of a year's daily runs.
    pub const MAX_OF: u32 = 366;

    /// Parses `"1/n"` or `"all"`. Errors: `INVALID_INPUT` naming `sample`.
    pub fn parse(text: &str) -> Result<Sample> {
        if text == "all" {
            return Ok(Sample::default());
        }
        let of = text
            .strip_prefix("1/")
            .and_then(|of| of.parse::<u32>().ok())
            .filter(|of| (1..=Self::MAX_OF).contains(of))
            .ok_or_else(|| {
                PersistenceError::invalid_input(
                    "sample",
                    format!(
                        "{text:?} is not \"all\" or \"1/n\" with n from 1 to {}",
                        Self::MAX_OF
                    ),
                )
            })?;
        Ok(Sample { of })
    }
}

/// The slot of 0..`of` that `key` belongs to: the first 8 bytes of its SHA-256.
fn slot_of(key: &str, of: u32) -> u32 {
    let digest = sha256(key.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    // Below `of`, a u32.
    (u64::from_be_bytes(head) % u64::from(of.max(1))) as u32
}

/// What `verifyStorage` does besides its budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// The part of the store a pass checks.
    pub sample: Sample,
    /// Write back damaged or missing archives from verified copies, and rebuild missing index
    /// entries.
    pub repair: bool,
}

/// What is wrong with a stored object. Stable names (snake_case in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Its bytes do not match the SHA-256 recorded for them.
    ChecksumMismatch,
    /// Its checksum matches (or none is recorded) but it cannot be read: gzip, JSON, or a
    /// document that holds another session.
    Corrupt,
    /// Encrypted, and its data key is gone or the bytes fail authentication.
    Undecryptable,
    /// Written by a newer version of this library.
    UnsupportedFormat,
    /// Referenced (by an index entry or a manifest) but not stored.
    Missing,
    /// An archive without its global or per-user index entry: listings do not show it.
    NotIndexed,
}

impl ProblemKind {
    /// The problem a failed read of an object shows; `None` for a storage failure, which stops
    /// the run instead.
    fn of(err: &PersistenceError) -> Option<ProblemKind> {
        Some(match err {
            PersistenceError::ChecksumMismatch { .. } => ProblemKind::ChecksumMismatch,
            PersistenceError::CorruptData { .. } | PersistenceError::ArchiveTooLarge { .. } => {
                ProblemKind::Corrupt
            }
            PersistenceError::KeyUnavailable { .. } | PersistenceError::DecryptionFailed { .. } => {
                ProblemKind::Undecryptable
            }
            PersistenceError::UnsupportedFormat { .. } => ProblemKind::UnsupportedFormat,
            PersistenceError::NotFound { .. } => ProblemKind::Missing,
            _ => return None,
        })
    }
}

/// One problem a run found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// The R2 key of the object (for an index entry's missing archive, the archive's key).
    pub key: String,
    /// What is wrong.
    pub problem: ProblemKind,
    /// Details, for a person (which entry, which error).
    pub detail: String,
    /// Whether the run repaired it.
    pub repaired: bool,
    /// Where the repair's copy came from (`"backup <id>"`), when repaired from a copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired_from: Option<String>,
}

/// What `verifyStorage` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationReport {
    /// The pass's sample, `"1/n"`.
    pub sample: String,
    /// The slot of the sample this pass checks (0..n).
    pub slot: u32,
    /// Objects read and checked by this run (archives, manifests, packs).
    pub objects_checked: u64,
    /// Their stored bytes.
    pub bytes_checked: u64,
    /// KV entries checked (an archive's index entries, entries pointing at archives).
    pub entries_checked: u64,
    /// Backups whose manifest was read.
    pub backups_checked: u64,
    /// Problems found by this run (at most [`MAX_REPORTED_PROBLEMS`]), each once.
    pub problems: Vec<Problem>,
    /// All problems this run found.
    pub problems_found: u32,
    /// How many of them it repaired.
    pub repaired: u32,
    /// The run's status: `complete` means the pass (of this sample's slot) is.
    #[serde(flatten)]
    pub status: RunStatus,
}

impl RunReport for VerificationReport {
    fn status_mut(&mut self) -> &mut RunStatus {
        &mut self.status
    }
}

/// The phase of a pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Phase {
    #[default]
    Archives,
    Entries,
    Backups,
}

/// A pass in progress: which slot of which sample, since when, and its counts so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pass {
    /// The sample's denominator; 0 in a position read from nothing.
    of: u32,
    slot: u32,
    started_at: i64,
    /// Objects and entries checked by the pass's runs so far.
    checked: u64,
}

/// Where a pass continues (`verify:cursor`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerifyPosition {
    pass: Pass,
    phase: Phase,
    /// Archives and backups: the last R2 key handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    /// Entries: which of [`ENTRY_PREFIXES`], and where in it.
    #[serde(default)]
    prefix: usize,
    #[serde(default)]
    kv: KvPosition,
    /// Backups: the manifest of the backup a run stopped in, and its first pack not yet
    /// checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup: Option<String>,
    #[serde(default)]
    next_pack: u32,
}

/// A problem still open: found, not repaired, and not seen sound since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenProblem {
    /// What is wrong.
    pub problem: ProblemKind,
    /// When a run found it (epoch ms).
    pub found_at: i64,
}

/// What verification keeps between runs (`verify:summary`): `healthCheck` reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationSummary {
    /// When the first run ended (epoch ms): the age of a verification that never completed.
    #[serde(default)]
    pub first_run_at: Option<i64>,
    /// When a run last ended (epoch ms).
    #[serde(default)]
    pub last_run_at: Option<i64>,
    /// When a pass last completed (epoch ms).
    #[serde(default)]
    pub last_complete_at: Option<i64>,
    /// Objects and entries that pass checked.
    #[serde(default)]
    pub objects_checked: u64,
    /// The slot the next pass checks.
    #[serde(default)]
    pub next_slot: u32,
    /// Unrepaired problems by object key, until the object is found sound or repaired (at
    /// most 1000 listed).
    #[serde(default)]
    pub open_problems: BTreeMap<String, OpenProblem>,
    /// Problems found while the list was full.
    #[serde(default)]
    pub unlisted_problems: u32,
}

impl VerificationSummary {
    /// Open problems, listed or not.
    pub fn problems(&self) -> u64 {
        self.open_problems.len() as u64 + u64::from(self.unlisted_problems)
    }

    /// Whether no pass completed within `max_age_ms` before `now_ms` (counting from the first
    /// run while none ever did).
    pub fn is_stale(&self, now_ms: i64, max_age_ms: i64) -> bool {
        self.last_complete_at
            .or(self.first_run_at)
            .is_some_and(|since| now_ms.saturating_sub(since) > max_age_ms)
    }
}

/// One run's state besides the driver's.
pub(super) struct Verification {
    pub options: VerifyOptions,
    pub report: VerificationReport,
    pub summary: VerificationSummary,
    pub erasures: ErasureCheck,
    /// Keys reported by this run, so that three entries pointing at one missing archive make
    /// one problem.
    reported: BTreeSet<String>,
    now_ms: i64,
}

impl Verification {
    /// `key` was checked and is sound: a problem it had is closed.
    fn sound(&mut self, key: &str) {
        self.summary.open_problems.remove(key);
    }

    /// Records a problem (once per key per run): in the report, and as open unless repaired.
    pub fn record(&mut self, problem: Problem) {
        if !self.reported.insert(problem.key.clone()) {
            return;
        }
        self.report.problems_found += 1;
        if problem.repaired {
            self.report.repaired += 1;
            self.summary.open_problems.remove(&problem.key);
        } else if self.summary.open_problems.len() < MAX_OPEN_PROBLEMS
            || self.summary.open_problems.contains_key(&problem.key)
        {
            let open = OpenProblem {
                problem: problem.problem,
                found_at: self.now_ms,
            };
            self.summary.open_problems.insert(problem.key.clone(), open);
        } else {
            self.summary.unlisted_problems += 1;
        }
        if self.report.problems.len() < MAX_REPORTED_PROBLEMS {
            self.report.problems.push(problem);
        }
    }
}

/// Whether `err` is a storage failure (which stops a run) rather than a finding.
fn storage_failure(err: &PersistenceError) -> bool {
    ProblemKind::of(err).is_none()
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Runs (or continues) a verification pass within `budget`; see the module docs. Costs
    /// per archive checked 1 R2 get and 1–2 KV gets (plus its data key once per run), per
    /// index entry 1 R2 head, per backup 1 R2 get of the manifest and 1 per pack, 1 list per
    /// 1000 keys, and 4 for the resume point and summary. Errors: `INVALID_INPUT` naming
    /// `maxStorageCalls` below [`MIN_VERIFY_CALLS`].
    pub async fn verify_storage(
        &self,
        options: VerifyOptions,
        budget: RunBudget,
    ) -> Result<VerificationReport> {
        let log = &self.begin("verifyStorage");
        let mut run: Run<VerifyPosition> = self
            .start_run(
                log,
                budget,
                MIN_VERIFY_CALLS,
                Some(VERIFY_CURSOR_KEY),
                "verification",
            )
            .await?;
        let now_ms = self.clock.now_ms();
        let summary = self.read_verification_summary(log).await;
        let of = options.sample.of;
        if run.position.pass.of != of {
            // A first pass, or the sample changed: start over at the next slot.
            run.position = VerifyPosition {
                pass: Pass {
                    of,
                    slot: summary.next_slot % of,
                    started_at: now_ms,
                    checked: 0,
                },
                ..VerifyPosition::default()
            };
        }
        let mut job = Verification {
            options,
            report: VerificationReport {
                sample: format!("1/{of}"),
                slot: run.position.pass.slot,
                ..VerificationReport::default()
            },
            summary,
            erasures: ErasureCheck::default(),
            reported: BTreeSet::new(),
            now_ms,
        };
        let outcome = self.verify_pass(log, &mut run, &mut job).await;
        let pass = &run.position.pass;
        let summary = &mut job.summary;
        summary.last_run_at = Some(self.clock.now_ms());
        summary.first_run_at = summary.first_run_at.or(summary.last_run_at);
        if outcome.is_ok() {
            summary.last_complete_at = summary.last_run_at;
            summary.objects_checked = pass.checked;
            summary.next_slot = (pass.slot + 1) % pass.of.max(1);
        }
        self.put_verification_summary(log, summary).await;
        run.status.storage_calls = log.storage_calls();
        self.finish_run(log, &mut run, outcome).await;
        job.report.status = run.status;
        log.event("info", "verification run", json!(job.report));
        Ok(job.report)
    }

    /// The summary verification keeps (1 KV get); an empty one when there is none or it
    /// cannot be read (logged).
    pub(super) async fn read_verification_summary(&self, log: &OpLog<'_>) -> VerificationSummary {
        match self.kv_get(log, VERIFY_SUMMARY_KEY).await {
            Ok(Some(stored)) => serde_json::from_slice(&stored.value).unwrap_or_else(|err| {
                log.event(
                    "warn",
                    "ignoring an unreadable verification summary",
                    json!({ "error": err.to_string() }),
                );
                VerificationSummary::default()
            }),
            Ok(None) => VerificationSummary::default(),
            Err(err) => {
                log.event(
                    "warn",
                    "could not read the verification summary",
                    json!({ "error": err.to_string() }),
                );
                VerificationSummary::default()
            }
        }
    }

    /// Stores the summary (1 KV put); a failure is logged: the next run finds the older one.
    async fn put_verification_summary(&self, log: &OpLog<'_>, summary: &VerificationSummary) {
        let value = json_text(summary);
        let stored = self
            .kv_put(
                log,
                VERIFY_SUMMARY_KEY,
                value.as_bytes(),
                KvPutOptions::default(),
            )
            .await;
        if let Err(err) = stored {
            log.event(
                "warn",
                "could not store the verification summary",
                json!({ "error": err.to_string() }),
            );
        }
    }

    /// The phases of the pass from the run's position.
    async fn verify_pass(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
    ) -> Result<(), StopReason> {
        if run.position.phase == Phase::Archives {
            self.verify_archives(log, run, job).await?;
            run.position.phase = Phase::Entries;
            run.position.after = None;
        }
        if run.position.phase == Phase::Entries {
            self.verify_entries(log, run, job).await?;
            run.position.phase = Phase::Backups;
        }
        self.verify_backups(log, run, job).await
    }

    /// Checks that `calls` more calls fit, besides those that end the run, counting the calls
    /// made so far as the log did (a job's checks and repairs call through shared helpers).
    fn afford_check(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        calls: u32,
    ) -> Result<(), StopReason> {
        run.status.storage_calls = log.storage_calls();
        run.afford(calls + SUMMARY_CALLS, self.clock.now_ms())
    }

    /// Phase 1: every archive object in the sample.
    async fn verify_archives(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
    ) -> Result<(), StopReason> {
        loop {
            self.afford_check(log, run, 1)?;
            let after = run.position.after.clone();
            let page = self
                .next_r2_page(log, run, ARCHIVE_PREFIX, after, true)
                .await?;
            for listed in &page.objects {
                let in_sample =
                    slot_of(&listed.key, run.position.pass.of) == run.position.pass.slot;
                if in_sample {
                    if let Some(parsed) = parse_archive_object_key(&listed.key) {
                        self.afford_check(log, run, ARCHIVE_CHECK_CALLS)?;
                        self.verify_archive(log, run, job, listed, &parsed).await?;
                        run.position.pass.checked += 1;
                    }
                }
                run.position.after = Some(listed.key.clone());
            }
            if !page.truncated {
                return Ok(());
            }
        }
    }

    /// Reads and checks one archive, then its index entries; a problem is recorded (and
    /// repaired if asked and possible). Stops the run, before the archive counts as handled,
    /// on a storage failure or when a repair does not fit the budget.
    async fn verify_archive(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
        listed: &ListedR2Object,
        parsed: &ArchiveObjectKey,
    ) -> Result<(), StopReason> {
        let key = listed.key.as_str();
        let stop = |err: PersistenceError| stop_reason(&err);
        let Some(object) = self.r2_get(log, key).await.map_err(stop)? else {
            // Deleted since it was listed (retention, an erasure): nothing to check.
            return Ok(());
        };
        job.report.objects_checked += 1;
        job.report.bytes_checked += object.body.len() as u64;
        let expected = recorded_sha256(&object.meta);
        let limit = self.read_limit(&object.meta, expected.is_some());
        let view = Shape::Conversation.view(key);
        let decoded = match self
            .decode_stored_archive(log, key, &object.body, expected, limit, view)
            .await
            .and_then(|decoded| {
                check_archive_session(key, &decoded.metadata.session_id, &parsed.session_id)
                    .map(|()| decoded)
            }) {
            Ok(decoded) => decoded,
            Err(err) if storage_failure(&err) => return Err(stop_reason(&err)),
            Err(err) => {
                if self
                    .erased_object(log, job, parsed, &object.meta)
                    .await
                    .map_err(stop)?
                {
                    return Ok(());
                }
                let problem = ProblemKind::of(&err).unwrap_or(ProblemKind::Corrupt);
                let expected = expected.map(str::to_owned);
                return self
                    .damaged_archive(
                        log,
                        run,
                        job,
                        key,
                        parsed,
                        problem,
                        err.to_string(),
                        expected,
                    )
                    .await;
            }
        };
        job.sound(key);
        let fresh = job.now_ms.saturating_sub(parsed.archived_at_ms) < INDEX_LAG_MS;
        if parsed.legacy || fresh {
            return Ok(());
        }
        self.verify_index_entries(
            log,
            run,
            job,
            key,
            parsed,
            &object.meta,
            &object.body,
            decoded,
        )
        .await
    }

    /// Looks up an archive's global and per-user index entries; rebuilds missing ones when
    /// repairing.
    // The archive as read and decoded: bundling would only move the list into a struct.
    #[allow(clippy::too_many_arguments)]
    async fn verify_index_entries(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
        key: &str,
        parsed: &ArchiveObjectKey,
        meta: &ObjectMeta,
        stored: &[u8],
        decoded: DecodedArchiveJson,
    ) -> Result<(), StopReason> {
        let stop = |err: PersistenceError| stop_reason(&err);
        let session = &parsed.session_id;
        let at = parsed.archived_at_ms;
        let mut wanted = vec![archive_index_key(at, session).map_err(stop)?];
        let user_key = match (
            &decoded.metadata.user_id,
            meta.custom_metadata.get(OWNER_KEY_FIELD),
        ) {
            (Some(user_id), _) => UserId::parse(user_id)
                .ok()
                .map(|user| self.options.hasher.user_key(&user)),
            (None, owner) => owner.cloned(),
        };
        if let Some(user_key) = &user_key {
            wanted.push(user_index_key(user_key, at, session).map_err(stop)?);
        }
        let mut missing = Vec::new();
        for index_key in wanted {
            job.report.entries_checked += 1;
            run.position.pass.checked += 1;
            if self.kv_get(log, &index_key).await.map_err(stop)?.is_none() {
                missing.push(index_key);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let user_id = decoded.metadata.user_id.clone();
        let erased = self
            .is_erased_archive(
                log,
                &mut job.erasures,
                session.as_str(),
                user_id.as_deref(),
                at,
            )
            .await
            .map_err(stop)?;
        if erased {
            return Ok(());
        }
        let detail = format!("no index entry {}", missing.join(", "));
        let mut problem = Problem {
            key: key.to_owned(),
            problem: ProblemKind::NotIndexed,
            detail,
            repaired: false,
            repaired_from: None,
        };
        if job.options.repair {
            self.afford_check(log, run, missing.len() as u32 + 2)?;
            self.rebuild_index_entries(log, key, stored, decoded.metadata, &missing)
                .await
                .map_err(stop)?;
            problem.repaired = true;
        }
        job.record(problem);
        Ok(())
    }

    /// Whether an erasure covers the archive `parsed` (its user's tombstone, by the owner its
    /// custom metadata names, or for a segment its conversation's). Costs 1 R2 head the first
    /// time a run meets a user.
    async fn erased_object(
        &self,
        log: &OpLog<'_>,
        job: &mut Verification,
        parsed: &ArchiveObjectKey,
        meta: &ObjectMeta,
    ) -> Result<bool> {
        let at = parsed.archived_at_ms;
        if let Some(owner) = meta.custom_metadata.get(OWNER_KEY_FIELD) {
            let tombstone = self.tombstone_of(log, &mut job.erasures, owner).await?;
            return Ok(tombstone.is_some_and(|tombstone| tombstone.covers(at)));
        }
        let session = parsed.session_id.as_str();
        self.is_erased_archive(log, &mut job.erasures, session, None, at)
            .await
    }

    /// Phase 2: every KV entry that points at an archive in the sample must find it.
    async fn verify_entries(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
    ) -> Result<(), StopReason> {
        while let Some(prefix) = ENTRY_PREFIXES.get(run.position.prefix) {
            let mut pager = KvPager::new(*prefix, std::mem::take(&mut run.position.kv));
            let outcome = self.verify_entries_of(log, run, job, &mut pager).await;
            run.position.kv = pager.at;
            outcome?;
            run.position.prefix += 1;
            run.position.kv = KvPosition::default();
        }
        Ok(())
    }

    /// [`Self::verify_entries`] of one prefix.
    async fn verify_entries_of(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
        pager: &mut KvPager,
    ) -> Result<(), StopReason> {
        let stop = |err: PersistenceError| stop_reason(&err);
        loop {
            self.afford_check(log, run, 1)?;
            let Some(page) = self.next_kv_page(log, run, pager, 1).await? else {
                return Ok(());
            };
            for entry in &page {
                // The archive the entry points at; the earlier implementation's records
                // (no `key`) are checked through the archives they name in phase 1.
                let Some(archive_key) = entry
                    .metadata
                    .as_ref()
                    .and_then(|metadata| metadata.get("key"))
                    .and_then(|key| key.as_str())
                else {
                    continue;
                };
                let Some(parsed) = parse_archive_object_key(archive_key) else {
                    continue;
                };
                if slot_of(archive_key, run.position.pass.of) != run.position.pass.slot {
                    continue;
                }
                pager.claim(&entry.name);
                self.afford_check(log, run, 2)?;
                job.report.entries_checked += 1;
                run.position.pass.checked += 1;
                if self
                    .archive_exists(log, archive_key, &parsed)
                    .await
                    .map_err(stop)?
                {
                    continue;
                }
                let metadata = entry.metadata.as_ref();
                let user_id = metadata
                    .and_then(|metadata| metadata.get("userId"))
                    .and_then(|user| user.as_str());
                let session = parsed.session_id.as_str();
                let at = parsed.archived_at_ms;
                if self
                    .is_erased_archive(log, &mut job.erasures, session, user_id, at)
                    .await
                    .map_err(stop)?
                {
                    continue;
                }
                let sha256 = metadata
                    .and_then(|metadata| metadata.get("sha256"))
                    .and_then(|sha| sha.as_str())
                    .map(str::to_owned);
                let detail = format!("{} points at it", entry.name);
                self.damaged_archive(
                    log,
                    run,
                    job,
                    archive_key,
                    &parsed,
                    ProblemKind::Missing,
                    detail,
                    sha256,
                )
                .await?;
            }
            pager.page_done();
        }
    }

    /// Whether the archive `key` is stored: under its key, or for a plaintext key, encrypted
    /// (`encryptExistingArchives` replaced it; entries may still name the plaintext key).
    /// Costs 1 R2 head, 2 on such a miss.
    async fn archive_exists(
        &self,
        log: &OpLog<'_>,
        key: &str,
        parsed: &ArchiveObjectKey,
    ) -> Result<bool> {
        if self.r2_head(log, key).await?.is_some() {
            return Ok(true);
        }
        if parsed.encrypted || parsed.legacy {
            return Ok(false);
        }
        let encrypted =
            crate::keys::encrypted_archive_object_key(&parsed.session_id, parsed.archived_at_ms)?;
        Ok(self.r2_head(log, &encrypted).await?.is_some())
    }

    /// Phase 3: every committed backup in the sample, its manifest and each pack.
    async fn verify_backups(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
    ) -> Result<(), StopReason> {
        loop {
            self.afford_check(log, run, 1)?;
            let after = run.position.after.clone();
            let page = self
                .next_r2_page(log, run, BACKUP_PREFIX, after, false)
                .await?;
            for listed in &page.objects {
                let Some((backup_id, kind)) = parse_backup_object_key(&listed.key) else {
                    run.position.after = Some(listed.key.clone());
                    continue;
                };
                if slot_of(backup_id.as_str(), run.position.pass.of) != run.position.pass.slot {
                    run.position.after = Some(listed.key.clone());
                    continue;
                }
                // `manifest.json` sorts before `pack-<n>.json`: packs listed first in their
                // folder have no manifest.
                let folder = format!("{BACKUP_PREFIX}{backup_id}/");
                let first_in_folder = !run
                    .position
                    .after
                    .as_deref()
                    .is_some_and(|after| after.starts_with(&folder));
                if matches!(kind, BackupObjectKind::Pack(_)) && first_in_folder {
                    self.afford_check(log, run, 1)?;
                    self.verify_committed(log, job, &backup_id).await?;
                }
                if kind == BackupObjectKind::Manifest {
                    if run.position.backup.as_deref() != Some(listed.key.as_str()) {
                        run.position.backup = Some(listed.key.clone());
                        run.position.next_pack = 0;
                    }
                    self.verify_backup(log, run, job, &backup_id, &listed.key)
                        .await?;
                    run.position.pass.checked += 1;
                }
                run.position.after = Some(listed.key.clone());
                run.position.backup = None;
                run.position.next_pack = 0;
            }
            if !page.truncated {
                return Ok(());
            }
        }
    }

    /// For packs listed without a manifest: an uncommitted backup (being written, or failed;
    /// retention sweeps it) unless KV holds its manifest's copy, which is written only after
    /// the commit: then its manifest was lost. Costs 1 KV get.
    async fn verify_committed(
        &self,
        log: &OpLog<'_>,
        job: &mut Verification,
        backup_id: &BackupId,
    ) -> Result<(), StopReason> {
        let copy = self
            .kv_get(log, &backup_manifest_kv_key(backup_id))
            .await
            .map_err(|err| stop_reason(&err))?;
        if copy.is_some() {
            job.record(Problem {
                key: backup_manifest_object_key(backup_id),
                problem: ProblemKind::Missing,
                detail: "the backup was committed (KV holds its manifest's copy)".to_owned(),
                repaired: false,
                repaired_from: None,
            });
        }
        Ok(())
    }

    /// Checks one backup: its manifest, then each pack from `next_pack` (a run may stop between
    /// packs and the next one continues there, reading the manifest again).
    async fn verify_backup(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
        backup_id: &BackupId,
        manifest_key: &str,
    ) -> Result<(), StopReason> {
        let stop = |err: PersistenceError| stop_reason(&err);
        self.afford_check(log, run, 2)?;
        let Some(manifest) = self.r2_get(log, manifest_key).await.map_err(stop)? else {
            return Ok(());
        };
        if run.position.next_pack == 0 {
            job.report.backups_checked += 1;
            job.report.objects_checked += 1;
            job.report.bytes_checked += manifest.body.len() as u64;
        }
        let problem = |key: &str, err: &PersistenceError| Problem {
            key: key.to_owned(),
            problem: ProblemKind::of(err).unwrap_or(ProblemKind::Corrupt),
            detail: err.to_string(),
            repaired: false,
            repaired_from: None,
        };
        if manifest_shape(&manifest.body) != ManifestShape::Packed {
            // Format 1 and the earlier implementation's: one data object, verified whole.
            match self.read_verified_backup(log, backup_id, None).await {
                Ok(_) => job.sound(manifest_key),
                Err(err) if storage_failure(&err) => return Err(stop_reason(&err)),
                Err(err) => job.record(problem(manifest_key, &err)),
            }
            return Ok(());
        }
        let manifest = match decode_packed_manifest(manifest_key, &manifest.body) {
            Ok(manifest) => manifest,
            Err(err) => {
                job.record(problem(manifest_key, &err));
                return Ok(());
            }
        };
        job.sound(manifest_key);
        while let Some(pack) = manifest.packs.get(run.position.next_pack as usize) {
            self.afford_check(log, run, 1)?;
            let stored = self.r2_get(log, &pack.key).await.map_err(stop)?;
            job.report.objects_checked += 1;
            run.position.pass.checked += 1;
            let checked = match stored {
                None => Err(PersistenceError::NotFound {
                    key: pack.key.clone(),
                }),
                Some(stored) => {
                    job.report.bytes_checked += stored.body.len() as u64;
                    verify_pack(&manifest, run.position.next_pack, &stored.body).map(drop)
                }
            };
            match checked {
                Ok(()) => job.sound(&pack.key),
                Err(err) => job.record(problem(&pack.key, &err)),
            }
            run.position.next_pack += 1;
        }
        Ok(())
    }

    /// Records a damaged or missing archive, and with `repair` writes it back from a verified
    /// copy when one exists (`super::verify_repair`). `expected` is the SHA-256 recorded for
    /// it (a copy must match it); without one (the earlier implementation's archives) no copy
    /// can be proven to be it, and it is reported unrepairable.
    // The problem's parts: bundling would only move the list into a struct.
    #[allow(clippy::too_many_arguments)]
    async fn damaged_archive(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
        key: &str,
        parsed: &ArchiveObjectKey,
        problem: ProblemKind,
        detail: String,
        expected: Option<String>,
    ) -> Result<(), StopReason> {
        let mut found = Problem {
            key: key.to_owned(),
            problem,
            detail,
            repaired: false,
            repaired_from: None,
        };
        if let (true, Some(sha256)) = (job.options.repair, expected) {
            self.afford_check(log, run, super::verify_repair::REPAIR_CALLS)?;
            let session: &SessionId = &parsed.session_id;
            found.repaired_from = self
                .repair_archive(log, job, key, session, &sha256)
                .await
                .map_err(|err| stop_reason(&err))?;
            found.repaired = found.repaired_from.is_some();
        }
        job.record(found);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn samples_parse_and_refuse_what_is_not_one_nth() {
        assert_eq!(Sample::parse("1/7").unwrap(), Sample { of: 7 });
        assert_eq!(Sample::parse("all").unwrap(), Sample { of: 1 });
        assert_eq!(Sample::parse("1/1").unwrap(), Sample { of: 1 });
        for bad in ["2/7", "1/0", "1/367", "7", "", "1/x"] {
            let err = Sample::parse(bad).unwrap_err();
            assert_eq!(err.code(), "INVALID_INPUT", "{bad}");
        }
    }

    #[test]
    fn slots_split_keys_roughly_evenly_and_one_slot_takes_everything() {
        let mut counts = [0u32; 7];
        for n in 0..7000 {
            counts
                [slot_of(&format!("conversations/2025/01/archive_s{n}_1.json.gz"), 7) as usize] +=
                1;
        }
        assert!(
            counts.iter().all(|&count| (850..1150).contains(&count)),
            "{counts:?}"
        );
        assert_eq!(slot_of("anything", 1), 0);
    }

    #[test]
    fn a_problem_is_recorded_once_and_closed_when_repaired() {
        let mut job = Verification {
            options: VerifyOptions::default(),
            report: VerificationReport::default(),
            summary: VerificationSummary::default(),
            erasures: ErasureCheck::default(),
            reported: BTreeSet::new(),
            now_ms: 5,
        };
        let problem = |key: &str, repaired| Problem {
            key: key.into(),
            problem: ProblemKind::Missing,
            detail: String::new(),
            repaired,
            repaired_from: None,
        };
        job.record(problem("a", false));
        job.record(problem("a", false));
        job.record(problem("b", true));
        assert_eq!((job.report.problems_found, job.report.repaired), (2, 1));
        assert_eq!(job.summary.problems(), 1);
        job.sound("a");
        assert_eq!(job.summary.problems(), 0);
    }
}
