//! The offline checker (`src/bin/supportbot-persistence/`) run as a user runs it, on fixtures
//! the library writes: a bucket copy of plaintext, encrypted and legacy archives, data keys
//! and a backup, dumped from the in-memory R2 to files, and a store export. Each damage is
//! done to one object, and the report must name exactly that object with its problem.

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::rc::Rc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use supportbot_persistence::codec::backup::{
    encode_backup, encode_gzip_pack, encode_manifest, BackupKind, BackupSessionInput,
    PackedManifest, GZIP_PACKED_FORMAT_VERSION,
};
use supportbot_persistence::codec::gzip;
use supportbot_persistence::keys::{
    backup_data_key, backup_manifest_object_key, legacy_archive_object_key, BackupId, SessionId,
};
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::legacy_suite::{write_legacy_backup, LegacyBackupEntry};
use supportbot_persistence::service::{RunBudget, ServiceOptions, MIN_ERASURE_CALLS};
use supportbot_persistence::store::memory::{block_on, MemoryStores};
use supportbot_persistence::store::{ObjectPutOptions, ObjectStore};

use common::{
    archive_now, service_over, store_export, user_export, Discard, Service, LEGACY_ARCHIVE, T0,
};

const KEYS_VAR: &str = "PERSISTENCE_ENCRYPTION_KEYS";
const HASH_SECRET_VAR: &str = "PERSISTENCE_HASH_SECRET";
/// Text every archived conversation holds, which no report may show unless asked.
const MARKER: &str = "parcel-7731 never arrived";

fn keys_json(key: [u8; 32]) -> String {
    json!([{"id": "k1", "key": STANDARD.encode(key)}]).to_string()
}

fn right_keys() -> String {
    keys_json([7; 32])
}

/// A folder under the system's temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("sbp-cli-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn file(&self, key: &str) -> PathBuf {
        self.0.join(key)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What the library stored: every R2 object, and a store export.
struct Fixture {
    objects: BTreeMap<String, Vec<u8>>,
    export: Vec<u8>,
    /// alice's export (`exportUserData`).
    person_export: Vec<u8>,
}

impl Fixture {
    /// Plaintext archives s1 (a user's) and s2, s3 encrypted, a legacy archive, and a backup
    /// of s1, s2 and s3 (one pack).
    fn new() -> Self {
        Fixture::build(false)
    }

    /// [`Fixture::new`] and backups of every earlier format: format 1 (one data bundle),
    /// format 2 (a gzip'd pack of documents) and the earlier implementation's.
    fn with_older_backups() -> Self {
        Fixture::build(true)
    }

    fn build(older_backups: bool) -> Self {
        let stores = MemoryStores::new(T0, 11);
        let plain = service(&stores, None);
        let sealed = service(&stores, Some(&right_keys()));
        archive_now(&stores, &plain, "s1", Some("alice"), MARKER);
        archive_now(&stores, &plain, "s2", None, MARKER);
        archive_now(&stores, &sealed, "s3", Some("bob"), MARKER);
        let legacy = SessionId::parse("sess-legacy-1").unwrap();
        let legacy_key = legacy_archive_object_key(&legacy, 1_733_011_200_000).unwrap();
        block_on(
            stores
                .r2
                .put(&legacy_key, LEGACY_ARCHIVE, ObjectPutOptions::default()),
        )
        .unwrap();
        let ids = ["s1", "s2", "s3"].map(str::to_owned);
        block_on(sealed.create_backup(&ids, None, false)).unwrap();
        let export = store_export(&sealed, RunBudget::default(), None);
        let person_export = user_export(&plain, "alice").unwrap().0;
        if older_backups {
            write_older_backups(&stores);
        }
        let objects = stores
            .snapshot()
            .r2
            .into_iter()
            .map(|(key, object)| (key, object.body))
            .collect();
        Fixture {
            objects,
            export,
            person_export,
        }
    }

    /// The keys whose kind (the part of the key `pick` matches) is wanted.
    fn key(&self, pick: impl Fn(&str) -> bool) -> String {
        let mut found = self.objects.keys().filter(|key| pick(key));
        let key = found.next().expect("no such key").clone();
        assert!(found.next().is_none(), "{key}: not the only one");
        key
    }

