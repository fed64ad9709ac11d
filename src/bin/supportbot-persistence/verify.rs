//! `verify`: every object of a bucket copy, or every line of a store export, checked with the
//! library's `check` module; backups vouch for the packs they name and for the archives they
//! hold (a copy has no R2 custom metadata, so a backup's SHA-256 is the only recorded checksum
//! of a live archive).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use supportbot_persistence::check::backup::{check_backup, RecordedArchive};
use supportbot_persistence::check::export::ExportChecker;
use supportbot_persistence::check::object::{check_object, data_key_object, Context};
use supportbot_persistence::check::{classify, Finding, Note, ObjectCheck, ObjectKind, Problem};
use supportbot_persistence::crypto::keyring::KeyRing;
use supportbot_persistence::hash::sha256_hex;
use supportbot_persistence::keys::parse_backup_object_key;

use crate::args::keys_from_env;
use crate::bucket::{io_error, Bucket};
use crate::erased::Tombstones;
use crate::report::{Entry, Report};
use crate::{block_on, progress};

/// Verifies `source` (a directory: a bucket copy; a file: a store export) and prints the
/// report; `Ok(true)` when it found a problem.
pub fn run(source: &Path, json: bool) -> Result<bool, String> {
    let ring = keys_from_env()?;
    let meta = std::fs::metadata(source).map_err(|err| io_error(source, &err))?;
    let report = if meta.is_dir() {
        verify_bucket(source, &Bucket::open(source)?, ring.as_ref())?
    } else if let Some((key, _)) = crate::inspect::key_in_path(source) {
        return Err(format!(
            "{} is one object ({key}), not a store export: inspect it, or verify the copy's \
             root folder",
            source.display()
        ));
    } else {
        verify_export(source, ring.as_ref())?
    };
    let mut out = std::io::stdout().lock();
    let written = if json {
        writeln!(out, "{:#}", report.to_json())
    } else {
        report.write_text(&mut out)
    };
    written.map_err(|err| format!("standard output: {err}"))?;
    Ok(!report.clean())
}

/// What the committed backups of a copy say about its objects.
#[derive(Default)]
struct Backups {
    /// The check of each manifest and of each object a manifest names.
    checks: BTreeMap<String, ObjectCheck>,
    /// The ids of the backups with a readable manifest.
    committed: BTreeSet<String>,
    /// Every object a manifest names.
    named: BTreeSet<String>,
    /// The SHA-256s packs record of live archives, by archive key, each with the backups
    /// (indexes into `ids`) recording it: one entry per archive, however many backups hold it.
    recorded: BTreeMap<String, BTreeMap<String, Vec<usize>>>,
    /// The ids of the backups in `recorded`.
    ids: Vec<String>,
}

