//! createBackup and restoreFromBackup over the in-memory stores: round trip, idempotent
//! restore, missing sessions, missing or damaged backups (nothing written), legacy backups.

#[allow(dead_code)]
mod common;

use std::rc::Rc;

use serde_json::{json, Value};
use supportbot_persistence::codec::backup::{encode_backup, encode_manifest, BackupSessionInput};
use supportbot_persistence::codec::gzip;
use supportbot_persistence::hash::sha256_hex;
use supportbot_persistence::keys::{
    archive_index_key, archive_meta_key, archive_object_key, backup_data_key,
    backup_manifest_object_key, backup_pack_key, legacy_archive_object_key, legacy_backup_data_key,
    BackupId, SessionId,
};
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::{PackBounds, ServiceOptions};
use supportbot_persistence::store::memory::{block_on, MemoryStores};
use supportbot_persistence::store::{KvPutOptions, KvStore, ObjectPutOptions, ObjectStore};

use common::{
    conversation, lose_all_archives, service_over, session_at, Discard, Service, DAY, T0,
};

struct Harness {
    stores: MemoryStores,
    service: Service,
}

impl Harness {
    fn new() -> Self {
        let stores = MemoryStores::new(T0, 7);
        let service = Self::service_over(&stores, ServiceOptions::default());
        Harness { stores, service }
    }

    fn service_over(stores: &MemoryStores, options: ServiceOptions) -> Service {
        service_over(
            stores,
            Rc::new(Discard),
            DataRetentionPolicy::default(),
            options,
        )
    }

    /// Archives a two-message conversation of `sid` for `user`; returns (archive key,
    /// expected retrieved conversation).
    fn archive(&self, sid: &str, user: Option<&str>) -> (String, Value) {
        let memory = json!({
            "sessionId": sid,
            "messages": [
                {"id": "m1", "sessionId": sid, "content": "My invoice is wrong", "role": "user",
                 "timestamp": T0 - 60_000},
                {"id": "m2", "sessionId": sid, "content": "Fixed.", "role": "assistant",
                 "timestamp": T0 - 30_000}
            ],
            "summary": format!("about {sid}"),
            "context": {},
        });
        let session = session_at(sid, user, T0 - 60_000, T0 - 30_000);
        let key = block_on(
            self.service
                .archive_conversation(&memory.to_string(), &session.to_string()),
        )
        .unwrap();
        let expected = conversation(&memory, &session);
        // Successive archives get distinct times and KV writes stay under 1/s per key.
        self.stores.clock.advance_ms(1_500);
        (key, expected)
    }

    fn retrieve(&self, sid: &str) -> Option<Value> {
        block_on(self.service.retrieve_archived_conversation(sid))
            .unwrap()
            .map(|text| serde_json::from_str(&text).unwrap())
    }

    fn backup(&self, sids: &[&str]) -> supportbot_persistence::Result<String> {
        let ids: Vec<String> = sids.iter().map(|s| (*s).to_owned()).collect();
        block_on(self.service.create_backup(&ids, None, false))
    }

    fn restore(&self, id: &str) -> supportbot_persistence::Result<Vec<String>> {
        block_on(self.service.restore_from_backup(id, None))
    }

    /// Asserts that restoring `id` fails with `code` naming `what`, and writes nothing.
    fn assert_restore_refused(&self, id: &str, code: &str, what: &str) {
        let before = self.stores.snapshot();
        let err = self.restore(id).unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(err.to_string().contains(what), "{err}");
        assert_eq!(self.stores.snapshot(), before);
    }

    /// Deletes every archive object and every archive KV entry.
    fn lose_all_archives(&self) {
        lose_all_archives(&self.stores);
    }
}

fn manifest(h: &Harness, id: &str) -> Value {
    let key = backup_manifest_object_key(&BackupId::parse(id).unwrap());
    serde_json::from_slice(&h.stores.snapshot().r2[&key].body).unwrap()
}