    /// The copy as `rclone copy` makes it: a file per object at its key's path.
    fn bucket(&self, name: &str) -> TempDir {
        let dir = TempDir::new(name);
        for (key, body) in &self.objects {
            let path = dir.file(key);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, body).unwrap();
        }
        dir
    }
}

/// Backups `backup_format_1`, `backup_format_2` and `backup_legacy` of s1 and s2, as the
/// library's earlier writers wrote them.
fn write_older_backups(stores: &MemoryStores) {
    let snapshot = stores.snapshot();
    let document = |sid: &str| {
        let key = snapshot
            .r2
            .keys()
            .find(|key| key.contains(&format!("archive_{sid}_")));
        let key = key.unwrap();
        gzip::decompress(key, &snapshot.r2[key].body, 1 << 20).unwrap()
    };
    let put = |key: &str, body: &[u8]| {
        block_on(stores.r2.put(key, body, ObjectPutOptions::default())).unwrap();
    };
    let sessions = [
        SessionId::parse("s1").unwrap(),
        SessionId::parse("s2").unwrap(),
    ];
    let documents = [document("s1"), document("s2")];
    let inputs: Vec<BackupSessionInput<'_>> = sessions
        .iter()
        .zip(&documents)
        .map(|(session_id, json)| BackupSessionInput {
            session_id,
            archive_json: json,
        })
        .collect();

    let format_1 = BackupId::parse("backup_format_1").unwrap();
    let encoded = encode_backup(&format_1, T0, &inputs, &[], 6).unwrap();
    put(&backup_data_key(&format_1), &encoded.data);
    put(
        &backup_manifest_object_key(&format_1),
        &encode_manifest(&encoded.manifest).unwrap(),
    );

    let format_2 = BackupId::parse("backup_format_2").unwrap();
    let (pack, record) = encode_gzip_pack(&format_2, T0, 0, &inputs, 6).unwrap();
    put(&record.key, &pack);
    let mut manifest = PackedManifest::new(
        format_2.clone(),
        T0,
        BackupKind::Manual,
        vec![record],
        vec![],
    );
    manifest.format_version = GZIP_PACKED_FORMAT_VERSION;
    put(
        &backup_manifest_object_key(&format_2),
        &manifest.encode().unwrap(),
    );

    let entries: Vec<LegacyBackupEntry<'_>> = ["s1", "s2"]
        .iter()
        .zip(&documents)
        .map(|(session_id, json)| LegacyBackupEntry {
            session_id,
            data: serde_json::from_slice(json).unwrap(),
        })
        .collect();
    block_on(write_legacy_backup(
        &stores.kv,
        &stores.r2,
        "backup_legacy",
        T0,
        &entries,
        &[],
        false,
    ))
    .unwrap();
}

fn service(stores: &MemoryStores, keys: Option<&str>) -> Service {
    let options = match keys {
        Some(keys) => {
            let keys: Value = serde_json::from_str(keys).unwrap();
            ServiceOptions::from_json(&json!({ "encryptionKeys": keys }).to_string()).unwrap()
        }
        None => ServiceOptions::default(),
    };
    service_over(
        stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        options,
    )
}

fn run(args: &[&str], keys: Option<&str>) -> Output {
    run_with_secret(args, keys, None)
}

/// [`run`] with `PERSISTENCE_HASH_SECRET` set to `secret`.
fn run_with_secret(args: &[&str], keys: Option<&str>, secret: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_supportbot-persistence"));
    command
        .args(args)
        .env_remove(KEYS_VAR)
        .env_remove(HASH_SECRET_VAR);
    if let Some(keys) = keys {
        command.env(KEYS_VAR, keys);
    }
    if let Some(secret) = secret {
        command.env(HASH_SECRET_VAR, secret);
    }
    command.output().unwrap()
}

/// `verify --json` of `source`: the exit code and the report.
fn verify(source: &Path, keys: Option<&str>) -> (i32, Value) {
    let output = run(&["verify", source.to_str().unwrap(), "--json"], keys);
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!("{err}: {}", String::from_utf8_lossy(&output.stderr));
    });
    (output.status.code().unwrap(), report)
}

