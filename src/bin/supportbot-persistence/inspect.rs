//! `inspect`: what one object is (kind, format, session, sizes, checksum, encryption header),
//! read with the same checks as `verify`; message text only when asked. A file that is no
//! object (no key in its path, none given) is read as a store export and summarized.

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use serde_json::{json, Value};
use supportbot_persistence::check::backup::check_backup;
use supportbot_persistence::check::export::ExportChecker;
use supportbot_persistence::check::object::{check_object, data_key_object, Context};
use supportbot_persistence::check::{
    classify, Finding, ObjectCheck, ObjectKind, Problem, CHECK_READ_LIMIT,
};
use supportbot_persistence::codec::gzip;
use supportbot_persistence::hash::sha256_hex;

use crate::args::keys_from_env;
use crate::block_on;
use crate::bucket::io_error;
use crate::report::Entry;

/// The first folder of every key the library writes in R2.
const TOP_FOLDERS: [&str; 5] = ["conversations", "backups", "keys", "erasures", "example"];

/// Inspects `file` (stored under `key`, else under the key its path shows) and prints what it
/// is; `Ok(true)` when it has a problem.
pub fn run(
    file: &Path,
    key: Option<&str>,
    show_messages: bool,
    json: bool,
) -> Result<bool, String> {
    let ring = keys_from_env()?;
    let bytes = fs::read(file).map_err(|err| io_error(file, &err))?;
    let located = match key {
        Some(key) => Some((key.to_owned(), None)),
        None => key_in_path(file).map(|(key, root)| (key, Some(root))),
    };
    let Some((key, root)) = located else {
        return summarize_export(file, &bytes, json);
    };
    // Objects an object names (a data key, a backup's packs) are read beside it in the copy.
    let read_named = |named: &str| {
        root.as_ref()
            .and_then(|root| fs::read(root.join(named)).ok())
    };
    let mut conversation = None;
    let check = match classify(&key) {
        ObjectKind::BackupManifest => {
            let mut get = |named: &str| read_named(named);
            let backup = check_backup(&key, &bytes, &mut get);
            let mut check = backup.manifest;
            for (part, part_check) in backup.parts {
                for finding in part_check.findings {
                    let detail = format!("{part}: {}", finding.detail);
                    check.find(Finding::new(finding.problem, detail));
                }
            }
            check
        }
        kind @ (ObjectKind::BackupPack | ObjectKind::BackupData | ObjectKind::LegacyBackupData) => {
            pack_facts(kind, &bytes)
        }
        _ => {
            let data_key = data_key_object(&key, &bytes).and_then(|object| read_named(&object));
            let context = Context {
                recorded_sha256: None,
                data_key: data_key.as_deref(),
                ring: ring.as_ref(),
            };
            let (check, read) = block_on(check_object(&key, &bytes, context));
            conversation = read.map(|read| read.conversation_json);
            check
        }
    };
    let entry = Entry { key, check };
    let shown = conversation.filter(|_| show_messages);
    print_entry(&entry, shown.as_deref(), json)?;
    Ok(entry.check.has_problems())
}

/// The key a path shows: its part from a library's top folder on, when that is a key the
/// library writes, and the folder the copy is rooted at.
pub fn key_in_path(file: &Path) -> Option<(String, PathBuf)> {
    let parts: Vec<&str> = file
        .components()
        .filter_map(|part| match part {
            Component::Normal(name) => name.to_str(),
            _ => None,
        })
        .collect();
    (0..parts.len()).find_map(|at| {
        let tail = parts.get(at..)?;
        if !TOP_FOLDERS.contains(tail.first()?) {
            return None;
        }
        let key = tail.join("/");
        let known = !matches!(classify(&key), ObjectKind::Other | ObjectKind::Unexpected);
        let root: PathBuf = file.ancestors().nth(tail.len())?.to_path_buf();
        known.then_some((key, root))
    })
}

