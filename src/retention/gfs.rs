//! Which backups to keep: grandfather-father-son rotation with restic's `forget` semantics.
//!
//! Backups are taken newest first. Each rule with a count left keeps a backup when it is the
//! first (newest) one of its bucket: `last` keeps every backup (its bucket is the backup
//! itself), `daily` one per UTC day, `weekly` one per ISO week, `monthly` one per UTC month.
//! Keeping one uses one of the rule's count. As restic does since 0.14, a rule that still has
//! count left when it reaches the oldest backup keeps that one too, so the history kept reaches
//! as far back as the counts allow. A backup made with `keep: true` is always kept, and so is
//! every backup a kept incremental one depends on (its parent, that one's parent, ...), or it
//! could not be restored, and the newest backup of the automated chain, which the next
//! automated backup (perhaps running now) is incremental to. With every count 0 the rotation
//! is off and a backup is kept while it is younger than `archiveRetention`, as before rotation.
//!
//! The decisions are made by a [`BackupWalk`] fed one backup at a time, newest first, so a
//! listing can be decided page by page (its state fits in a cursor). Applying the plan and
//! planning again over what it kept deletes nothing more (a property the tests check), so a
//! sweep that stops part-way and resumes cannot delete more than one uninterrupted sweep would.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike};
use serde::{Deserialize, Serialize};

/// How many backups each rule keeps (0: the rule keeps none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GfsPolicy {
    /// The newest `keep_last` backups.
    pub keep_last: u32,
    /// The newest backup of each of the last `keep_daily` days that have one.
    pub keep_daily: u32,
    /// The newest backup of each of the last `keep_weekly` ISO weeks that have one.
    pub keep_weekly: u32,
    /// The newest backup of each of the last `keep_monthly` months that have one.
    pub keep_monthly: u32,
}

impl GfsPolicy {
    fn counts(&self) -> [u32; 4] {
        [
            self.keep_last,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
        ]
    }
}

/// How backups are decided: by rotation, or, when every rotation count is 0, by age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupRules {
    /// restic's rules.
    Rotation(GfsPolicy),
    /// Kept while younger than `retention_ms` at `now_ms`.
    Age {
        /// The time of the decision (epoch ms).
        now_ms: i64,
        /// How long a backup is kept (ms).
        retention_ms: u64,
    },
}

impl BackupRules {
    /// `policy`'s rotation, or its age rule when every count is 0.
    pub fn new(policy: GfsPolicy, now_ms: i64, retention_ms: u64) -> Self {
        if policy.counts() == [0; 4] {
            BackupRules::Age {
                now_ms,
                retention_ms,
            }
        } else {
            BackupRules::Rotation(policy)
        }
    }
}

/// Why a backup is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum KeepReason {
    /// One of the newest `keep_last`.
    Last,
    /// The newest of its day.
    Daily,
    /// The newest of its ISO week.
    Weekly,
    /// The newest of its month.
    Monthly,
    /// Made with `keep: true`.
    Pinned,
    /// A kept incremental backup depends on it.
    Parent,
    /// The newest backup of the automated chain: the next automated backup builds on it.
    ChainHead,
    /// Rotation is off and it is younger than `archiveRetention`.
    WithinRetention,
}

/// A backup as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupVersion {
    /// Its id.
    pub id: String,
    /// When it was made, in epoch ms.
    pub created_at_ms: i64,
    /// The backup it is incremental to, if any.
    pub parent: Option<String>,
    /// Made with `keep: true`: never deleted by the policy.
    pub pinned: bool,
    /// Part of the automated chain (the next automated backup may be incremental to it).
    pub chained: bool,
}

/// The fate of one backup: kept, with every reason, or deleted (no reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFate {
    /// The backup's id.
    pub id: String,
    /// Why it is kept; empty when the policy deletes it.
    pub reasons: Vec<KeepReason>,
}