/// Each object the report finds a problem with, and the names of its problems.
fn problems(report: &Value) -> BTreeMap<String, Vec<String>> {
    report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|object| object["status"] == "problem")
        .map(|object| {
            let names = object["problems"]
                .as_array()
                .unwrap()
                .iter()
                .map(|finding| finding["problem"].as_str().unwrap().to_owned())
                .collect();
            (object["key"].as_str().unwrap().to_owned(), names)
        })
        .collect()
}

fn status_of<'r>(report: &'r Value, key: &str) -> &'r Value {
    let objects = report["objects"].as_array().unwrap();
    let object = objects.iter().find(|object| object["key"] == key);
    &object.unwrap_or_else(|| panic!("{key} not reported"))["status"]
}

fn enc_key(key: &str) -> bool {
    key.ends_with(".json.gz.enc")
}

#[test]
fn a_clean_copy_passes_and_encrypted_archives_are_reported_not_decrypted() {
    let fixture = Fixture::new();
    let bucket = fixture.bucket("clean");
    let (code, report) = verify(bucket.path(), None);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["clean"], true);
    let totals = &report["totals"];
    assert_eq!(totals["objects"], json!(fixture.objects.len()));
    assert_eq!(totals["problems"], 0);
    assert_eq!(totals["notDecrypted"], 1, "{report:#}");
    assert_eq!(status_of(&report, &fixture.key(enc_key)), "not_decrypted");
    // The backup's pack vouches for the live copies it holds.
    let s1 = fixture.key(|key| key.contains("archive_s1_"));
    let s1_report = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|object| object["key"] == s1.as_str())
        .unwrap();
    assert_eq!(
        s1_report["facts"]["checksumRecordedBy"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s1_report["facts"]["messageCount"], 2);

    let text = run(&["verify", bucket.path().to_str().unwrap()], None);
    let stdout = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.status.code(), Some(0));
    assert!(stdout.contains("result: clean"), "{stdout}");
    assert!(stdout.contains("1 not decrypted"), "{stdout}");
    assert!(stdout.contains("this is not a problem"), "{stdout}");
    assert!(!stdout.contains(MARKER), "{stdout}");
    // Not a terminal: no progress bar on standard error.
    assert!(
        text.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
}

#[test]
fn with_the_keys_encrypted_archives_are_decrypted_and_checked() {
    let fixture = Fixture::new();
    let bucket = fixture.bucket("keys");
    let (code, report) = verify(bucket.path(), Some(&right_keys()));
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["totals"]["notDecrypted"], 0);
    let encrypted = fixture.key(enc_key);
    let object = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|object| object["key"] == encrypted.as_str())
        .unwrap();
    assert_eq!(object["status"], "ok");
    assert_eq!(object["facts"]["decrypted"], true);
    assert_eq!(object["facts"]["messageCount"], 2);

    // A KEK with the right id and other bytes unwraps nothing.
    let (code, report) = verify(bucket.path(), Some(&keys_json([8; 32])));
    assert_eq!(code, 1);
    let found = problems(&report);
    assert_eq!(found[&encrypted], ["decrypt_failed"], "{found:?}");
    let data_key = fixture.key(|key| key.starts_with("keys/"));
    assert_eq!(found[&data_key], ["decrypt_failed"], "{found:?}");
    assert_eq!(found.len(), 2, "{found:?}");

    // Keys that cannot be read are a usage error, and the message holds no key.
    let output = run(
        &["verify", bucket.path().to_str().unwrap()],
        Some("[{\"id\":\"k1\"}]"),
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains(KEYS_VAR));
}

