//! `verifyStorage`: reads back what is stored and checks it, on the run driver (`super::run`),
//! repairing what it can when asked.
//!
//! A *pass* lists the index entries first (phase 0, `indexed`: which archives the global and
//! per-user entries point at, `super::verify_keys`), then has three phases, each resumable at
//! the key it stopped at:
//! 1. **archives**: every object under `conversations/` is read and checked as a retrieval
//!    checks it (its recorded SHA-256, gzip, document, decryption, session), then its global and
//!    per-user index entries are looked for: in the listing, else with a KV get (archives
//!    younger than `INDEX_LAG_MS`, which KV may not show yet, and the earlier implementation's,
//!    indexed by `archive_meta` alone, skip that);
//! 2. **entries**: every KV entry that points at an archive (`archive_meta:`, `archive_index:`,
//!    `user_archives:`, by the `key` in its list metadata) must find it: among the archives
//!    phase 1 read, else with an R2 head;
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

use super::log::OpLog;
use super::run::{stop_reason, Run, RunBudget, RunReport, RunStatus, StopReason};
use super::tombstone::ErasureCheck;
use super::verify_keys::{key_hash, KeySet};
use super::walk::KvPosition;
use super::DataPersistenceService;
use crate::codec::json_text;
use crate::error::{PersistenceError, Result};
use crate::keys::{
    ArchiveObjectKey, SessionId, ARCHIVE_INDEX_PREFIX, ARCHIVE_META_PREFIX, BACKUP_PREFIX,
    USER_INDEX_PREFIX, VERIFY_CURSOR_KEY, VERIFY_SUMMARY_KEY,
};
use crate::store::{Clock, KvPutOptions, KvStore, ObjectListPage, ObjectStore, Rng};

/// Smallest budget a run needs: its resume point and summary read and written, one listing
/// and one archive checked.
pub const MIN_VERIFY_CALLS: u32 = 12;
/// Calls checking one archive may take: its get, its data key, two index entries and its
/// user's tombstone (read only when something is wrong).
pub(super) const ARCHIVE_CHECK_CALLS: u32 = 5;
/// Calls reserved to write the summary at the end of a run (besides the resume point).
const SUMMARY_CALLS: u32 = 1;
/// Problems one report lists (`problemsFound` counts them all).
pub const MAX_REPORTED_PROBLEMS: usize = 100;
/// Open problems the summary keeps; past it, new ones are counted but not listed.
const MAX_OPEN_PROBLEMS: usize = 1000;
/// The KV prefixes whose entries point at archives, in the order a pass checks them.
pub(super) const ENTRY_PREFIXES: [&str; 3] =
    [ARCHIVE_META_PREFIX, ARCHIVE_INDEX_PREFIX, USER_INDEX_PREFIX];

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
pub(super) fn slot_of(key: &str, of: u32) -> u32 {
    // Below `of`, a u32.
    (key_hash(key) % u64::from(of.max(1))) as u32
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
    /// The replica bucket (`ARCHIVE_R2_REPLICA`) has no copy of it.
    ReplicaMissing,
    /// The replica's copy is not the primary's object (other bytes than its checksum says).
    ReplicaMismatch,
}

impl ProblemKind {
    /// The problem a failed read of an object shows; `None` for a storage failure, which stops
    /// the run instead.
    pub(super) fn of(err: &PersistenceError) -> Option<ProblemKind> {
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
    /// Encrypted archives checked by their checksum alone: this service has no
    /// `encryptionKeys` to open them (nor to check their index entries).
    pub not_decrypted: u64,
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
pub(super) enum Phase {
    /// The index entries listed, to know which archives they point at.
    #[default]
    Indexed,
    Archives,
    Entries,
    Backups,
}

/// A pass in progress: which slot of which sample, since when, and its counts so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Pass {
    /// The sample's denominator; 0 in a position read from nothing.
    pub of: u32,
    pub slot: u32,
    pub started_at: i64,
    /// Objects and entries checked by the pass's runs so far.
    pub checked: u64,
    /// Problems its runs found while the summary's list was full.
    #[serde(default)]
    pub unlisted: u32,
    /// Drawn at random when the pass starts: names it in the problems it finds.
    #[serde(default)]
    pub id: u64,
}

/// Where a pass continues (`verify:cursor`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct VerifyPosition {
    pub pass: Pass,
    pub phase: Phase,
    /// Archives and backups: the last R2 key handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Entries: which of [`ENTRY_PREFIXES`], and where in it.
    #[serde(default)]
    pub prefix: usize,
    #[serde(default)]
    pub kv: KvPosition,
    /// Backups: the manifest of the backup a run stopped in, and its first pack not yet
    /// checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    #[serde(default)]
    pub next_pack: u32,
    /// The archives the global and the per-user index entries of the slot point at (listed
    /// first), and the archives of the slot that exist (read next); `None`: not known, each
    /// lookup costs its call (`super::verify_keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexed_global: Option<KeySet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexed_user: Option<KeySet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archives_seen: Option<KeySet>,
}

