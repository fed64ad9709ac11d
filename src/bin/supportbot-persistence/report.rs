//! The report of a run: a line per object (or export line) with its status and what is wrong,
//! then totals; or all of it as one JSON document (`--json`, docs/FORMAT.md "Offline checker
//! report").

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::{json, Value};
use supportbot_persistence::check::{Note, ObjectCheck};

/// One object's result.
#[derive(Debug)]
pub struct Entry {
    /// Its key (or `line <n>` of an export).
    pub key: String,
    /// What was found.
    pub check: ObjectCheck,
}

impl Entry {
    /// `problem` when anything is wrong; else the first note (`erased`, `not_decrypted`,
    /// `uncommitted`, `not_ours`); else `ok`.
    pub fn status(&self) -> &'static str {
        if self.check.has_problems() {
            "problem"
        } else {
            self.check.notes.first().map_or("ok", |note| note.name())
        }
    }
}

/// A run's report.
#[derive(Debug)]
pub struct Report {
    /// What was checked (the path given).
    pub source: String,
    /// Whether encrypted archives were decrypted (keys were given).
    pub decrypting: bool,
    /// Every object, in key (or line) order.
    pub entries: Vec<Entry>,
}

/// The counts of a report.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Totals {
    objects: u64,
    ok: u64,
    problems: u64,
    not_decrypted: u64,
    uncommitted: u64,
    not_ours: u64,
    erased: u64,
    by_problem: BTreeMap<&'static str, u64>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn clean(&self) -> bool {
        self.entries.iter().all(|entry| !entry.check.has_problems())
    }

    fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for entry in &self.entries {
            totals.objects += 1;
            for finding in &entry.check.findings {
                *totals.by_problem.entry(finding.problem.name()).or_default() += 1;
            }
            let count = match entry.status() {
                "problem" => &mut totals.problems,
                "ok" => &mut totals.ok,
                name if name == Note::NotDecrypted.name() => &mut totals.not_decrypted,
                name if name == Note::Uncommitted.name() => &mut totals.uncommitted,
                name if name == Note::Erased.name() => &mut totals.erased,
                _ => &mut totals.not_ours,
            };
            *count += 1;
        }
        totals
    }

    /// Writes the report as text: a line per object, its problems indented below it, then
    /// the totals.
    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        for entry in &self.entries {
            let kind = entry.check.kind.name();
            writeln!(out, "{:<13} {kind:<22} {}", entry.status(), entry.key)?;
            for finding in &entry.check.findings {
                writeln!(
                    out,
                    "{:<13} {}: {}",
                    "",
                    finding.problem.name(),
                    finding.detail
                )?;
            }
        }
        let totals = self.totals();
        writeln!(out)?;
        writeln!(
            out,
            "{}: {} objects: {} ok, {} with problems, {} not decrypted, {} uncommitted, {} not \
             the library's, {} erased",
            self.source,
            totals.objects,
            totals.ok,
            totals.problems,
            totals.not_decrypted,
            totals.uncommitted,
            totals.not_ours,
            totals.erased
        )?;
        if !totals.by_problem.is_empty() {
            let named: Vec<String> = totals
                .by_problem
                .iter()
                .map(|(name, count)| format!("{name} {count}"))
                .collect();
            writeln!(out, "problems: {}", named.join(", "))?;
        }
        if totals.not_decrypted > 0 {
            writeln!(
                out,
                "not decrypted: {} encrypted archives were checked up to their data key, not \
                 opened (set {} to check them in full); this is not a problem",
                totals.not_decrypted,
                super::args::KEYS_VAR
            )?;
        }
        if totals.erased > 0 {
            writeln!(
                out,
                "erased: {} archives an erasure tombstone of the copy covers (a copy taken while \
                 the erasure ran); this is not a problem",
                totals.erased
            )?;
        }
        let verdict = if self.clean() {
            "clean"
        } else {
            "PROBLEMS FOUND"
        };
        writeln!(out, "result: {verdict}")
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let totals = self.totals();
        let objects: Vec<Value> = self
            .entries
            .iter()
            .map(|entry| {
                json!({
                    "key": entry.key,
                    "kind": entry.check.kind,
                    "status": entry.status(),
                    "problems": entry.check.findings,
                    "notes": entry.check.notes,
                    "facts": entry.check.facts,
                })
            })
            .collect();
        json!({
            "source": self.source,
            "decrypted": self.decrypting,
            "clean": self.clean(),
            "totals": {
                "objects": totals.objects,
                "ok": totals.ok,
                "problems": totals.problems,
                "notDecrypted": totals.not_decrypted,
                "uncommitted": totals.uncommitted,
                "notOurs": totals.not_ours,
                "erased": totals.erased,
                "byProblem": totals.by_problem,
            },
            "objects": objects,
        })
    }
}