#[test]
fn a_flipped_byte_in_one_archive_is_that_archive_reported() {
    let fixture = Fixture::new();
    let bucket = fixture.bucket("flipped");
    let s2 = fixture.key(|key| key.contains("archive_s2_"));
    let mut bytes = fixture.objects[&s2].clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(bucket.file(&s2), &bytes).unwrap();
    let (code, report) = verify(bucket.path(), None);
    assert_eq!(code, 1);
    assert_eq!(report["clean"], false);
    let found = problems(&report);
    assert_eq!(found.keys().collect::<Vec<_>>(), [&s2], "{found:?}");
    // gzip's CRC (or its inflate) fails, and so does the checksum the backup records.
    assert_eq!(found[&s2], ["corrupt_gzip", "checksum_mismatch"]);
    assert_eq!(report["totals"]["problems"], 1);

    // The gzip header's time is covered by no CRC: only the backup's SHA-256 sees it.
    let s1 = fixture.key(|key| key.contains("archive_s1_"));
    let mut bytes = fixture.objects[&s1].clone();
    bytes[4] ^= 0x01;
    fs::write(bucket.file(&s1), &bytes).unwrap();
    let found = problems(&verify(bucket.path(), None).1);
    assert_eq!(found[&s1], ["checksum_mismatch"], "{found:?}");

    // An encrypted archive's changed byte fails AES-GCM's tag once keys are given.
    let encrypted = fixture.key(enc_key);
    let mut bytes = fixture.objects[&encrypted].clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(bucket.file(&encrypted), &bytes).unwrap();
    let found = problems(&verify(bucket.path(), Some(&right_keys())).1);
    assert_eq!(found[&encrypted], ["decrypt_failed", "checksum_mismatch"]);
}

#[test]
fn a_damaged_or_missing_pack_is_its_backup_reported() {
    let fixture = Fixture::new();
    let pack = fixture.key(|key| key.ends_with("/pack-0.json"));
    let manifest = fixture.key(|key| key.ends_with("/manifest.json"));

    let bucket = fixture.bucket("truncated");
    let body = &fixture.objects[&pack];
    fs::write(bucket.file(&pack), &body[..body.len() - 10]).unwrap();
    let (code, report) = verify(bucket.path(), None);
    assert_eq!(code, 1);
    let found = problems(&report);
    assert_eq!(found.keys().collect::<Vec<_>>(), [&pack], "{found:?}");
    assert_eq!(found[&pack], ["checksum_mismatch"]);

    let bucket = fixture.bucket("deleted");
    fs::remove_file(bucket.file(&pack)).unwrap();
    let (code, report) = verify(bucket.path(), None);
    assert_eq!(code, 1);
    let found = problems(&report);
    assert_eq!(found.keys().collect::<Vec<_>>(), [&manifest], "{found:?}");
    assert_eq!(found[&manifest], ["missing"]);

    // A manifest that cannot be read is the problem; its packs are vouched for by nothing.
    let bucket = fixture.bucket("unreadable-manifest");
    fs::write(bucket.file(&manifest), b"{\"formatVersion\":3}").unwrap();
    let (code, report) = verify(bucket.path(), None);
    assert_eq!(code, 1);
    let found = problems(&report);
    assert_eq!(found.keys().collect::<Vec<_>>(), [&manifest], "{found:?}");
    assert_eq!(found[&manifest], ["corrupt_document"]);
    assert_eq!(status_of(&report, &pack), "uncommitted");

    // Without its manifest, a pack is an uncommitted backup: nothing vouches for it, and
    // nothing is wrong.
    let bucket = fixture.bucket("uncommitted");
    fs::remove_file(bucket.file(&manifest)).unwrap();
    let (code, report) = verify(bucket.path(), None);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(status_of(&report, &pack), "uncommitted");
    assert_eq!(report["totals"]["uncommitted"], 1);
}

#[test]
fn an_encrypted_archive_without_its_data_key_is_reported_with_or_without_keys() {
    let fixture = Fixture::new();
    let bucket = fixture.bucket("no-data-key");
    let data_key = fixture.key(|key| key.starts_with("keys/"));
    fs::remove_file(bucket.file(&data_key)).unwrap();
    let encrypted = fixture.key(enc_key);
    for keys in [None, Some(right_keys())] {
        let (code, report) = verify(bucket.path(), keys.as_deref());
        assert_eq!(code, 1);
        let found = problems(&report);
        assert_eq!(found.keys().collect::<Vec<_>>(), [&encrypted], "{found:?}");
        assert_eq!(found[&encrypted], ["key_missing"]);
    }
}