#[test]
fn backup_then_restore_brings_lost_archives_back() {
    let h = Harness::new();
    let (key1, conversation1) = h.archive("s1", Some("user-1"));
    let (key2, conversation2) = h.archive("s2", None);
    let id = h.backup(&["s1", "s2", "s1", "never-archived"]).unwrap();
    assert!(id.starts_with("backup_"), "{id}");

    let manifest = manifest(&h, &id);
    assert_eq!(manifest["sessionIds"], json!(["s1", "s2"]));
    assert_eq!(manifest["missingSessionIds"], json!(["never-archived"]));
    let snapshot = h.stores.snapshot();
    let manifest_object = &snapshot.r2[&format!("backups/{id}/manifest.json")];
    assert_eq!(
        manifest_object.meta.custom_metadata["createdAt"],
        manifest["createdAt"].to_string()
    );
    // One pack; the KV copy's list metadata describes the backup for listings and retention.
    assert_eq!(manifest["formatVersion"], json!(3));
    assert_eq!(manifest["kind"], json!("manual"));
    assert_eq!(manifest["packs"].as_array().unwrap().len(), 1);
    let copy = &snapshot.kv[&format!("backup_manifest:{id}")];
    assert_eq!(
        copy.metadata,
        Some(
            json!({"createdAt": manifest["createdAt"], "kind": "manual", "sessions": 2,
                    "storedSize": manifest["packs"][0]["storedSize"]})
        )
    );

    h.lose_all_archives();
    assert_eq!(h.retrieve("s1"), None);
    h.stores.clock.advance_ms(5_000);
    assert_eq!(h.restore(&id).unwrap(), ["s1", "s2"]);
    assert_eq!(h.retrieve("s1"), Some(conversation1));
    assert_eq!(h.retrieve("s2"), Some(conversation2));
    // Restored under the original keys, listed again.
    let snapshot = h.stores.snapshot();
    assert!(snapshot.r2.contains_key(&key1) && snapshot.r2.contains_key(&key2));
    let index = archive_index_key(T0, &SessionId::parse("s1").unwrap()).unwrap();
    assert_eq!(snapshot.kv[&index].metadata.as_ref().unwrap()["key"], key1);
    assert_eq!(common::kv_keys_under(&h.stores, "user_archives:"), 1);
}

#[test]
fn restoring_twice_or_over_intact_archives_writes_nothing_new() {
    let h = Harness::new();
    h.archive("s1", Some("user-1"));
    h.archive("s2", None);
    let id = h.backup(&["s1", "s2"]).unwrap();
    let untouched = h.stores.snapshot();
    // Over the archives that are still there: nothing changes at all.
    assert_eq!(h.restore(&id).unwrap(), ["s1", "s2"]);
    assert_eq!(h.stores.snapshot(), untouched);

    h.lose_all_archives();
    h.stores.clock.advance_ms(5_000);
    h.restore(&id).unwrap();
    let first = h.stores.snapshot();
    assert_eq!(
        first.r2.keys().collect::<Vec<_>>(),
        untouched.r2.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        first.kv.keys().collect::<Vec<_>>(),
        untouched.kv.keys().collect::<Vec<_>>()
    );
    h.stores.clock.advance_ms(5_000);
    assert_eq!(h.restore(&id).unwrap(), ["s1", "s2"]);
    assert_eq!(h.stores.snapshot(), first);
}

#[test]
fn restore_keeps_archive_meta_on_a_newer_archive() {
    let h = Harness::new();
    h.archive("s1", None);
    let id = h.backup(&["s1"]).unwrap();
    let (newer_key, newer) = h.archive("s1", None);
    let old_key = archive_object_key(&SessionId::parse("s1").unwrap(), T0).unwrap();
    block_on(h.stores.r2.delete(std::slice::from_ref(&old_key))).unwrap();
    h.restore(&id).unwrap();
    let snapshot = h.stores.snapshot();
    assert!(snapshot.r2.contains_key(&old_key));
    let record: Value = serde_json::from_slice(
        &snapshot.kv[&archive_meta_key(&SessionId::parse("s1").unwrap())].value,
    )
    .unwrap();
    assert_eq!(record["key"], newer_key);
    assert_eq!(h.retrieve("s1"), Some(newer));
}

