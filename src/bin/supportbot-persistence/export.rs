//! `export`: every archived conversation of a bucket copy, decrypted, as the lines of a
//! person's export (`exportUserData`, docs/FORMAT.md "A person's export"), newest first, then
//! the end line.
//!
//! Archives an erasure tombstone of the copy covers are left out, and counted on standard
//! error: a copy taken while an erasure ran still holds them (`crate::erased`). A plaintext
//! archive is matched by its `userId` hashed as the store hashes it, so a store with a hash
//! secret needs `PERSISTENCE_HASH_SECRET` (a warning says so when no archive's user matches
//! any tombstone and it is not set).
//!
//! Not a store export (`exportStore`) for `importStore`: that stream is built from what a copy
//! of R2 lacks. Its archive lines carry each archive's metadata record, which for an encrypted
//! archive holds an `encryptedSummary` sealed beside the archive, and KV's listing metadata
//! (cut summaries, `summaryTruncated`); and it comes in the global index's order. A stream
//! rebuilt from guesses would be imported as if it were the store's own.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use supportbot_persistence::check::object::{check_object, data_key_object, Context};
use supportbot_persistence::check::{classify, ObjectKind};
use supportbot_persistence::codec::export::{conversation_line, user_end_line, LineDigest};
use supportbot_persistence::keys::parse_archive_object_key;

use crate::args::{keys_from_env, KEYS_VAR};
use crate::bucket::{io_error, Bucket};
use crate::erased::Tombstones;
use crate::{block_on, progress};

/// Writes the conversations of the copy at `dir` to `out` (standard output when `None`);
/// `Ok(true)` when an archive could not be exported (each is named on standard error).
pub fn run(dir: &Path, out: Option<&Path>) -> Result<bool, String> {
    let ring = keys_from_env()?;
    let bucket = Bucket::open(dir)?;
    let mut tombstones = Tombstones::read(&bucket)?;
    // Newest first, as the global index lists them; then by session.
    let mut archives: Vec<(i64, String, &str)> = bucket
        .keys()
        .filter(|key| {
            matches!(
                classify(key),
                ObjectKind::Archive | ObjectKind::EncryptedArchive | ObjectKind::LegacyArchive
            )
        })
        .filter_map(|key| {
            let parsed = parse_archive_object_key(key)?;
            Some((
                parsed.archived_at_ms,
                parsed.session_id.as_str().to_owned(),
                key,
            ))
        })
        .collect();
    archives.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));

    let mut writer: Box<dyn Write> = match out {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).map_err(|err| io_error(path, &err))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let write_error = |err: std::io::Error| match out {
        Some(path) => io_error(path, &err),
        None => format!("standard output: {err}"),
    };
    let bar = progress::bar(archives.len() as u64, "exporting");
    let (mut digest, mut skipped, mut erased) = (LineDigest::default(), 0u64, 0u64);
    for (_, _, key) in &archives {
        let bytes = bucket.read(key)?.unwrap_or_default();
        let data_key = match data_key_object(key, &bytes) {
            Some(object) => bucket.read(&object)?,
            None => None,
        };
        let context = Context {
            recorded_sha256: None,
            data_key: data_key.as_deref(),
            ring: ring.as_ref(),
        };
        let (check, read) = block_on(check_object(key, &bytes, context));
        let read = read.filter(|_| !check.has_problems());
        let user_id = read
            .as_ref()
            .and_then(|read| read.metadata.user_id.as_deref());
        if tombstones
            .erasure_of(key, &bytes, user_id, read.is_some())
            .is_some()
        {
            erased += 1;
            bar.inc(1);
            continue;
        }
        match read {
            Some(read) => {
                let line = conversation_line(key, &read.metadata, &read.conversation_json);
                writer.write_all(&line).map_err(write_error)?;
                digest.add(&line);
            }
            None => {
                skipped += 1;
                let why = match check.findings.first() {
                    Some(finding) => format!("{}: {}", finding.problem.name(), finding.detail),
                    None => format!("encrypted, and {KEYS_VAR} is not set"),
                };
                bar.suspend(|| eprintln!("not exported: {key}: {why}"));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    writer
        .write_all(&user_end_line(&digest))
        .and_then(|()| writer.flush())
        .map_err(write_error)?;
    if let Some(warning) = tombstones.warning() {
        eprintln!("{warning}");
    }
    eprintln!(
        "exported {} conversations{}{}",
        digest.count(),
        if erased > 0 {
            format!(", left out {erased} that an erasure covers (erasures/ of the copy)")
        } else {
            String::new()
        },
        if skipped > 0 {
            format!(", {skipped} could not be exported (above)")
        } else {
            String::new()
        }
    );
    Ok(skipped > 0)
}