#[test]
fn a_store_export_is_verified_line_by_line_up_to_its_end_line() {
    let fixture = Fixture::new();
    let dir = TempDir::new("export");
    let clean = dir.file("store.ndjson");
    fs::write(&clean, &fixture.export).unwrap();
    let (code, report) = verify(&clean, None);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["totals"]["notDecrypted"], 1);
    let (code, report) = verify(&clean, Some(&right_keys()));
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["totals"]["notDecrypted"], 0);
    let lines = fixture
        .export
        .split_inclusive(|byte| *byte == b'\n')
        .count();
    assert_eq!(report["totals"]["objects"], json!(lines));
    // Its data key line and its encrypted archive do not open under another KEK.
    let (code, report) = verify(&clean, Some(&keys_json([8; 32])));
    assert_eq!(code, 1);
    let found = problems(&report);
    let data_key = fixture.key(|key| key.starts_with("keys/"));
    assert_eq!(found[&data_key], ["decrypt_failed"], "{found:?}");
    assert_eq!(
        found[&fixture.key(enc_key)],
        ["decrypt_failed"],
        "{found:?}"
    );
    assert_eq!(found.len(), 2, "{found:?}");

    // One archive line's bytes replaced (valid JSON and base64, another archive's bytes).
    let text = String::from_utf8(fixture.export.clone()).unwrap();
    let mut lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let s1 = lines
        .iter()
        .position(|line| line["type"] == "archive" && line["sessionId"] == "s1")
        .unwrap();
    let s2_bytes = lines.iter().find(|line| line["sessionId"] == "s2").unwrap()["archive"].clone();
    lines[s1]["archive"] = s2_bytes;
    let damaged: String = lines.iter().map(|line| format!("{line}\n")).collect();
    let damaged_path = dir.file("damaged.ndjson");
    fs::write(&damaged_path, damaged).unwrap();
    let (code, report) = verify(&damaged_path, None);
    assert_eq!(code, 1);
    let found = problems(&report);
    let s1_key = lines[s1]["key"].as_str().unwrap().to_owned();
    // The line, and the end line, which no longer hashes the bytes before it.
    assert_eq!(found[&s1_key], ["checksum_mismatch"], "{found:?}");
    assert_eq!(
        found[&format!("line {}", lines.len())],
        ["end_line_mismatch"]
    );
    assert_eq!(found.len(), 2, "{found:?}");

    // Cut short: no end line.
    let cut = dir.file("cut.ndjson");
    let without_end = text
        .lines()
        .take(lines.len() - 1)
        .map(|line| format!("{line}\n"));
    fs::write(&cut, without_end.collect::<String>()).unwrap();
    let (code, report) = verify(&cut, None);
    assert_eq!(code, 1);
    assert_eq!(problems(&report)["end of stream"], ["no_end_line"]);
}