#[test]
fn bad_session_lists_are_refused_before_anything_is_read() {
    let h = Harness::new();
    let err = h.backup(&[]).unwrap_err();
    assert_eq!(err.code(), "INVALID_INPUT");
    assert!(err.to_string().contains("sessionIds"), "{err}");
    let err = h.backup(&["ok", "../etc"]).unwrap_err();
    assert_eq!(err.code(), "INVALID_ID");
    assert!(err.to_string().contains("../etc"), "{err}");
    assert_eq!(h.stores.faults.calls(), 0);
}

#[test]
fn a_backup_of_sessions_without_archives_is_made_empty_and_restores_nothing() {
    // The earlier implementation did so, and a nightly job backing up whatever ids it has
    // relies on getting an id back.
    let h = Harness::new();
    let id = h.backup(&["a", "b", "a"]).unwrap();
    let manifest = manifest(&h, &id);
    assert_eq!(manifest["sessionIds"], json!([]));
    assert_eq!(manifest["missingSessionIds"], json!(["a", "b"]));
    assert_eq!(manifest["totalSize"], json!(0));
    let snapshot = h.stores.snapshot();
    // No archive, no pack: the manifest alone is the (empty) backup.
    assert_eq!(manifest["packs"], json!([]));
    let prefix = format!("backups/{id}/");
    let stored: Vec<&String> = snapshot
        .r2
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .collect();
    assert_eq!(stored, [&format!("{prefix}manifest.json")]);
    assert!(snapshot.kv.contains_key(&format!("backup_manifest:{id}")));
    assert!(!snapshot.kv.keys().any(|key| key.starts_with("archive_")));
    let objects = snapshot.r2.len();
    assert_eq!(h.restore(&id).unwrap(), Vec::<String>::new());
    assert_eq!(h.stores.snapshot().r2.len(), objects, "nothing restored");
    // For a user, a session without an archive is still refused, and nothing is written.
    let err = block_on(
        h.service
            .create_backup(&["a".to_owned()], Some("alice"), false),
    )
    .unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");
    assert_eq!(h.stores.snapshot().r2.len(), objects);
}

#[test]
fn a_backup_for_a_user_takes_only_that_users_archives_and_all_of_them() {
    let h = Harness::new();
    h.archive("mine-1", Some("alice"));
    h.archive("mine-2", Some("alice"));
    h.archive("theirs", Some("bob"));
    h.archive("nobodys", None);
    let owned = |sids: &[&str], owner: &str| {
        let ids: Vec<String> = sids.iter().map(|s| (*s).to_owned()).collect();
        block_on(h.service.create_backup(&ids, Some(owner), false))
    };
    let objects = || h.stores.snapshot().r2.len();
    let before = objects();
    // Another user's archive, one without a user, and a session without an archive: each is
    // NOT_FOUND naming the session (the other user's is not revealed), and nothing is written.
    for refused in ["theirs", "nobodys", "never-archived"] {
        let err = owned(&["mine-1", refused], "alice").unwrap_err();
        assert_eq!(err.code(), "NOT_FOUND", "{refused}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("session {refused} owned by this user")),
            "{err}"
        );
        assert!(!err.to_string().contains("bob"), "{err}");
        assert_eq!(objects(), before);
    }
    let err = owned(&["mine-1"], "bad\nuser").unwrap_err();
    assert_eq!(err.code(), "INVALID_ID");

    let id = owned(&["mine-1", "mine-2"], "alice").unwrap();
    let manifest = manifest(&h, &id);
    assert_eq!(manifest["userId"], "alice");
    assert_eq!(manifest["sessionIds"], json!(["mine-1", "mine-2"]));
    assert_eq!(manifest["missingSessionIds"], json!([]));
    let bobs = owned(&["theirs"], "bob").unwrap();

    // Restoring for a user: only a backup made for that user. Another user's, one made for
    // nobody and one that does not exist all get the same answer, and nothing is written.
    let restore_for =
        |id: &str, owner: &str| block_on(h.service.restore_from_backup(id, Some(owner)));
    let anyones = h.backup(&["mine-1"]).unwrap();
    h.lose_all_archives();
    let before = h.stores.snapshot();
    for refused in [bobs.as_str(), anyones.as_str(), "backup_1_ff"] {
        let err = restore_for(refused, "alice").unwrap_err();
        assert_eq!(err.code(), "NOT_FOUND", "{refused}: {err}");
        assert!(
            err.to_string()
                .ends_with(&format!("backup {refused} of this user")),
            "{err}"
        );
    }
    assert_eq!(h.stores.snapshot(), before);
    assert_eq!(restore_for(&id, "alice").unwrap(), ["mine-1", "mine-2"]);
    assert!(h.retrieve("mine-2").is_some());
    // Without a user, any backup restores, as before.
    assert_eq!(h.restore(&bobs).unwrap(), ["theirs"]);

    // A manifest that cannot be read is the same NOT_FOUND to a user (it names no owner),
    // and CORRUPT_DATA without one.
    let manifest_key = backup_manifest_object_key(&BackupId::parse(&bobs).unwrap());
    h.stores.clock.advance_ms(2_000);
    block_on(
        h.stores
            .r2
            .put(&manifest_key, b"{", ObjectPutOptions::default()),
    )
    .unwrap();
    assert_eq!(restore_for(&bobs, "bob").unwrap_err().code(), "NOT_FOUND");
    assert_eq!(h.restore(&bobs).unwrap_err().code(), "CORRUPT_DATA");
}

