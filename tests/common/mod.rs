//! Harness shared by the service integration tests: fixed times, log sinks, a service over the
//! in-memory stores, builders of the conversations they archive, and views of what is stored.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use flate2::read::GzDecoder;
use serde_json::{json, Value};
use supportbot_persistence::keys::{ARCHIVE_INDEX_PREFIX, ARCHIVE_META_PREFIX, USER_INDEX_PREFIX};
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::{
    DataPersistenceService, ImportOptions, ImportReport, RunBudget, ServiceOptions,
};
use supportbot_persistence::store::memory::{
    block_on, MemoryKv, MemoryR2, MemoryStores, StoreSnapshot, VirtualClock,
};
use supportbot_persistence::store::{KvStore, LogSink, ObjectStore};
use supportbot_persistence::PersistenceError;

/// 2025-01-06T10:00:00Z
pub const T0: i64 = 1_736_157_600_000;
/// 2025-06-01T00:00:00Z
pub const NOW: i64 = 1_748_736_000_000;
/// One day, in milliseconds.
pub const DAY: i64 = 24 * 60 * 60 * 1000;

/// An archive the earlier TypeScript implementation wrote (plain JSON under its legacy key).
pub const LEGACY_ARCHIVE: &[u8] = include_bytes!("../fixtures/archive/legacy_archive.json");

/// The service over the in-memory stores.
pub type Service = DataPersistenceService<MemoryKv, MemoryR2, VirtualClock>;

/// A service over `stores` that logs to `log_sink`.
pub fn service_over(
    stores: &MemoryStores,
    log_sink: Rc<dyn LogSink>,
    policy: DataRetentionPolicy,
    options: ServiceOptions,
) -> Service {
    DataPersistenceService::new(
        stores.kv.clone(),
        stores.r2.clone(),
        stores.clock.clone(),
        log_sink,
        policy,
        options,
    )
    .unwrap()
}

/// A service over `stores` with the default policy and options that drops its log lines.
pub fn quiet_service(stores: &MemoryStores) -> Service {
    service_over(
        stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        ServiceOptions::default(),
    )
}

/// Drops log lines.
pub struct Discard;

impl LogSink for Discard {
    fn emit(&self, _line: &str) {}
}

/// Collects log lines.
#[derive(Default)]
pub struct Lines(pub RefCell<Vec<String>>);

impl LogSink for Lines {
    fn emit(&self, line: &str) {
        self.0.borrow_mut().push(line.to_owned());
    }
}