#[test]
fn inspect_says_what_an_object_is_and_shows_messages_only_when_asked() {
    let fixture = Fixture::new();
    let bucket = fixture.bucket("inspect");
    let s1 = fixture.key(|key| key.contains("archive_s1_"));
    let path = bucket.file(&s1);
    let output = run(&["inspect", path.to_str().unwrap()], None);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains(&format!("key: {s1}")), "{stdout}");
    assert!(stdout.contains("kind: archive"), "{stdout}");
    assert!(stdout.contains("messageCount: 2"), "{stdout}");
    assert!(!stdout.contains(MARKER), "{stdout}");
    let shown = run(
        &["inspect", path.to_str().unwrap(), "--show-messages"],
        None,
    );
    assert!(String::from_utf8(shown.stdout).unwrap().contains(MARKER));

    // Encrypted: its header without keys; decrypted (its data key read beside it) with them.
    let encrypted = bucket.file(&fixture.key(enc_key));
    let args = ["inspect", encrypted.to_str().unwrap(), "--json"];
    let header: Value = serde_json::from_slice(&run(&args, None).stdout).unwrap();
    assert_eq!(header["status"], "not_decrypted");
    assert!(header["facts"]["keyReference"]
        .as_str()
        .unwrap()
        .starts_with("users/"));
    let opened: Value = serde_json::from_slice(&run(&args, Some(&right_keys())).stdout).unwrap();
    assert_eq!(opened["status"], "ok", "{opened:#}");
    assert_eq!(opened["facts"]["messageCount"], 2);

    // A file outside a copy, given its key.
    let elsewhere = TempDir::new("inspect-elsewhere");
    let manifest_key = fixture.key(|key| key.ends_with("/manifest.json"));
    fs::write(elsewhere.file("m.json"), &fixture.objects[&manifest_key]).unwrap();
    let m = elsewhere.file("m.json");
    let output = run(
        &[
            "inspect",
            m.to_str().unwrap(),
            "--key",
            &manifest_key,
            "--json",
        ],
        None,
    );
    let manifest: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(manifest["kind"], "backup_manifest");
    assert_eq!(manifest["facts"]["sessions"], 3);
    // Its pack is not beside it: the check says so.
    assert_eq!(manifest["problems"][0]["problem"], "missing");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn export_writes_every_conversation_it_can_read() {
    let fixture = Fixture::new();
    let bucket = fixture.bucket("export-out");
    let out_dir = TempDir::new("export-file");
    let out = out_dir.file("conversations.ndjson");
    let out_arg = out.to_str().unwrap();
    let without_keys = run(
        &["export", bucket.path().to_str().unwrap(), "-o", out_arg],
        None,
    );
    assert_eq!(without_keys.status.code(), Some(1));
    let stderr = String::from_utf8(without_keys.stderr).unwrap();
    assert!(stderr.contains(&fixture.key(enc_key)), "{stderr}");
    let with_keys = run(
        &["export", bucket.path().to_str().unwrap(), "-o", out_arg],
        Some(&right_keys()),
    );
    assert_eq!(with_keys.status.code(), Some(0));
    let stream = fs::read(&out).unwrap();
    let end = common::verified_end_line(&stream);
    // s1, s2, s3 and the legacy archive, newest first.
    assert_eq!(end["count"], 4);
    let sessions: Vec<Value> = String::from_utf8(stream)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["sessionId"].clone())
        .collect();
    assert_eq!(
        sessions,
        [
            json!("s3"),
            json!("s2"),
            json!("s1"),
            json!("sess-legacy-1"),
            Value::Null
        ]
    );
}