#[test]
fn a_legacy_archive_is_a_users_only_when_every_user_id_it_names_is_theirs() {
    let h = Harness::new();
    // The earlier implementation wrote metadata and session state without checking that
    // they agree, and either may lack a userId.
    let legacy = |sid: &str, metadata_user: Option<&str>, state_user: Option<&str>| {
        let mut metadata = json!({"sessionId": sid, "archivedAt": T0 - DAY, "messageCount": 1,
                                  "summary": "", "topics": [], "duration": 0});
        if let Some(user) = metadata_user {
            metadata["userId"] = json!(user);
        }
        let mut state = json!({"id": sid, "status": "ended", "createdAt": T0 - DAY,
                               "lastActivity": T0 - DAY});
        if let Some(user) = state_user {
            state["userId"] = json!(user);
        }
        let document = json!({"metadata": metadata, "conversation": {"sessionId": sid,
            "messages": [{"id": "m1", "sessionId": sid, "content": "hi", "role": "user",
                          "timestamp": T0 - DAY}], "summary": "", "context": {},
            "sessionState": state}});
        let sid = SessionId::parse(sid).unwrap();
        let key = legacy_archive_object_key(&sid, T0 - DAY).unwrap();
        let body = document.to_string();
        block_on(
            h.stores
                .r2
                .put(&key, body.as_bytes(), ObjectPutOptions::default()),
        )
        .unwrap();
        let record = metadata.to_string();
        block_on(h.stores.kv.put(
            &archive_meta_key(&sid),
            record.as_bytes(),
            KvPutOptions::default(),
        ))
        .unwrap();
    };
    legacy("state-only", None, Some("u-1"));
    legacy("disagreeing", Some("u-1"), Some("u-2"));
    legacy("anonymous", None, None);
    let owned = |sid: &str, owner: &str| {
        block_on(
            h.service
                .create_backup(&[sid.to_owned()], Some(owner), false),
        )
        .map(|_| ())
    };
    assert_eq!(owned("state-only", "u-1"), Ok(()));
    for (sid, owner) in [
        ("disagreeing", "u-1"),
        ("disagreeing", "u-2"),
        ("anonymous", "u-1"),
    ] {
        assert_eq!(
            owned(sid, owner).unwrap_err().code(),
            "NOT_FOUND",
            "{sid} {owner}"
        );
    }
    assert!(h.backup(&["disagreeing", "anonymous"]).is_ok());
}