impl BackupFate {
    /// Whether the policy keeps the backup.
    pub fn kept(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// The rotation rules in walking order, with the reason each gives.
const RULES: [KeepReason; 4] = [
    KeepReason::Last,
    KeepReason::Daily,
    KeepReason::Weekly,
    KeepReason::Monthly,
];

/// A walk over backups newest first (ties: by id, ascending, as the backup index lists them):
/// what each rule has left and the bucket it kept last, and the parents still to keep. Its
/// JSON is part of `listBackups`' cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupWalk {
    /// Backups decided so far: the next one's place, the `last` rule's bucket.
    seen: u64,
    /// Count left per rule of [`RULES`].
    left: [u32; 4],
    /// Bucket of the last backup each rule kept.
    last: [Option<i64>; 4],
    /// Whether the newest backup of the automated chain has been seen.
    head_seen: bool,
    /// Parents of kept backups not reached yet.
    parents: BTreeSet<String>,
}

impl BackupWalk {
    /// A walk from the newest backup under `rules`.
    pub fn new(rules: &BackupRules) -> Self {
        let left = match rules {
            BackupRules::Rotation(policy) => policy.counts(),
            BackupRules::Age { .. } => [0; 4],
        };
        BackupWalk {
            seen: 0,
            left,
            last: [None; 4],
            head_seen: false,
            parents: BTreeSet::new(),
        }
    }

    /// Decides the next backup (older than every one decided so far); `oldest` says it is the
    /// last of the whole listing. Returns why it is kept, empty when it is deleted.
    pub fn decide(
        &mut self,
        rules: &BackupRules,
        backup: &BackupVersion,
        oldest: bool,
    ) -> Vec<KeepReason> {
        let mut reasons = Vec::new();
        if backup.pinned {
            reasons.push(KeepReason::Pinned);
        }
        match rules {
            BackupRules::Rotation(_) => {
                let place = self.seen;
                for (rule, reason) in RULES.iter().enumerate() {
                    if self.left[rule] == 0 {
                        continue;
                    }
                    let bucket = bucket(*reason, backup.created_at_ms, place);
                    if self.last[rule] != Some(bucket) || oldest {
                        self.last[rule] = Some(bucket);
                        self.left[rule] -= 1;
                        reasons.push(*reason);
                    }
                }
            }
            BackupRules::Age {
                now_ms,
                retention_ms,
            } => {
                if !super::has_aged(backup.created_at_ms, *now_ms, *retention_ms) {
                    reasons.push(KeepReason::WithinRetention);
                }
            }
        }
        if backup.chained && !self.head_seen {
            self.head_seen = true;
            reasons.push(KeepReason::ChainHead);
        }
        if self.parents.remove(&backup.id) {
            reasons.push(KeepReason::Parent);
        }
        if !reasons.is_empty() {
            self.parents.extend(backup.parent.clone());
        }
        self.seen += 1;
        reasons
    }

    /// Whether this walk could have come from [`BackupWalk::new`] under `rules` and decisions:
    /// no rule has more left than it started with, and each pending parent was named by a
    /// backup decided before. A cursor passed back by a caller is checked with it.
    pub fn may_follow(&self, rules: &BackupRules) -> bool {
        let start = BackupWalk::new(rules).left;
        self.left
            .iter()
            .zip(start)
            .all(|(left, start)| *left <= start)
            && self.parents.len() as u64 <= self.seen
    }