#[test]
fn usage_and_io_errors_exit_2() {
    for args in [
        &[][..],
        &["verify"],
        &["verify", "/nonexistent/copy"],
        &["frobnicate", "x"],
    ] {
        let output = run(args, None);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
    let fixture = Fixture::new();
    let bucket = fixture.bucket("subfolder");
    // One object is inspected, not verified as if it were an export.
    let archive = bucket.file(&fixture.key(|key| key.contains("archive_s1_")));
    let output = run(&["verify", archive.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("inspect it"));
    // A folder without any of the library's keys: an empty copy, or one of its subfolders.
    for folder in [bucket.file("conversations"), bucket.file("nothing")] {
        fs::create_dir_all(&folder).unwrap();
        let output = run(&["verify", folder.to_str().unwrap()], None);
        assert_eq!(output.status.code(), Some(2), "{}", folder.display());
        assert!(String::from_utf8_lossy(&output.stderr).contains("root of the copy"));
    }
}

#[test]
fn backups_of_every_earlier_format_are_verified_too() {
    let fixture = Fixture::with_older_backups();
    let bucket = fixture.bucket("older-backups");
    let (code, report) = verify(bucket.path(), None);
    assert_eq!(code, 0, "{report:#}");
    let data_objects = [
        "backups/backup_format_1/data.json.gz",
        "backups/backup_format_2/pack-0.json.gz",
        "backups/backup_legacy/data.json",
    ];
    for key in data_objects {
        assert_eq!(status_of(&report, key), "ok", "{key}");
        let manifest = key.rsplit_once('/').unwrap().0.to_owned() + "/manifest.json";
        assert_eq!(status_of(&report, &manifest), "ok", "{manifest}");
    }

    // One byte changed in each: the object that holds it is reported, with its checksum.
    for key in data_objects {
        let mut body = fixture.objects[key].clone();
        let middle = body.len() / 2;
        body[middle] ^= 0x20;
        fs::write(bucket.file(key), body).unwrap();
    }
    let (code, report) = verify(bucket.path(), None);
    assert_eq!(code, 1);
    let found = problems(&report);
    assert_eq!(found.keys().collect::<Vec<_>>(), data_objects, "{found:?}");
    for key in data_objects {
        assert_eq!(found[key], ["checksum_mismatch"], "{key}");
    }
}

#[test]
fn a_persons_export_is_verified_too() {
    let fixture = Fixture::new();
    let dir = TempDir::new("person");
    let clean = dir.file("alice.ndjson");
    fs::write(&clean, &fixture.person_export).unwrap();
    let (code, report) = verify(&clean, None);
    assert_eq!(code, 0, "{report:#}");
    let s1 = fixture.key(|key| key.contains("archive_s1_"));
    assert_eq!(status_of(&report, &s1), "ok");
    assert_eq!(report["totals"]["objects"], 2);

    // A message count that is not the conversation's.
    let text = String::from_utf8(fixture.person_export.clone()).unwrap();
    let mut lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    lines[0]["metadata"]["messageCount"] = json!(5);
    let damaged = dir.file("damaged.ndjson");
    fs::write(
        &damaged,
        lines
            .iter()
            .map(|line| format!("{line}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let (code, report) = verify(&damaged, None);
    assert_eq!(code, 1);
    let found = problems(&report);
    assert_eq!(found[&s1], ["corrupt_document"], "{found:?}");
    assert_eq!(found["line 2"], ["end_line_mismatch"], "{found:?}");
    assert_eq!(found.len(), 2, "{found:?}");
}

/// A copy taken while erasures ran: every archive still there (the archives listed before the
/// erasures, as a copy of `conversations/` made first holds them), the data keys and
/// tombstones as the erasures left them (each user's data key destroyed, tombstones written).
fn copy_mid_erasure(stores: &MemoryStores, erase: impl FnOnce()) -> BTreeMap<String, Vec<u8>> {
    let before = stores.snapshot().r2;
    erase();
    let mut objects: BTreeMap<String, Vec<u8>> = stores
        .snapshot()
        .r2
        .into_iter()
        .map(|(key, object)| (key, object.body))
        .collect();
    for (key, object) in before {
        if key.starts_with("conversations/") {
            objects.entry(key).or_insert(object.body);
        }
    }
    objects
}

fn write_copy(objects: &BTreeMap<String, Vec<u8>>, name: &str) -> TempDir {
    let dir = TempDir::new(name);
    for (key, body) in objects {
        let path = dir.file(key);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
    }
    dir
}

/// `export` of `dir` to a file: the exit code, the sessions exported (newest first) and
/// standard error.
fn export_sessions(
    dir: &Path,
    keys: Option<&str>,
    secret: Option<&str>,
) -> (i32, Vec<String>, String) {
    let out_dir = TempDir::new(&format!(
        "export-of-{}",
        dir.file_name().unwrap().to_str().unwrap()
    ));
    let out = out_dir.file("out.ndjson");
    let output = run_with_secret(
        &["export", dir.to_str().unwrap(), "-o", out.to_str().unwrap()],
        keys,
        secret,
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    let stream = fs::read(&out).unwrap_or_default();
    let sessions = String::from_utf8(stream)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            line["sessionId"].as_str().map(str::to_owned)
        })
        .collect();
    (output.status.code().unwrap(), sessions, stderr)
}

#[test]
fn archives_an_erasure_covers_are_left_out_of_export_and_verified_erased() {
    let stores = MemoryStores::new(T0, 11);
    let plain = service(&stores, None);
    let sealed = service(&stores, Some(&right_keys()));
    archive_now(&stores, &plain, "s1", Some("alice"), MARKER);
    archive_now(&stores, &plain, "s2", None, MARKER);
    archive_now(&stores, &sealed, "s3", Some("bob"), MARKER);
    let objects = copy_mid_erasure(&stores, || {
        for user in ["alice", "bob"] {
            block_on(sealed.erase_user_data(user, RunBudget::default())).unwrap();
        }
        // Archived after her erasure: alice's again.
        archive_now(&stores, &plain, "s4", Some("alice"), MARKER);
    });
    assert!(objects.keys().any(|key| key.contains("archive_s1_")));
    let bob_archive = objects.keys().find(|key| enc_key(key)).unwrap().clone();
    let bob_data_key = objects.keys().filter(|key| key.starts_with("keys/users/"));
    assert_eq!(
        bob_data_key.count(),
        0,
        "the erasure destroyed bob's data key"
    );
    let copy = write_copy(&objects, "mid-erasure");

    // s1 (covered) and s3 (under the destroyed key) are left out, without keys too.
    for keys in [None, Some(right_keys())] {
        let (code, sessions, stderr) = export_sessions(copy.path(), keys.as_deref(), None);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(sessions, ["s4", "s2"], "{stderr}");
        assert!(
            stderr.contains("exported 2 conversations, left out 2"),
            "{stderr}"
        );
        assert!(!stderr.contains("warning"), "{stderr}");
    }

    // verify: erased, not key_missing.
    let (code, report) = verify(copy.path(), None);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["totals"]["erased"], 2, "{report:#}");
    assert_eq!(status_of(&report, &bob_archive), "erased");
    let s1 = objects
        .keys()
        .find(|key| key.contains("archive_s1_"))
        .unwrap();
    assert_eq!(status_of(&report, s1), "erased");
    let s4 = objects
        .keys()
        .find(|key| key.contains("archive_s4_"))
        .unwrap();
    assert_eq!(status_of(&report, s4), "ok");
    let text = run(&["verify", copy.path().to_str().unwrap()], None);
    let stdout = String::from_utf8(text.stdout).unwrap();
    assert!(stdout.contains(", 2 erased"), "{stdout}");
    assert!(stdout.contains("result: clean"), "{stdout}");

    // Without the tombstones, the same copy exports s1 and reports s3's data key missing.
    let mut without = objects.clone();
    without.retain(|key, _| !key.starts_with("erasures/"));
    let bare = write_copy(&without, "no-tombstones");
    let (code, sessions, _) = export_sessions(bare.path(), None, None);
    assert_eq!(
        (code, sessions),
        (1, vec!["s4".into(), "s2".into(), "s1".into()])
    );
    let (_, report) = verify(bare.path(), None);
    assert_eq!(problems(&report)[&bob_archive], ["key_missing"]);
}

#[test]
fn a_store_with_a_hash_secret_needs_it_to_recognise_erased_users() {
    const SECRET: &str = "a-hash-secret-of-32-bytes-length";
    let stores = MemoryStores::new(T0, 11);
    let options = ServiceOptions::from_json(&json!({ "hashSecret": SECRET }).to_string()).unwrap();
    let keyed = service_over(
        &stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        options,
    );
    archive_now(&stores, &keyed, "s1", Some("alice"), MARKER);
    archive_now(&stores, &keyed, "s2", Some("carol"), MARKER);
    let objects = copy_mid_erasure(&stores, || {
        let budget = RunBudget {
            max_storage_calls: Some(MIN_ERASURE_CALLS),
            deadline_ms: None,
        };
        let receipt = block_on(keyed.erase_user_data("alice", budget)).unwrap();
        assert!(!receipt.status.complete && receipt.erased_at.is_some());
    });
    let copy = write_copy(&objects, "keyed");

    // Without the secret, alice's user id hashes to another key: a warning, s1 exported.
    let (code, sessions, stderr) = export_sessions(copy.path(), None, None);
    assert_eq!(
        (code, sessions),
        (0, vec!["s2".into(), "s1".into()]),
        "{stderr}"
    );
    assert!(stderr.contains("warning"), "{stderr}");
    assert!(stderr.contains(HASH_SECRET_VAR), "{stderr}");

    // With it, s1 is left out, and nothing shows the secret.
    let (code, sessions, stderr) = export_sessions(copy.path(), None, Some(SECRET));
    assert_eq!((code, sessions), (0, vec!["s2".to_owned()]), "{stderr}");
    assert!(stderr.contains("left out 1"), "{stderr}");
    assert!(
        !stderr.contains("warning") && !stderr.contains(SECRET),
        "{stderr}"
    );
    let verified = run_with_secret(
        &["verify", copy.path().to_str().unwrap(), "--json"],
        None,
        Some(SECRET),
    );
    let report: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(report["totals"]["erased"], 1, "{report:#}");
    assert!(!String::from_utf8_lossy(&verified.stdout).contains(SECRET));

    // A secret too short is a usage error that does not show it.
    let (code, _, stderr) = export_sessions(copy.path(), None, Some("short"));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(HASH_SECRET_VAR) && !stderr.contains("short\""),
        "{stderr}"
    );
}