#[test]
fn unknown_or_incomplete_backups_are_not_found() {
    let h = Harness::new();
    let err = h.restore("backup_nope").unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");
    assert!(
        err.to_string()
            .contains("backups/backup_nope/manifest.json"),
        "{err}"
    );
    assert_eq!(h.restore("a/b").unwrap_err().code(), "INVALID_ID");

    h.archive("s1", None);
    let id = h.backup(&["s1"]).unwrap();
    let pack_key = backup_pack_key(&BackupId::parse(&id).unwrap(), 0);
    block_on(h.stores.r2.delete(std::slice::from_ref(&pack_key))).unwrap();
    h.lose_all_archives();
    h.assert_restore_refused(&id, "NOT_FOUND", &pack_key);
}

#[test]
fn a_flipped_byte_in_a_pack_fails_verification_and_writes_nothing() {
    let h = Harness::new();
    h.archive("s1", None);
    h.archive("s2", None);
    let id = h.backup(&["s1", "s2"]).unwrap();
    h.lose_all_archives();
    let pack_key = backup_pack_key(&BackupId::parse(&id).unwrap(), 0);
    assert!(h.stores.r2.corrupt(&pack_key, 40));
    h.assert_restore_refused(&id, "CHECKSUM_MISMATCH", &pack_key);
}

#[test]
fn a_damaged_archive_is_never_backed_up() {
    let h = Harness::new();
    let (key, _) = h.archive("s1", None);
    assert!(h.stores.r2.corrupt(&key, 20));
    let err = h.backup(&["s1"]).unwrap_err();
    assert_eq!(err.code(), "CHECKSUM_MISMATCH");
    assert!(!h
        .stores
        .snapshot()
        .r2
        .keys()
        .any(|k| k.starts_with("backups/")));
}

#[test]
fn an_archive_restored_at_another_compression_level_is_retrievable() {
    let h = Harness::new();
    let (key, expected) = h.archive("s1", Some("alice"));
    let id = h.backup(&["s1"]).unwrap();
    // The object is lost but its KV record survives: restore re-compresses the document at
    // level 1, so the bytes under the key hash differently from the record.
    block_on(h.stores.r2.delete(std::slice::from_ref(&key))).unwrap();
    h.stores.clock.advance_ms(1_500);
    let level_one = Harness::service_over(
        &h.stores,
        ServiceOptions {
            compression_level: 1,
            ..ServiceOptions::default()
        },
    );
    assert_eq!(
        block_on(level_one.restore_from_backup(&id, None)).unwrap(),
        ["s1"]
    );
    assert_eq!(h.retrieve("s1"), Some(expected));
}

#[test]
fn restore_repairs_a_damaged_archive_in_place() {
    let h = Harness::new();
    let (key, conversation) = h.archive("s1", None);
    let id = h.backup(&["s1"]).unwrap();
    assert!(h.stores.r2.corrupt(&key, 20));
    assert_eq!(
        block_on(h.service.retrieve_archived_conversation("s1"))
            .unwrap_err()
            .code(),
        "CHECKSUM_MISMATCH"
    );
    h.restore(&id).unwrap();
    assert_eq!(h.retrieve("s1"), Some(conversation));
}

#[test]
fn a_legacy_backup_restores_verified() {
    let h = Harness::new();
    let conversation = json!({
        "sessionId": "old-1",
        "messages": [{"id": "m1", "sessionId": "old-1", "content": "password reset please",
                      "role": "user", "timestamp": T0 - 90_000}],
        "summary": "login trouble",
        "context": {},
        "sessionState": {"id": "old-1", "userId": "u-9", "status": "ended",
                         "createdAt": T0 - 90_000, "lastActivity": T0 - 80_000}
    });
    let data = json!([{"sessionId": "old-1", "data": conversation, "size": 10}]).to_string();
    let id = BackupId::parse("backup_legacy_1").unwrap();
    let manifest = json!({"backupId": id.as_str(), "timestamp": T0 - 50_000,
                          "sessionIds": ["old-1"], "totalSize": data.len(),
                          "checksum": sha256_hex(data.as_bytes()), "metadata": {"v": 1}});
    block_on(h.stores.r2.put(
        &legacy_backup_data_key(&id),
        data.as_bytes(),
        ObjectPutOptions::default(),
    ))
    .unwrap();
    block_on(h.stores.kv.put(
        &format!("backup_manifest:{id}"),
        manifest.to_string().as_bytes(),
        KvPutOptions::default(),
    ))
    .unwrap();

    assert_eq!(h.restore(id.as_str()).unwrap(), ["old-1"]);
    assert_eq!(h.retrieve("old-1"), Some(conversation));
    let key = archive_object_key(&SessionId::parse("old-1").unwrap(), T0 - 50_000).unwrap();
    let snapshot = h.stores.snapshot();
    assert!(
        snapshot.r2.contains_key(&key),
        "restored at the legacy manifest's time"
    );
    assert_eq!(common::kv_keys_under(&h.stores, "user_archives:"), 1);

    h.stores.clock.advance_ms(5_000);
    let again = h.stores.snapshot();
    h.restore(id.as_str()).unwrap();
    assert_eq!(h.stores.snapshot(), again);

    // A flipped byte in the legacy data: refused, nothing written.
    let tampered = data.replace("password", "passw0rd");
    block_on(h.stores.r2.put(
        &legacy_backup_data_key(&id),
        tampered.as_bytes(),
        ObjectPutOptions::default(),
    ))
    .unwrap();
    h.lose_all_archives();
    h.assert_restore_refused(id.as_str(), "CHECKSUM_MISMATCH", "");
}