fn check_backups(bucket: &Bucket) -> Result<Backups, String> {
    let mut backups = Backups::default();
    let manifests: Vec<String> = bucket
        .keys()
        .filter(|key| classify(key) == ObjectKind::BackupManifest)
        .map(str::to_owned)
        .collect();
    let bar = progress::bar(manifests.len() as u64, "backups");
    for key in manifests {
        let Some(bytes) = bucket.read(&key)? else {
            continue;
        };
        let mut failed = None;
        let mut get = |named: &str| match bucket.read(named) {
            Ok(found) => found,
            Err(err) => {
                failed = Some(err);
                None
            }
        };
        let checked = check_backup(&key, &bytes, &mut get);
        if let Some(err) = failed {
            return Err(err);
        }
        if let Some((id, _)) = parse_backup_object_key(&key).filter(|_| checked.readable) {
            backups.committed.insert(id.as_str().to_owned());
        }
        backups.checks.insert(key, checked.manifest);
        backups.named.extend(checked.named);
        backups.checks.extend(checked.parts);
        for RecordedArchive {
            key,
            sha256,
            backup_id,
        } in checked.recorded
        {
            if backups.ids.last() != Some(&backup_id) {
                backups.ids.push(backup_id);
            }
            let backup = backups.ids.len() - 1;
            let of_key = backups.recorded.entry(key).or_default();
            of_key.entry(sha256).or_default().push(backup);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(backups)
}

fn verify_bucket(root: &Path, bucket: &Bucket, ring: Option<&KeyRing>) -> Result<Report, String> {
    // A folder with none of the library's keys is a wrong path (or a copy's subfolder), not a
    // clean bucket.
    if bucket.keys().all(|key| classify(key) == ObjectKind::Other) {
        return Err(format!(
            "{}: no file has a key the library writes (conversations/…, backups/…, keys/…, \
             erasures/…): give the root of the copy",
            root.display()
        ));
    }
    let mut backups = check_backups(bucket)?;
    let mut tombstones = Tombstones::read(bucket)?;
    let bar = progress::bar(bucket.len() as u64, "objects");
    let mut entries = Vec::with_capacity(bucket.len());
    for key in bucket.keys() {
        let kind = classify(key);
        // Objects that are not the library's are listed, not read.
        let bytes = match kind {
            ObjectKind::Other => Vec::new(),
            _ => bucket.read(key)?.unwrap_or_default(),
        };
        let mut check = match kind {
            ObjectKind::BackupManifest
            | ObjectKind::BackupPack
            | ObjectKind::BackupData
            | ObjectKind::LegacyBackupData => backup_object(&mut backups, key, kind, &bytes),
            _ => {
                let data_key = match data_key_object(key, &bytes) {
                    Some(object) => bucket.read(&object)?,
                    None => None,
                };
                let context = Context {
                    recorded_sha256: None,
                    data_key: data_key.as_deref(),
                    ring,
                };
                let (mut check, read) = block_on(check_object(key, &bytes, context));
                if is_archive(kind) {
                    let read = read.filter(|_| !check.has_problems());
                    let user_id = read
                        .as_ref()
                        .and_then(|read| read.metadata.user_id.as_deref());
                    if let Some(erased) =
                        tombstones.erasure_of(key, &bytes, user_id, read.is_some())
                    {
                        mark_erased(&mut check, erased.tombstone());
                    }
                }
                check
            }
        };
        let erased = check.notes.contains(&Note::Erased);
        if let Some(recorded) = backups.recorded.get(key).filter(|_| !erased) {
            compare_with_backups(&mut check, &bytes, recorded, &backups.ids);
        }
        entries.push(Entry {
            key: key.to_owned(),
            check,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(warning) = tombstones.warning() {
        eprintln!("{warning}");
    }
    Ok(Report {
        source: root.display().to_string(),
        decrypting: ring.is_some(),
        entries,
    })
}

fn is_archive(kind: ObjectKind) -> bool {
    matches!(
        kind,
        ObjectKind::Archive | ObjectKind::EncryptedArchive | ObjectKind::LegacyArchive
    )
}

/// Notes an archive an erasure covers `erased`, its findings dropped (an archive whose data key
/// the erasure destroyed is `key_missing`, and is meant to be), naming the tombstone.
fn mark_erased(check: &mut ObjectCheck, tombstone: &str) {
    check.findings.clear();
    check.notes.retain(|note| *note != Note::NotDecrypted);
    check.notes.insert(0, Note::Erased);
    check.fact("erasedBy", tombstone);
}

/// A backup object's check: its manifest's verdict when a manifest names it, else uncommitted
/// (no manifest, or one that cannot be read, which is reported itself) or unreferenced (a
/// manifest that does not name it).
fn backup_object(backups: &mut Backups, key: &str, kind: ObjectKind, bytes: &[u8]) -> ObjectCheck {
    if let Some(check) = backups.checks.remove(key) {
        return check;
    }
    let mut check = ObjectCheck::new(kind);
    check.fact("storedSize", bytes.len() as u64);
    check.fact("sha256", sha256_hex(bytes));
    let committed =
        parse_backup_object_key(key).is_some_and(|(id, _)| backups.committed.contains(id.as_str()));
    if !committed {
        check.notes.push(Note::Uncommitted);
    } else if !backups.named.contains(key) {
        let reason = "in a committed backup whose manifest does not name it";
        check.find(Finding::new(Problem::Unreferenced, reason));
    }
    check
}

/// Compares a live archive with the SHA-256s the backups holding it record.
fn compare_with_backups(
    check: &mut ObjectCheck,
    bytes: &[u8],
    recorded: &BTreeMap<String, Vec<usize>>,
    ids: &[String],
) {
    let actual = sha256_hex(bytes);
    let names = |backups: &[usize]| -> Vec<String> {
        backups
            .iter()
            .filter_map(|at| ids.get(*at).cloned())
            .collect()
    };
    for (sha256, backups) in recorded {
        if *sha256 == actual {
            check.fact("checksumRecordedBy", names(backups));
        } else {
            let reason = format!(
                "does not hash to the SHA-256 recorded by backup {}: expected {sha256}, \
                 computed {actual}",
                names(backups).join(", ")
            );
            check.find(Finding::new(Problem::ChecksumMismatch, reason));
        }
    }
}

fn verify_export(path: &Path, ring: Option<&KeyRing>) -> Result<Report, String> {
    let file = File::open(path).map_err(|err| io_error(path, &err))?;
    let size = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let bar = progress::bar(size, "verifying");
    let mut reader = BufReader::new(file);
    let mut checker = ExportChecker::new();
    let mut entries = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|err| io_error(path, &err))?;
        if read == 0 {
            break;
        }
        let newline = line.last() == Some(&b'\n');
        let bytes = if newline {
            line.get(..line.len() - 1).unwrap_or_default()
        } else {
            &line[..]
        };
        let checked = block_on(checker.line(bytes, newline, ring));
        entries.push(Entry {
            key: checked.name,
            check: checked.check,
        });
        bar.inc(read as u64);
    }
    bar.finish_and_clear();
    if let Some(finding) = checker.finish() {
        let mut check = ObjectCheck::new(ObjectKind::ExportLine);
        check.find(finding);
        entries.push(Entry {
            key: "end of stream".to_owned(),
            check,
        });
    }
    Ok(Report {
        source: path.display().to_string(),
        decrypting: ring.is_some(),
        entries,
    })
}