    /// Parents of kept backups the walk has not reached (older than every backup decided, or
    /// missing from the listing): they must be kept too.
    pub fn pending_parents(&self) -> &BTreeSet<String> {
        &self.parents
    }
}

/// The bucket of a backup made at `ms` under `reason`'s rule; `place` (its place, newest
/// first) makes every backup a bucket of its own for `last`. A time chrono cannot represent
/// falls in a bucket of its own too, so it is never merged with another backup's.
fn bucket(reason: KeepReason, ms: i64, place: u64) -> i64 {
    let own = i64::MIN + i64::try_from(place).unwrap_or(i64::MAX / 2);
    let Some(time) = DateTime::from_timestamp_millis(ms) else {
        return own;
    };
    let (year, month) = (i64::from(time.year()), i64::from(time.month()));
    match reason {
        KeepReason::Daily => year * 10_000 + month * 100 + i64::from(time.day()),
        KeepReason::Weekly => {
            let week = time.iso_week();
            i64::from(week.year()) * 100 + i64::from(week.week())
        }
        KeepReason::Monthly => year * 100 + month,
        _ => own,
    }
}

/// Decides, for every backup in `backups` (any order), whether `rules` keep it and why; the
/// fates come newest first (ties: by id, ascending), one per backup.
pub fn plan_backups(rules: &BackupRules, backups: &[BackupVersion]) -> Vec<BackupFate> {
    let mut order: Vec<&BackupVersion> = backups.iter().collect();
    order.sort_by(|a, b| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut walk = BackupWalk::new(rules);
    let oldest = order.len().saturating_sub(1);
    order
        .iter()
        .enumerate()
        .map(|(index, backup)| BackupFate {
            id: backup.id.clone(),
            reasons: walk.decide(rules, backup, index == oldest),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2026-06-01T12:00:00Z, a Monday.
    const JUNE_1: i64 = 1_780_315_200_000;

    /// Rotation keeping the last `last`, `daily` days, `weekly` weeks and `monthly` months.
    fn keep(last: u32, daily: u32, weekly: u32, monthly: u32) -> BackupRules {
        BackupRules::Rotation(GfsPolicy {
            keep_last: last,
            keep_daily: daily,
            keep_weekly: weekly,
            keep_monthly: monthly,
        })
    }

    fn version(id: &str, created_at_ms: i64) -> BackupVersion {
        BackupVersion {
            id: id.into(),
            created_at_ms,
            parent: None,
            pinned: false,
            chained: false,
        }
    }

    fn kept(fates: &[BackupFate]) -> Vec<(&str, Vec<KeepReason>)> {
        fates
            .iter()
            .filter(|fate| fate.kept())
            .map(|fate| (fate.id.as_str(), fate.reasons.clone()))
            .collect()
    }

    #[test]
    fn the_first_fixture_date_is_a_monday_noon() {
        let time = DateTime::from_timestamp_millis(JUNE_1).unwrap();
        assert_eq!(time.to_rfc3339(), "2026-06-01T12:00:00+00:00");
        assert_eq!(time.weekday(), chrono::Weekday::Mon);
    }

    // The fixture of restic's own tests in spirit: two backups a day for 40 days, then the
    // policy of the defaults on a small scale. Expected ids worked out by hand.
    #[test]
    fn keeps_what_restics_rules_keep() {
        // Newest first: b0 on June 1 (evening), b1 June 1 (morning), b2 May 31, ...
        let backups: Vec<BackupVersion> = (0..10)
            .map(|n| version(&format!("b{n}"), JUNE_1 + 6 * 3_600_000 - n * DAY / 2))
            .collect();
        let policy = keep(1, 3, 2, 2);
        use KeepReason::*;
        assert_eq!(
            kept(&plan_backups(&policy, &backups)),
            [
                // June 1 18:00 (Monday): last, daily, weekly (week 23), monthly (June).
                ("b0", vec![Last, Daily, Weekly, Monthly]),
                // May 31 18:00 (Sunday): daily, weekly (week 22), monthly (May).
                ("b2", vec![Daily, Weekly, Monthly]),
                // May 30 18:00: daily.
                ("b4", vec![Daily]),
            ]
        );
    }

    #[test]
    fn a_rule_with_count_left_keeps_the_oldest_backup() {
        // Two backups on one day: daily 3 keeps the newest, and the oldest as the history's end.
        let backups = [version("new", JUNE_1 + 1), version("old", JUNE_1)];
        let policy = keep(0, 3, 0, 0);
        let fates = plan_backups(&policy, &backups);
        assert!(fates.iter().all(BackupFate::kept), "{fates:?}");
    }

    #[test]
    fn pinned_backups_and_the_parents_of_kept_ones_stay() {
        let mut backups = vec![
            version("full", JUNE_1 - 40 * DAY),
            version("inc-1", JUNE_1 - 20 * DAY),
            version("inc-2", JUNE_1),
            version("pinned", JUNE_1 - 60 * DAY),
            version("old", JUNE_1 - 80 * DAY),
        ];
        backups[1].parent = Some("full".into());
        backups[2].parent = Some("inc-1".into());
        backups[3].pinned = true;
        let policy = keep(1, 0, 0, 0);
        use KeepReason::*;
        assert_eq!(
            kept(&plan_backups(&policy, &backups)),
            [
                ("inc-2", vec![Last]),
                ("inc-1", vec![Parent]),
                ("full", vec![Parent]),
                ("pinned", vec![Pinned]),
            ]
        );
    }

    #[test]
    fn rotation_of_zeros_deletes_everything_but_pinned_backups() {
        let mut backups = vec![version("a", JUNE_1), version("b", JUNE_1 - DAY)];
        backups[1].pinned = true;
        let fates = plan_backups(&keep(0, 0, 0, 0), &backups);
        assert_eq!(kept(&fates), [("b", vec![KeepReason::Pinned])]);
    }

    #[test]
    fn a_policy_of_zeros_turns_rotation_off_for_the_age_rule() {
        let zeros = GfsPolicy {
            keep_last: 0,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
        };
        let rules = BackupRules::new(zeros, JUNE_1, 10 * DAY as u64);
        assert_eq!(
            rules,
            BackupRules::Age {
                now_ms: JUNE_1,
                retention_ms: 10 * DAY as u64
            }
        );
        let mut backups = vec![
            version("young", JUNE_1 - 10 * DAY + 1),
            version("old", JUNE_1 - 10 * DAY),
            version("older", JUNE_1 - 30 * DAY),
        ];
        backups[0].parent = Some("older".into());
        use KeepReason::*;
        assert_eq!(
            kept(&plan_backups(&rules, &backups)),
            [("young", vec![WithinRetention]), ("older", vec![Parent])]
        );
        let daily = GfsPolicy {
            keep_daily: 1,
            ..zeros
        };
        assert_eq!(
            BackupRules::new(daily, JUNE_1, 1),
            BackupRules::Rotation(daily)
        );
    }

    #[test]
    fn the_newest_backup_of_the_automated_chain_is_kept() {
        // Daily 1 keeps the manual backup made after it on the same day; the chain's head
        // stays for the automated backup that may be running on top of it.
        let mut backups = vec![
            version("manual", JUNE_1 + 2),
            version("auto-2", JUNE_1 + 1),
            version("auto-1", JUNE_1 - DAY),
        ];
        backups[1].chained = true;
        backups[2].chained = true;
        use KeepReason::*;
        assert_eq!(
            kept(&plan_backups(&keep(0, 1, 0, 0), &backups)),
            [("manual", vec![Daily]), ("auto-2", vec![ChainHead])]
        );
    }

    #[test]
    fn ties_are_walked_by_id_ascending_as_the_index_lists_them() {
        let backups = [version("b", JUNE_1), version("a", JUNE_1)];
        let fates = plan_backups(&keep(1, 0, 0, 0), &backups);
        assert_eq!(kept(&fates), [("a", vec![KeepReason::Last])]);
        assert_eq!(fates[1].id, "b");
    }

    #[test]
    fn parent_chains_that_loop_or_dangle_end_there() {
        let mut backups = vec![version("x", JUNE_1), version("y", JUNE_1 - DAY)];
        backups[0].parent = Some("y".into());
        backups[1].parent = Some("x".into());
        let mut dangling = version("z", JUNE_1 - 2 * DAY);
        dangling.parent = Some("gone".into());
        backups.push(dangling);
        let policy = keep(3, 0, 0, 0);
        let fates = plan_backups(&policy, &backups);
        assert_eq!(fates.len(), 3);
        assert!(fates.iter().all(BackupFate::kept), "{fates:?}");
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod proptests {
    use proptest::prelude::*;

    use std::collections::HashMap;

    use super::*;

    fn histories() -> impl Strategy<Value = (BackupRules, Vec<BackupVersion>)> {
        let policy = (0u32..5, 0u32..8, 0u32..5, 0u32..13).prop_map(|(l, d, w, m)| GfsPolicy {
            keep_last: l,
            keep_daily: d,
            keep_weekly: w,
            keep_monthly: m,
        });
        let policy = (policy, 0i64..1_000 * 86_400_000).prop_map(|(policy, now)| {
            BackupRules::new(policy, 1_700_000_000_000 + now, 90 * 86_400_000)
        });
        // Up to 60 backups over ~3 years, some incremental to an older one, some pinned.
        let backups = prop::collection::vec(
            (
                0i64..1_000 * 86_400_000,
                prop::option::of(0usize..60),
                prop::bool::weighted(0.05),
                prop::bool::weighted(0.3),
            ),
            0..60,
        )
        .prop_map(|raw| {
            raw.iter()
                .enumerate()
                .map(|(n, (offset, parent, pinned, chained))| BackupVersion {
                    id: format!("b{n:02}"),
                    created_at_ms: 1_700_000_000_000 + offset,
                    parent: parent
                        .filter(|p| *p < raw.len() && raw[*p].0 < *offset)
                        .map(|p| format!("b{p:02}")),
                    pinned: *pinned,
                    chained: *chained,
                })
                .collect()
        });
        (policy, backups)
    }

    proptest! {
        #[test]
        fn never_deletes_what_a_kept_backup_depends_on((policy, backups) in histories()) {
            let fates = plan_backups(&policy, &backups);
            let kept: HashMap<&str, bool> =
                fates.iter().map(|fate| (fate.id.as_str(), fate.kept())).collect();
            for backup in &backups {
                if kept[backup.id.as_str()] {
                    if let Some(parent) = &backup.parent {
                        prop_assert!(kept[parent.as_str()], "{} needs {}", backup.id, parent);
                    }
                }
                if backup.pinned {
                    prop_assert!(kept[backup.id.as_str()]);
                }
            }
        }

        #[test]
        fn planning_again_over_what_was_kept_deletes_nothing((policy, backups) in histories()) {
            let fates = plan_backups(&policy, &backups);
            let survivors: Vec<BackupVersion> = backups
                .iter()
                .filter(|backup| fates.iter().any(|fate| fate.id == backup.id && fate.kept()))
                .cloned()
                .collect();
            let again = plan_backups(&policy, &survivors);
            prop_assert!(again.iter().all(BackupFate::kept), "{again:?}");
        }

        #[test]
        fn each_rule_keeps_at_most_its_count((rules, backups) in histories()) {
            let fates = plan_backups(&rules, &backups);
            prop_assert_eq!(fates.len(), backups.len());
            let counts = match rules {
                BackupRules::Rotation(policy) => policy.counts(),
                BackupRules::Age { .. } => [0; 4],
            };
            for (reason, count) in RULES.iter().zip(counts) {
                let kept = fates.iter().filter(|fate| fate.reasons.contains(reason)).count();
                prop_assert!(kept <= count as usize, "{reason:?}: {kept} > {count}");
            }
            let heads = fates.iter().filter(|fate| fate.reasons.contains(&KeepReason::ChainHead));
            prop_assert_eq!(heads.count(), usize::from(backups.iter().any(|b| b.chained)));
        }

        #[test]
        fn a_walk_resumed_from_its_json_at_any_page_decides_the_same(
            (rules, backups) in histories(),
            page in 1usize..7,
        ) {
            let whole = plan_backups(&rules, &backups);
            let mut order = backups.clone();
            order.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then_with(|| a.id.cmp(&b.id)));
            let mut state = serde_json::to_string(&BackupWalk::new(&rules)).unwrap();
            let mut paged = Vec::new();
            for (n, chunk) in order.chunks(page).enumerate() {
                let mut walk: BackupWalk = serde_json::from_str(&state).unwrap();
                for (i, backup) in chunk.iter().enumerate() {
                    let oldest = n * page + i + 1 == order.len();
                    paged.push(BackupFate { id: backup.id.clone(), reasons: walk.decide(&rules, backup, oldest) });
                }
                state = serde_json::to_string(&walk).unwrap();
            }
            prop_assert_eq!(paged, whole);
        }
    }
}
