//! Which backups to keep: grandfather-father-son rotation with restic's `forget` semantics.
//!
//! Backups are taken newest first. Each rule with a count left keeps a backup when it is the
//! first (newest) one of its bucket: `last` keeps every backup (its bucket is the backup
//! itself), `daily` one per UTC day, `weekly` one per ISO week, `monthly` one per UTC month.
//! Keeping one uses one of the rule's count. As restic does since 0.14, a rule that still has
//! count left when it reaches the oldest backup keeps that one too, so the history kept reaches
//! as far back as the counts allow. A backup made with `keep: true` is always kept, and so is
//! every backup a kept incremental one depends on (its parent, that one's parent, ...), or it
//! could not be restored.
//!
//! Applying the plan and planning again over what it kept deletes nothing more (a property the
//! tests check), so a sweep that stops part-way and resumes cannot delete more than one
//! uninterrupted sweep would.

use std::collections::HashMap;

use chrono::{DateTime, Datelike};
use serde::Serialize;

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

/// One rule: its reason, its count left and the bucket of the last backup it kept.
struct Rule {
    reason: KeepReason,
    left: u32,
    last: Option<i64>,
}

/// The bucket of a backup made at `ms` under `reason`'s rule; `index` (its place, newest
/// first) makes every backup a bucket of its own for `last`. A time chrono cannot represent
/// falls in a bucket of its own too, so it is never merged with another backup's.
fn bucket(reason: KeepReason, ms: i64, index: usize) -> i64 {
    let Some(time) = DateTime::from_timestamp_millis(ms) else {
        return i64::MIN + index as i64;
    };
    let (year, month) = (i64::from(time.year()), i64::from(time.month()));
    match reason {
        KeepReason::Daily => year * 10_000 + month * 100 + i64::from(time.day()),
        KeepReason::Weekly => {
            let week = time.iso_week();
            i64::from(week.year()) * 100 + i64::from(week.week())
        }
        KeepReason::Monthly => year * 100 + month,
        _ => index as i64,
    }
}

/// Decides, for every backup in `backups` (any order), whether `policy` keeps it and why; the
/// fates come newest first (ties: by id, descending), one per backup.
pub fn plan_backups(policy: &GfsPolicy, backups: &[BackupVersion]) -> Vec<BackupFate> {
    let mut order: Vec<&BackupVersion> = backups.iter().collect();
    order.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
    let mut rules = [
        (KeepReason::Last, policy.keep_last),
        (KeepReason::Daily, policy.keep_daily),
        (KeepReason::Weekly, policy.keep_weekly),
        (KeepReason::Monthly, policy.keep_monthly),
    ]
    .map(|(reason, left)| Rule {
        reason,
        left,
        last: None,
    });
    let oldest = order.len().saturating_sub(1);
    let mut fates: Vec<BackupFate> = order
        .iter()
        .enumerate()
        .map(|(index, backup)| {
            let mut reasons = Vec::new();
            if backup.pinned {
                reasons.push(KeepReason::Pinned);
            }
            for rule in rules.iter_mut().filter(|rule| rule.left > 0) {
                let bucket = bucket(rule.reason, backup.created_at_ms, index);
                if rule.last != Some(bucket) || index == oldest {
                    rule.last = Some(bucket);
                    rule.left -= 1;
                    reasons.push(rule.reason);
                }
            }
            BackupFate {
                id: backup.id.clone(),
                reasons,
            }
        })
        .collect();
    keep_parents(&order, &mut fates);
    fates
}

/// Keeps every backup a kept one depends on, however deep the chain (a chain that loops or
/// names a missing backup ends there).
fn keep_parents(order: &[&BackupVersion], fates: &mut [BackupFate]) {
    let place: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(index, backup)| (backup.id.as_str(), index))
        .collect();
    for start in 0..order.len() {
        let mut at = start;
        while fates[at].kept() {
            let Some(parent) = order[at].parent.as_deref().and_then(|id| place.get(id)) else {
                break;
            };
            if fates[*parent].reasons.contains(&KeepReason::Parent) {
                break;
            }
            fates[*parent].reasons.push(KeepReason::Parent);
            at = *parent;
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2026-06-01T12:00:00Z, a Monday.
    const JUNE_1: i64 = 1_780_315_200_000;

    /// A policy keeping the last `last`, `daily` days, `weekly` weeks and `monthly` months.
    fn keep(last: u32, daily: u32, weekly: u32, monthly: u32) -> GfsPolicy {
        GfsPolicy {
            keep_last: last,
            keep_daily: daily,
            keep_weekly: weekly,
            keep_monthly: monthly,
        }
    }

    fn version(id: &str, created_at_ms: i64) -> BackupVersion {
        BackupVersion {
            id: id.into(),
            created_at_ms,
            parent: None,
            pinned: false,
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
    fn a_policy_of_zeros_deletes_everything_but_pinned_backups() {
        let mut backups = vec![version("a", JUNE_1), version("b", JUNE_1 - DAY)];
        backups[1].pinned = true;
        let fates = plan_backups(&keep(0, 0, 0, 0), &backups);
        assert_eq!(kept(&fates), [("b", vec![KeepReason::Pinned])]);
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

    use super::*;

    fn histories() -> impl Strategy<Value = (GfsPolicy, Vec<BackupVersion>)> {
        let policy = (0u32..5, 0u32..8, 0u32..5, 0u32..13).prop_map(|(l, d, w, m)| GfsPolicy {
            keep_last: l,
            keep_daily: d,
            keep_weekly: w,
            keep_monthly: m,
        });
        // Up to 60 backups over ~3 years, some incremental to an older one, some pinned.
        let backups = prop::collection::vec(
            (
                0i64..1_000 * 86_400_000,
                prop::option::of(0usize..60),
                prop::bool::weighted(0.05),
            ),
            0..60,
        )
        .prop_map(|raw| {
            raw.iter()
                .enumerate()
                .map(|(n, (offset, parent, pinned))| BackupVersion {
                    id: format!("b{n:02}"),
                    created_at_ms: 1_700_000_000_000 + offset,
                    parent: parent
                        .filter(|p| *p < raw.len() && raw[*p].0 < *offset)
                        .map(|p| format!("b{p:02}")),
                    pinned: *pinned,
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
        fn each_rule_keeps_at_most_its_count((policy, backups) in histories()) {
            let fates = plan_backups(&policy, &backups);
            prop_assert_eq!(fates.len(), backups.len());
            for (reason, count) in [
                (KeepReason::Last, policy.keep_last),
                (KeepReason::Daily, policy.keep_daily),
                (KeepReason::Weekly, policy.keep_weekly),
                (KeepReason::Monthly, policy.keep_monthly),
            ] {
                let kept = fates.iter().filter(|fate| fate.reasons.contains(&reason)).count();
                prop_assert!(kept <= count as usize, "{reason:?}: {kept} > {count}");
            }
        }
    }
}