/// What a pack or data bundle says of itself; only its manifest vouches for it.
fn pack_facts(kind: ObjectKind, bytes: &[u8]) -> ObjectCheck {
    let mut check = ObjectCheck::new(kind);
    check.fact("storedSize", bytes.len() as u64);
    check.fact("sha256", sha256_hex(bytes));
    let inflated;
    let json_bytes = if gzip::is_gzip(bytes) {
        match gzip::decompress("pack", bytes, CHECK_READ_LIMIT) {
            Ok(plain) => {
                inflated = plain;
                &inflated[..]
            }
            Err(err) => {
                check.find(Finding::of_error(&err, Problem::CorruptGzip));
                return check;
            }
        }
    } else {
        bytes
    };
    match serde_json::from_slice::<Value>(json_bytes) {
        Ok(Value::Object(members)) => {
            for name in ["formatVersion", "backupId", "createdAt", "pack"] {
                if let Some(value) = members.get(name) {
                    check.fact(name, value.clone());
                }
            }
            let sessions = members.get("sessions").and_then(Value::as_array);
            check.fact("sessions", sessions.map_or(0, Vec::len) as u64);
        }
        // The earlier implementation's data.json is an array of sessions.
        Ok(Value::Array(sessions)) => check.fact("sessions", sessions.len() as u64),
        Ok(_) => check.find(Finding::new(Problem::CorruptDocument, "not a JSON object")),
        Err(err) => check.find(Finding::new(
            Problem::CorruptDocument,
            format!("not JSON: {err}"),
        )),
    }
    check.fact(
        "verifiedBy",
        "its manifest: inspect the manifest, or verify the copy",
    );
    check
}

/// A store export's lines by type, its end lines and what is wrong.
fn summarize_export(file: &Path, bytes: &[u8], json: bool) -> Result<bool, String> {
    let ring = keys_from_env()?;
    let mut checker = ExportChecker::new();
    let mut check = ObjectCheck::new(ObjectKind::ExportLine);
    let mut by_type = serde_json::Map::new();
    let mut lines = bytes.split_inclusive(|byte| *byte == b'\n').peekable();
    if lines.peek().is_none() {
        return Err(format!(
            "{}: empty, and its path shows no key (give --key)",
            file.display()
        ));
    }
    for line in lines {
        let (text, newline) = match line.strip_suffix(b"\n") {
            Some(text) => (text, true),
            None => (line, false),
        };
        let checked = block_on(checker.line(text, newline, ring.as_ref()));
        let kind = checked
            .check
            .facts
            .get("type")
            .cloned()
            .unwrap_or(json!("unreadable"));
        let name = kind.as_str().unwrap_or("unreadable").to_owned();
        let count = by_type.entry(name).or_insert(json!(0));
        *count = json!(count.as_u64().unwrap_or(0) + 1);
        for finding in checked.check.findings {
            let detail = format!("{}: {}", checked.name, finding.detail);
            check.find(Finding::new(finding.problem, detail));
        }
    }
    if let Some(finding) = checker.finish() {
        check.find(finding);
    }
    check.fact("lines", Value::Object(by_type));
    check.fact("endLines", checker.end_lines());
    let entry = Entry {
        key: file.display().to_string(),
        check,
    };
    print_entry(&entry, None, json)?;
    Ok(entry.check.has_problems())
}

fn print_entry(entry: &Entry, conversation: Option<&str>, json: bool) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let written = if json {
        let mut value = json!({
            "key": entry.key,
            "kind": entry.check.kind,
            "status": entry.status(),
            "problems": entry.check.findings,
            "notes": entry.check.notes,
            "facts": entry.check.facts,
        });
        if let Some(conversation) = conversation {
            let parsed: Value = serde_json::from_str(conversation).unwrap_or(Value::Null);
            value["conversation"] = parsed;
        }
        writeln!(out, "{value:#}")
    } else {
        write_text(&mut out, entry, conversation)
    };
    written.map_err(|err| format!("standard output: {err}"))
}

fn write_text(
    out: &mut impl Write,
    entry: &Entry,
    conversation: Option<&str>,
) -> std::io::Result<()> {
    writeln!(out, "key: {}", entry.key)?;
    writeln!(out, "kind: {}", entry.check.kind.name())?;
    writeln!(out, "status: {}", entry.status())?;
    for (name, value) in &entry.check.facts {
        match value {
            Value::String(text) => writeln!(out, "{name}: {text}")?,
            other => writeln!(out, "{name}: {other}")?,
        }
    }
    for finding in &entry.check.findings {
        writeln!(
            out,
            "problem: {}: {}",
            finding.problem.name(),
            finding.detail
        )?;
    }
    if let Some(conversation) = conversation {
        writeln!(out, "conversation: {conversation}")?;
    }
    Ok(())
}