/// A problem still open: found, not repaired, and not seen sound since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenProblem {
    /// What is wrong.
    pub problem: ProblemKind,
    /// When a run found it (epoch ms).
    pub found_at: i64,
    /// The pass that found it last (its `Pass::id`): a pass of its slot that did not find it
    /// again closes it.
    #[serde(default)]
    pub pass: u64,
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

    /// At the end of `pass`: closes the open problems of its slot it did not find again (their
    /// objects are gone: deleted by retention or an erasure, or repaired by something else),
    /// and counts as unlisted what it found past the list.
    fn close_unseen(&mut self, pass: &Pass) {
        self.open_problems.retain(|key, open| {
            open.pass == pass.id || slot_of(problem_slot_key(key), pass.of) != pass.slot
        });
        self.unlisted_problems = pass.unlisted;
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
    /// Problems this run found while the summary's list was full.
    unlisted: u32,
    /// The pass this run belongs to.
    pass_id: u64,
    pub now_ms: i64,
}

/// What the summary's open problems of the replica's copy of `key` are listed under.
fn replica_open_key(key: &str) -> String {
    format!("{REPLICA_OPEN_PREFIX}{key}")
}

/// What decides the sample slot of an open problem listed under `open_key`: the object's key,
/// or for a backup's object its backup id.
fn problem_slot_key(open_key: &str) -> &str {
    let key = open_key
        .strip_prefix(REPLICA_OPEN_PREFIX)
        .unwrap_or(open_key);
    match key
        .strip_prefix(BACKUP_PREFIX)
        .and_then(|rest| rest.split_once('/'))
    {
        Some((backup_id, _)) => backup_id,
        None => key,
    }
}

/// Prefix of the replica's problems in the summary's `openProblems`.
const REPLICA_OPEN_PREFIX: &str = "replica:";

impl Problem {
    /// Where the summary lists it while open: the key, or for the replica's copy
    /// `replica:<key>`, so that both copies of one object can each have a problem open.
    fn open_key(&self) -> String {
        match self.problem {
            ProblemKind::ReplicaMissing | ProblemKind::ReplicaMismatch => {
                replica_open_key(&self.key)
            }
            _ => self.key.clone(),
        }
    }
}

impl Verification {
    /// The primary's object `key` was checked and is sound: a problem it had is closed.
    pub fn sound(&mut self, key: &str) {
        self.summary.open_problems.remove(key);
    }

    /// The replica's copy of `key` was checked and is sound.
    pub fn sound_replica(&mut self, key: &str) {
        self.summary.open_problems.remove(&replica_open_key(key));
    }

    /// Records a problem (once per object per run): in the report, and as open unless
    /// repaired.
    pub fn record(&mut self, problem: Problem) {
        let open_key = problem.open_key();
        if !self.reported.insert(open_key.clone()) {
            return;
        }
        self.report.problems_found += 1;
        if problem.repaired {
            self.report.repaired += 1;
            self.summary.open_problems.remove(&open_key);
        } else if self.summary.open_problems.len() < MAX_OPEN_PROBLEMS
            || self.summary.open_problems.contains_key(&open_key)
        {
            let open = OpenProblem {
                problem: problem.problem,
                found_at: self.now_ms,
                pass: self.pass_id,
            };
            self.summary.open_problems.insert(open_key, open);
        } else {
            self.unlisted += 1;
        }
        if self.report.problems.len() < MAX_REPORTED_PROBLEMS {
            self.report.problems.push(problem);
        }
    }
}