impl Lines {
    /// Every line, parsed (each must be JSON).
    pub fn parsed(&self) -> Vec<Value> {
        self.0
            .borrow()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The lines at level `warn`.
    pub fn warnings(&self) -> Vec<Value> {
        self.parsed()
            .into_iter()
            .filter(|line| line["level"] == "warn")
            .collect()
    }
}

/// A conversation memory of `sid`: the user's `text` at `times[0]` and the assistant's answer
/// at `times[1]`.
pub fn memory_at(sid: &str, text: &str, times: [i64; 2]) -> Value {
    json!({
        "sessionId": sid,
        "messages": [
            {"id": "m1", "sessionId": sid, "content": text, "role": "user",
             "timestamp": times[0]},
            {"id": "m2", "sessionId": sid, "content": "Let me check your invoice.",
             "role": "assistant", "timestamp": times[1]}
        ],
        "summary": format!("Summary of {sid}"),
        "context": {"plan": "pro"}
    })
}

/// An ended session of `sid` (of `user`, if given) created at `created_at`.
pub fn session_at(sid: &str, user: Option<&str>, created_at: i64, last_activity: i64) -> Value {
    let mut session = json!({"id": sid, "status": "ended",
                             "createdAt": created_at, "lastActivity": last_activity});
    if let Some(user) = user {
        session["userId"] = json!(user);
    }
    session
}

/// Archives a one-line conversation of `sid` (for `user`) ending now, then moves the clock on
/// 1.5 s, so successive archives get distinct times and KV writes stay under 1/s per key.
pub fn archive_now(
    stores: &MemoryStores,
    service: &Service,
    sid: &str,
    user: Option<&str>,
    text: &str,
) {
    let now = supportbot_persistence::store::Clock::now_ms(&stores.clock);
    let memory = memory_at(sid, text, [now - 1_000, now]);
    let session = session_at(sid, user, now - 1_000, now);
    block_on(service.archive_conversation(&memory.to_string(), &session.to_string())).unwrap();
    stores.clock.advance_ms(1_500);
}

/// What retrieving an archive of `memory` and `session` must return: the memory plus
/// `sessionState`.
pub fn conversation(memory: &Value, session: &Value) -> Value {
    let mut expected = memory.clone();
    expected["sessionState"] = session.clone();
    expected
}

/// Every KV and R2 key in `snapshot`.
pub fn all_keys(snapshot: &StoreSnapshot) -> BTreeSet<String> {
    snapshot
        .kv
        .keys()
        .chain(snapshot.r2.keys())
        .cloned()
        .collect()
}

/// Deletes every archive object and every archive KV entry (not storage calls that fail).
pub fn lose_all_archives(stores: &MemoryStores) {
    let prefixes = [ARCHIVE_META_PREFIX, USER_INDEX_PREFIX, ARCHIVE_INDEX_PREFIX];
    lose_where(
        stores,
        |key| key.starts_with("conversations/"),
        |key| prefixes.iter().any(|prefix| key.starts_with(prefix)),
    );
}

/// Deletes the R2 objects and KV entries whose keys
/// the predicates pick.
pub fn lose_where(stores: &MemoryStores, r2: impl Fn(&str) -> bool, kv: impl Fn(&str) -> bool) {
    let snapshot = stores.snapshot();
    let objects: Vec<String> = snapshot.r2.keys().filter(|key| r2(key)).cloned().collect();
    block_on(stores.r2.delete(&objects)).unwrap();
    for key in snapshot.kv.keys().filter(|key| kv(key)) {
        block_on(stores.kv.delete(key)).unwrap();
    }
}

/// How many KV keys start with `prefix`.
pub fn kv_keys_under(stores: &MemoryStores, prefix: &str) -> usize {
    let snapshot = stores.snapshot();
    snapshot
        .kv
        .keys()
        .filter(|key| key.starts_with(prefix))
        .count()
}

/// Asserts that a run was refused for a call budget too small to make progress.
pub fn assert_budget_refused<T: std::fmt::Debug>(result: Result<T, PersistenceError>) {
    let err = result.unwrap_err();
    assert_eq!(err.code(), "INVALID_INPUT");
    assert!(err.to_string().contains("maxStorageCalls"), "{err}");
}

/// Replaces every archive of `sid` with bytes that are neither gzip nor JSON, as an encrypting
/// writer would store them, and updates what records their checksum and size (R2 `sha256` and
/// customMetadata, the `archive_meta:` record, the index entries' list metadata) so that they
/// verify. A backup that decodes archives cannot take them; one that keeps them as stored can.
pub fn seal_archives(stores: &MemoryStores, sid: &str) {
    use supportbot_persistence::hash::sha256_hex;
    use supportbot_persistence::store::{KvPutOptions, ObjectPutOptions};
    let snapshot = stores.snapshot();
    let mut sealed = std::collections::BTreeMap::new();
    for (key, object) in &snapshot.r2 {
        if !key.contains(&format!("/archive_{sid}_")) {
            continue;
        }
        let mut bytes = b"SEALED\x00".to_vec();
        bytes.extend(object.body.iter().map(|byte| byte ^ 0x5a));
        let sha256 = sha256_hex(&bytes);
        let mut custom_metadata = object.meta.custom_metadata.clone();
        custom_metadata.insert("sha256".into(), sha256.clone());
        let options = ObjectPutOptions {
            custom_metadata,
            content_type: Some("application/gzip".into()),
            content_encoding: None,
            sha256: Some(sha256.clone()),
            only_if_absent: false,
            if_etag_matches: None,
        };
        block_on(stores.r2.put(key, &bytes, options)).unwrap();
        sealed.insert(key.clone(), (sha256, bytes.len()));
    }
    let reseal = |value: &mut Value| {
        let Some((sha256, size)) = value["key"].as_str().and_then(|key| sealed.get(key)) else {
            return false;
        };
        value["sha256"] = json!(sha256);
        value["storedSize"] = json!(size);
        true
    };
    for (key, entry) in &snapshot.kv {
        let mut metadata = entry.metadata.clone();
        let mut value = entry.value.clone();
        let listed = metadata.as_mut().is_some_and(&reseal);
        let mut record = serde_json::from_slice::<Value>(&entry.value).ok();
        if key.starts_with(ARCHIVE_META_PREFIX) && record.as_mut().is_some_and(&reseal) {
            value = serde_json::to_vec(&record).unwrap();
        } else if !listed {
            continue;
        }
        let options = KvPutOptions {
            expiration_ttl_secs: None,
            metadata,
        };
        block_on(stores.kv.put(key, &value, options)).unwrap();
    }
}

/// Asserts that every archive object and archive KV entry of `before` is in `after` exactly:
/// the same bytes, checksum and customMetadata under the same key, the same values and list
/// metadata.
pub fn assert_archives_as_before(before: &StoreSnapshot, after: &StoreSnapshot) {
    for (key, object) in before
        .r2
        .iter()
        .filter(|(k, _)| k.starts_with("conversations/"))
    {
        let restored = after.r2.get(key).unwrap_or_else(|| panic!("{key} missing"));
        assert!(restored.body == object.body, "{key}: other bytes");
        assert_eq!(restored.meta.sha256, object.meta.sha256, "{key}");
        assert_eq!(
            restored.meta.custom_metadata, object.meta.custom_metadata,
            "{key}"
        );
    }
    let prefixes = [ARCHIVE_META_PREFIX, USER_INDEX_PREFIX, ARCHIVE_INDEX_PREFIX];
    for (key, entry) in &before.kv {
        if prefixes.iter().any(|prefix| key.starts_with(prefix)) {
            assert_eq!(after.kv.get(key), Some(entry), "{key}");
        }
    }
}

/// Every readable form `bytes` could reveal `marker` in: as is, inflated when gzip, and
/// base64 at each of the three alignments.
pub fn reveals(bytes: &[u8], marker: &str) -> bool {
    let contains = |haystack: &[u8], needle: &[u8]| {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    };
    if contains(bytes, marker.as_bytes()) {
        return true;
    }
    for shift in 0..3 {
        let padded = format!("{}{marker}", "x".repeat(shift));
        let encoded = STANDARD.encode(padded.as_bytes());
        // The characters that depend on the marker alone.
        let core = &encoded[(shift * 4).div_ceil(3) + 1..encoded.len() - 4];
        if contains(bytes, core.as_bytes()) {
            return true;
        }
    }
    let mut inflated = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b])
        && std::io::Read::read_to_end(&mut GzDecoder::new(bytes), &mut inflated).is_ok()
    {
        return reveals(&inflated, marker);
    }
    false
}