/// A harness whose backups hold at most two archives a pack.
fn two_per_pack() -> Harness {
    let stores = MemoryStores::new(T0, 7);
    let options = ServiceOptions {
        backup_pack: PackBounds {
            max_bytes: 1024 * 1024,
            max_sessions: 2,
        },
        ..ServiceOptions::default()
    };
    let service = Harness::service_over(&stores, options);
    Harness { stores, service }
}

#[test]
fn a_backup_larger_than_a_pack_is_written_and_restored_a_pack_at_a_time() {
    let h = two_per_pack();
    let sids = ["s1", "s2", "s3", "s4", "s5"];
    let expected: Vec<Value> = sids.iter().map(|sid| h.archive(sid, None).1).collect();
    let id = h.backup(&sids).unwrap();
    let backup_id = BackupId::parse(&id).unwrap();
    let manifest = manifest(&h, &id);
    let packs = manifest["packs"].as_array().unwrap();
    let listed: Vec<Vec<&str>> = packs
        .iter()
        .map(|pack| {
            let sessions = pack["sessions"].as_array().unwrap();
            sessions
                .iter()
                .map(|s| s["sessionId"].as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(listed, [vec!["s1", "s2"], vec!["s3", "s4"], vec!["s5"]]);
    let snapshot = h.stores.snapshot();
    for (index, pack) in packs.iter().enumerate() {
        let key = backup_pack_key(&backup_id, index as u32);
        assert_eq!(pack["key"], json!(key));
        let stored = &snapshot.r2[&key].body;
        assert_eq!(pack["storedSize"], json!(stored.len()));
        assert_eq!(pack["sha256"], json!(sha256_hex(stored)));
    }

    h.lose_all_archives();
    assert_eq!(h.restore(&id).unwrap(), sids);
    for (sid, conversation) in sids.iter().zip(&expected) {
        assert_eq!(h.retrieve(sid).as_ref(), Some(conversation), "{sid}");
    }

    // Each pack is verified before any of its archives is written: a damaged second pack is
    // refused naming it, and only the first pack's archives are back.
    h.lose_all_archives();
    let second = backup_pack_key(&backup_id, 1);
    assert!(h.stores.r2.corrupt(&second, 30));
    let err = h.restore(&id).unwrap_err();
    assert_eq!(err.code(), "CHECKSUM_MISMATCH", "{err}");
    assert!(err.to_string().contains(&second), "{err}");
    let back: Vec<bool> = sids.iter().map(|sid| h.retrieve(sid).is_some()).collect();
    assert_eq!(back, [true, true, false, false, false]);
    // Repaired, the restore completes; a missing pack is NOT_FOUND naming it.
    assert!(h.stores.r2.corrupt(&second, 30));
    assert_eq!(h.restore(&id).unwrap(), sids);
    let third = backup_pack_key(&backup_id, 2);
    block_on(h.stores.r2.delete(std::slice::from_ref(&third))).unwrap();
    h.assert_restore_refused(&id, "NOT_FOUND", &third);
}

/// Writes, as a format 1 writer did, a single-bundle backup of `sids`' stored archives.
fn write_format_1_backup(h: &Harness, id: &str, sids: &[&str]) {
    let backup_id = BackupId::parse(id).unwrap();
    let snapshot = h.stores.snapshot();
    let documents: Vec<(SessionId, Vec<u8>)> = sids
        .iter()
        .map(|sid| {
            let key = snapshot
                .r2
                .keys()
                .find(|k| k.contains(&format!("archive_{sid}_")))
                .unwrap();
            let body = &snapshot.r2[key].body;
            let json = gzip::decompress(key, body, 1 << 20).unwrap();
            (SessionId::parse(sid).unwrap(), json)
        })
        .collect();
    let inputs: Vec<BackupSessionInput<'_>> = documents
        .iter()
        .map(|(session_id, json)| BackupSessionInput {
            session_id,
            archive_json: json,
        })
        .collect();
    let encoded = encode_backup(&backup_id, T0, &inputs, &[], 6).unwrap();
    let put = |key: String, body: &[u8]| {
        block_on(h.stores.r2.put(&key, body, ObjectPutOptions::default())).unwrap();
    };
    put(backup_data_key(&backup_id), &encoded.data);
    put(
        backup_manifest_object_key(&backup_id),
        &encode_manifest(&encoded.manifest).unwrap(),
    );
}

#[test]
fn a_single_bundle_backup_of_format_1_still_restores() {
    let h = Harness::new();
    let (_, first) = h.archive("s1", None);
    let (_, second) = h.archive("s2", None);
    write_format_1_backup(&h, "backup_format_1", &["s1", "s2"]);
    h.lose_all_archives();
    assert_eq!(h.restore("backup_format_1").unwrap(), ["s1", "s2"]);
    assert_eq!(h.retrieve("s1"), Some(first));
    assert_eq!(h.retrieve("s2"), Some(second));
    // Its data is checked as it always was.
    h.lose_all_archives();
    let data_key = backup_data_key(&BackupId::parse("backup_format_1").unwrap());
    assert!(h.stores.r2.corrupt(&data_key, 25));
    h.assert_restore_refused("backup_format_1", "CHECKSUM_MISMATCH", &data_key);
}

#[test]
fn an_incremental_backup_restores_with_its_parents() {
    let h = two_per_pack();
    h.archive("s1", None);
    let full = h.backup(&["s1"]).unwrap();
    h.archive("s2", None);
    let incremental = h.backup(&["s2"]).unwrap();
    // Made incremental to `full` as the backup Workflow records it.
    let key = backup_manifest_object_key(&BackupId::parse(&incremental).unwrap());
    let mut manifest = manifest(&h, &incremental);
    manifest["parentBackupId"] = json!(full);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    h.stores.clock.advance_ms(1_500);
    block_on(h.stores.r2.put(&key, &bytes, ObjectPutOptions::default())).unwrap();

    h.lose_all_archives();
    assert_eq!(h.restore(&incremental).unwrap(), ["s1", "s2"]);
    assert!(h.retrieve("s1").is_some() && h.retrieve("s2").is_some());
    // A parent that is gone fails the restore, naming it, before anything is written.
    h.lose_all_archives();
    let parent_key = backup_manifest_object_key(&BackupId::parse(&full).unwrap());
    block_on(h.stores.r2.delete(std::slice::from_ref(&parent_key))).unwrap();
    h.assert_restore_refused(&incremental, "NOT_FOUND", &parent_key);
}

/// Archives whose stored bytes cannot be decoded (as encrypted ones will be) but verify
/// against their recorded SHA-256 are backed up and restored byte for byte, under their own
/// keys, with their KV entries as they were: a backup never decodes an archive.
#[test]
fn archives_are_backed_up_and_restored_as_stored_never_decoded() {
    let h = Harness::new();
    h.archive("s1", Some("user-1"));
    h.archive("s2", None);
    h.archive("s3", Some("user-1"));
    common::seal_archives(&h.stores, "s1");
    common::seal_archives(&h.stores, "s3");
    let before = h.stores.snapshot();
    let id = h.backup(&["s1", "s2", "s3"]).unwrap();
    let owned = block_on(h.service.create_backup(
        &["s1".into(), "s3".into()],
        Some("user-1"),
        false,
    ))
    .unwrap();

    // The pack holds the stored bytes themselves, base64, beside their key and record.
    let manifest = manifest(&h, &id);
    assert_eq!(manifest["formatVersion"], json!(3));
    let pack_key = manifest["packs"][0]["key"].as_str().unwrap().to_owned();
    assert_eq!(pack_key, backup_pack_key(&BackupId::parse(&id).unwrap(), 0));
    let pack: Value = serde_json::from_slice(&h.stores.snapshot().r2[&pack_key].body).unwrap();
    let s1_key = archive_object_key(&SessionId::parse("s1").unwrap(), T0).unwrap();
    let entry = &pack["sessions"][0];
    assert_eq!(entry["key"], s1_key);
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(entry["archive"].as_str().unwrap())
        .unwrap();
    assert!(bytes == before.r2[&s1_key].body);
    assert!(bytes.starts_with(b"SEALED"));
    let record: Value = serde_json::from_slice(&before.kv["archive_meta:s1"].value).unwrap();
    let mut metadata = record.clone();
    metadata.as_object_mut().unwrap().remove("key");
    assert_eq!(entry["metadata"], metadata);
    assert_eq!(entry["sha256"], record["sha256"]);

    for backup in [&id, &owned] {
        h.lose_all_archives();
        h.stores.clock.advance_ms(5_000);
        let restored = match backup == &owned {
            true => block_on(h.service.restore_from_backup(backup, Some("user-1"))).unwrap(),
            false => h.restore(backup).unwrap(),
        };
        assert_eq!(restored.len(), if backup == &owned { 2 } else { 3 });
        let after = h.stores.snapshot();
        let mut expected = before.clone();
        if backup == &owned {
            expected.r2.retain(|key, _| !key.contains("_s2_"));
            expected.kv.retain(|key, _| !key.ends_with(":s2"));
        }
        common::assert_archives_as_before(&expected, &after);
    }
}

/// A backup written in format 2 (archive documents in gzip'd packs) still restores.
#[test]
fn a_format_2_backup_still_restores() {
    use supportbot_persistence::codec::backup::{
        encode_gzip_pack, BackupKind, PackedManifest, GZIP_PACKED_FORMAT_VERSION,
    };
    let h = Harness::new();
    let (key1, conversation1) = h.archive("s1", Some("user-1"));
    let snapshot = h.stores.snapshot();
    let document = gzip::decompress("t", &snapshot.r2[&key1].body, 1 << 20).unwrap();
    let backup_id = BackupId::parse("backup_1736157700000_00ff").unwrap();
    let s1 = SessionId::parse("s1").unwrap();
    let input = BackupSessionInput {
        session_id: &s1,
        archive_json: &document,
    };
    let (pack, record) = encode_gzip_pack(&backup_id, T0 + 1, 0, &[input], 6).unwrap();
    let mut manifest = PackedManifest::new(
        backup_id.clone(),
        T0 + 1,
        BackupKind::Manual,
        vec![record.clone()],
        vec![],
    );
    manifest.format_version = GZIP_PACKED_FORMAT_VERSION;
    assert!(record.key.ends_with("pack-0.json.gz"));
    block_on(
        h.stores
            .r2
            .put(&record.key, &pack, ObjectPutOptions::default()),
    )
    .unwrap();
    let key = backup_manifest_object_key(&backup_id);
    block_on(h.stores.r2.put(
        &key,
        &manifest.encode().unwrap(),
        ObjectPutOptions::default(),
    ))
    .unwrap();
    h.lose_all_archives();
    h.stores.clock.advance_ms(5_000);
    assert_eq!(h.restore(backup_id.as_str()).unwrap(), ["s1"]);
    assert_eq!(h.retrieve("s1"), Some(conversation1));
    assert!(h.stores.snapshot().r2.contains_key(&key1));
}