/// Whether `err` is a storage failure (which stops a run) rather than a finding.
pub(super) fn storage_failure(err: &PersistenceError) -> bool {
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
        // Not written back when it could not be read: that would lose the open problems.
        let (summary, summary_read) = match self.read_verification_summary(log).await {
            Some(summary) => (summary, true),
            None => (VerificationSummary::default(), false),
        };
        let of = options.sample.of;
        if run.position.pass.of != of {
            // A first pass, or the sample changed: start over at the next slot.
            run.position = VerifyPosition {
                pass: Pass {
                    of,
                    slot: summary.next_slot % of,
                    started_at: now_ms,
                    checked: 0,
                    unlisted: 0,
                    id: self.clock.random_u64(),
                },
                indexed_global: Some(KeySet::default()),
                indexed_user: Some(KeySet::default()),
                archives_seen: Some(KeySet::default()),
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
            unlisted: 0,
            pass_id: run.position.pass.id,
            now_ms,
        };
        let outcome = self.verify_pass(log, &mut run, &mut job).await;
        let pass = &mut run.position.pass;
        pass.unlisted += job.unlisted;
        let summary = &mut job.summary;
        summary.last_run_at = Some(self.clock.now_ms());
        summary.first_run_at = summary.first_run_at.or(summary.last_run_at);
        if outcome.is_ok() {
            summary.last_complete_at = summary.last_run_at;
            summary.objects_checked = pass.checked;
            summary.next_slot = (pass.slot + 1) % pass.of.max(1);
            summary.close_unseen(pass);
        } else {
            summary.unlisted_problems = summary.unlisted_problems.max(pass.unlisted);
        }
        if summary_read {
            self.put_verification_summary(log, summary).await;
        }
        run.status.storage_calls = log.storage_calls();
        self.finish_run(log, &mut run, outcome).await;
        job.report.status = run.status;
        log.event("info", "verification run", json!(job.report));
        Ok(job.report)
    }

    /// The summary verification keeps (1 KV get); an empty one when there is none or it is
    /// unreadable, `None` when the read failed (logged).
    pub(super) async fn read_verification_summary(
        &self,
        log: &OpLog<'_>,
    ) -> Option<VerificationSummary> {
        Some(match self.kv_get(log, VERIFY_SUMMARY_KEY).await {
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
                return None;
            }
        })
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
        // A set is sealed when its phase ends (and when read back from a resume point).
        if run.position.phase == Phase::Indexed {
            self.list_index_entries(log, run).await?;
            let position = &mut run.position;
            let sets = [&mut position.indexed_global, &mut position.indexed_user];
            for set in sets.into_iter().flatten() {
                set.seal();
            }
            (position.phase, position.prefix) = (Phase::Archives, 0);
            position.kv = KvPosition::default();
        }
        if run.position.phase == Phase::Archives {
            self.verify_archives(log, run, job).await?;
            let position = &mut run.position;
            if let Some(set) = &mut position.archives_seen {
                set.seal();
            }
            (position.phase, position.after) = (Phase::Entries, None);
        }
        if run.position.phase == Phase::Entries {
            self.verify_entries(log, run, job).await?;
            run.position.phase = Phase::Backups;
        }
        self.verify_backups(log, run, job).await
    }

    /// Checks that `calls` more calls fit, besides those that end the run, counting the calls
    /// made so far as the log did (a job's checks and repairs call through shared helpers).
    pub(super) fn afford_check(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        calls: u32,
    ) -> Result<(), StopReason> {
        run.status.storage_calls = log.storage_calls();
        run.afford(calls + SUMMARY_CALLS, self.clock.now_ms())
    }

    /// The next page of a phase that walks R2 under `prefix` from the position's `after`.
    pub(super) async fn next_verify_page(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        prefix: &str,
        with_metadata: bool,
    ) -> Result<ObjectListPage, StopReason> {
        self.afford_check(log, run, 1)?;
        let after = run.position.after.clone();
        self.next_r2_page(log, run, prefix, after, with_metadata)
            .await
    }

    /// Records a damaged or missing archive (`found`: what reading it, or looking for it, gave),
    /// and with `repair` writes it back from a verified copy when one exists
    /// (`super::verify_repair`). `expected` is the SHA-256 recorded for it (a copy must match
    /// it); without one (the earlier implementation's archives) no copy can be proven to be
    /// it, and it is reported unrepairable.
    // The run's state and the problem's parts: bundling would only move the list into a struct.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn damaged_archive(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
        key: &str,
        parsed: &ArchiveObjectKey,
        found: &PersistenceError,
        expected: Option<String>,
    ) -> Result<(), StopReason> {
        let mut found = Problem {
            key: key.to_owned(),
            problem: ProblemKind::of(found).unwrap_or(ProblemKind::Corrupt),
            detail: found.to_string(),
            repaired: false,
            repaired_from: None,
        };
        // Only other bytes can be repaired by a copy: bytes that match their checksum but do
        // not decode or decrypt would come back the same.
        let copyable = matches!(
            found.problem,
            ProblemKind::ChecksumMismatch | ProblemKind::Missing
        );
        if let (true, true, Some(sha256)) = (job.options.repair, copyable, expected) {
            let old = self.past_retention(parsed.archived_at_ms);
            if old {
                found
                    .detail
                    .push_str(" (not repaired: past archiveRetention, retention deletes it)");
            } else if self.afford_repair(log, run, &mut found, super::verify_repair::REPAIR_CALLS) {
                let session: &SessionId = &parsed.session_id;
                found.repaired_from = self
                    .repair_archive(log, job, key, session, &sha256)
                    .await
                    .map_err(|err| stop_reason(&err))?;
                found.repaired = found.repaired_from.is_some();
            }
        }
        job.record(found);
        Ok(())
    }

    /// Whether the calls of a repair fit what is left of the run; if not, says so in the
    /// problem, which is recorded unrepaired (the pass goes on: a later pass repairs it).
    pub(super) fn afford_repair(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        found: &mut Problem,
        calls: u32,
    ) -> bool {
        let fits = self.afford_check(log, run, calls).is_ok();
        if !fits {
            found
                .detail
                .push_str(" (not repaired: the run had no calls left for it)");
        }
        fits
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
            unlisted: 0,
            pass_id: 1,
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