/// Where `marker` can be read in what is stored: R2 bodies and custom metadata, KV values and
/// metadata.
pub fn places_revealing(snapshot: &StoreSnapshot, marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (key, object) in &snapshot.r2 {
        if reveals(&object.body, marker) {
            found.push(format!("R2 {key} body"));
        }
        for (name, value) in &object.meta.custom_metadata {
            if reveals(value.as_bytes(), marker) {
                found.push(format!("R2 {key} customMetadata.{name}"));
            }
        }
    }
    for (key, value) in &snapshot.kv {
        if reveals(&value.value, marker) {
            found.push(format!("KV {key} value"));
        }
        if let Some(metadata) = &value.metadata {
            if reveals(metadata.to_string().as_bytes(), marker) {
                found.push(format!("KV {key} metadata"));
            }
        }
    }
    found
}

/// Reads a person's whole export, chunk by chunk; the chunks' sizes besides.
pub fn user_export(
    service: &Service,
    user: &str,
) -> Result<(Vec<u8>, Vec<usize>), PersistenceError> {
    let mut export = service.export_user_data(user)?;
    let (mut bytes, mut chunks) = (Vec::new(), Vec::new());
    while let Some(chunk) = block_on(service.next_user_export_chunk(&mut export))? {
        chunks.push(chunk.len());
        bytes.extend(chunk);
    }
    Ok((bytes, chunks))
}

/// Reads a whole store export within `budget`, from `cursor`.
pub fn store_export(service: &Service, budget: RunBudget, cursor: Option<&str>) -> Vec<u8> {
    let mut export = service.export_store(budget, cursor).unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = block_on(service.next_store_export_chunk(&mut export)).unwrap() {
        bytes.extend(chunk);
    }
    bytes
}

/// Imports `stream`, handed over in chunks of `chunk` bytes.
pub fn import_stream(
    service: &Service,
    stream: &[u8],
    options: ImportOptions,
    budget: RunBudget,
    chunk: usize,
) -> Result<ImportReport, PersistenceError> {
    let mut import = service.import_store(options, budget)?;
    for part in stream.chunks(chunk.max(1)) {
        if !block_on(service.import_chunk(&mut import, part))? {
            break;
        }
    }
    block_on(service.finish_import(import))
}

/// The lines of an NDJSON stream, each with its newline.
pub fn ndjson_lines(stream: &[u8]) -> Vec<Vec<u8>> {
    stream
        .split_inclusive(|byte| *byte == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// Checks a stream's last line against the lines before it (`count`, `sha256` of their bytes)
/// and returns it.
pub fn verified_end_line(stream: &[u8]) -> Value {
    let lines = ndjson_lines(stream);
    let (end, before) = lines.split_last().expect("an empty stream");
    let end: Value = serde_json::from_slice(end).unwrap();
    assert_eq!(end["type"], "end", "{end}");
    assert_eq!(end["count"], json!(before.len()), "{end}");
    let hashed: Vec<u8> = before.concat();
    assert_eq!(
        end["sha256"],
        json!(supportbot_persistence::hash::sha256_hex(&hashed)),
        "{end}"
    );
    end
}

/// What a store holds, without the times and etags R2 gives each write: every object's
/// body, checksum and custom metadata, every KV entry's value and list metadata.
pub type StoredContent = (
    BTreeMap<String, (Vec<u8>, Option<String>, BTreeMap<String, String>)>,
    BTreeMap<String, (Vec<u8>, Option<Value>)>,
);

/// The [`StoredContent`] of `stores`.
pub fn stored_content(stores: &MemoryStores) -> StoredContent {
    let snapshot = stores.snapshot();
    let r2 = snapshot
        .r2
        .into_iter()
        .map(|(key, object)| {
            let meta = object.meta;
            (key, (object.body, meta.sha256, meta.custom_metadata))
        })
        .collect();
    let kv = snapshot
        .kv
        .into_iter()
        .map(|(key, entry)| (key, (entry.value, entry.metadata)))
        .collect();
    (r2, kv)
}
