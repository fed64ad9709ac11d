//! Property tests of the planner's invariants over generated listings: nothing younger than
//! its limit is deleted, planning is independent of page cuts, every key is planned at most
//! once, and planning again over what is left plans nothing.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::keys::{
    archive_index_key, archive_meta_key, archive_object_key, backup_data_key,
    backup_manifest_kv_key, backup_manifest_object_key, legacy_archive_object_key,
    legacy_backup_data_key, parse_archive_index_key, parse_archive_meta_key,
    parse_archive_object_key, parse_backup_manifest_kv_key, parse_backup_object_key,
    parse_user_index_key, user_index_key, BackupId, BackupObjectKind, SessionId,
};
use crate::platform::{Binding, R2_MAX_DELETE_KEYS};

const HOUR: i64 = 60 * 60 * 1000;
const DAY: i64 = 24 * HOUR;
const USER_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The limits of a generated sweep.
#[derive(Debug, Clone, Copy)]
struct Sweep {
    now: i64,
    retention: i64,
    orphan_grace: i64,
    missing_grace: i64,
}

impl Sweep {
    fn policy(&self) -> DataRetentionPolicy {
        DataRetentionPolicy {
            archive_retention_ms: self.retention as u64,
            ..DataRetentionPolicy::default()
        }
    }

    fn options(&self) -> RetentionOptions {
        RetentionOptions {
            orphan_backup_grace_ms: self.orphan_grace as u64,
            missing_archive_grace_ms: self.missing_grace as u64,
            ..RetentionOptions::default()
        }
    }

    fn age(&self, time_ms: i64) -> i64 {
        self.now - time_ms
    }

    /// A time whose age lands on, just around or between the limits, or in the future.
    fn time(&self, age: Age) -> i64 {
        let age_ms = match age {
            Age::NearRetention(delta) => self.retention + delta,
            Age::NearOrphanGrace(delta) => self.orphan_grace + delta,
            Age::NearMissingGrace(delta) => self.missing_grace + delta,
            Age::Permille(permille) => self.retention * permille / 1000 - HOUR,
        };
        self.now - age_ms
    }
}

#[derive(Debug, Clone, Copy)]
enum Age {
    NearRetention(i64),
    NearOrphanGrace(i64),
    NearMissingGrace(i64),
    Permille(i64),
}

fn age() -> impl Strategy<Value = Age> {
    prop_oneof![
        (-1i64..=1).prop_map(Age::NearRetention),
        (-1i64..=1).prop_map(Age::NearOrphanGrace),
        (-1i64..=1).prop_map(Age::NearMissingGrace),
        (0i64..3000).prop_map(Age::Permille),
    ]
}

fn sweep() -> impl Strategy<Value = Sweep> {
    (
        1_600_000_000_000i64..1_900_000_000_000,
        HOUR..200 * DAY,
        0..3 * HOUR,
        0..3 * HOUR,
    )
        .prop_map(|(now, retention, orphan_grace, missing_grace)| Sweep {
            now,
            retention,
            orphan_grace,
            missing_grace,
        })
}

/// Where an index entry's archive key (list metadata `key`) points.
#[derive(Debug, Clone)]
enum Pointer {
    None,
    Garbage,
    /// The n-th generated archive (modulo their count).
    Stored(usize),
    /// An archive that is not stored.
    Missing(u8, Age),
}

fn pointer() -> impl Strategy<Value = Pointer> {
    prop_oneof![
        Just(Pointer::None),
        Just(Pointer::Garbage),
        any::<usize>().prop_map(Pointer::Stored),
        (0u8..40, age()).prop_map(|(sid, age)| Pointer::Missing(sid, age)),
    ]
}

#[derive(Debug, Clone)]
enum CacheMeta {
    None,
    Garbage,
    ExpiresAt(Age),
}

/// Which objects of one backup are stored, and when they were uploaded.
#[derive(Debug, Clone)]
struct BackupSpec {
    id: u8,
    data: bool,
    legacy_data: bool,
    manifest: bool,
    data_age: Age,
    /// How much later than the data the manifest was uploaded.
    manifest_lag: i64,
    /// The manifest's `createdAt` custom metadata.
    created_at: Option<Age>,
}

fn backup_spec() -> impl Strategy<Value = BackupSpec> {
    (
        0u8..10,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        age(),
        0i64..5000,
        prop::option::of(age()),
    )
        .prop_map(
            |(id, data, legacy_data, manifest, data_age, manifest_lag, created_at)| BackupSpec {
                id,
                data,
                legacy_data,
                manifest,
                data_age,
                manifest_lag,
                created_at,
            },
        )
}

#[derive(Debug, Clone)]
struct WorldSpec {
    archives: Vec<(u8, Age, bool, i64)>,
    junk_objects: u8,
    backups: Vec<BackupSpec>,
    caches: Vec<(u16, bool, CacheMeta)>,
    archive_metas: Vec<(u8, Pointer)>,
    user_entries: Vec<(u8, Age, Pointer)>,
    kv_manifests: Vec<(u8, Option<Age>)>,
    r2_cuts: Vec<usize>,
    kv_cuts: Vec<usize>,
}

fn world_spec() -> impl Strategy<Value = WorldSpec> {
    let cache_meta = prop_oneof![
        Just(CacheMeta::None),
        Just(CacheMeta::Garbage),
        age().prop_map(CacheMeta::ExpiresAt),
    ];
    (
        prop::collection::vec((0u8..30, age(), any::<bool>(), 0i64..5000), 0..25),
        0u8..3,
        prop::collection::vec(backup_spec(), 0..10),
        prop::collection::vec((0u16..500, any::<bool>(), cache_meta), 0..20),
        prop::collection::vec((0u8..40, pointer()), 0..15),
        prop::collection::vec((0u8..40, age(), pointer()), 0..15),
        prop::collection::vec((0u8..12, prop::option::of(age())), 0..8),
        prop::collection::vec(1usize..6, 1..40),
        prop::collection::vec(1usize..6, 1..40),
    )
        .prop_map(
            |(
                archives,
                junk_objects,
                backups,
                caches,
                archive_metas,
                user_entries,
                kv_manifests,
                r2_cuts,
                kv_cuts,
            )| WorldSpec {
                archives,
                junk_objects,
                backups,
                caches,
                archive_metas,
                user_entries,
                kv_manifests,
                r2_cuts,
                kv_cuts,
            },
        )
}

/// Complete listings, each sorted by key as the stores list them.
#[derive(Debug, Clone)]
struct World {
    r2: Vec<ListedR2Object>,
    kv: Vec<ListedKvKey>,
}

fn session(sid: u8) -> SessionId {
    SessionId::parse(&format!("s{sid}")).unwrap()
}

fn backup_id(id: u8) -> BackupId {
    BackupId::parse(&format!("backup_{id}")).unwrap()
}

fn build(spec: &WorldSpec, sweep: &Sweep) -> World {
    let mut r2: BTreeMap<String, ListedR2Object> = BTreeMap::new();
    let mut put = |key: String, uploaded_ms: i64, custom_metadata| {
        r2.insert(
            key.clone(),
            ListedR2Object {
                key,
                uploaded_ms,
                size: 1 + uploaded_ms.unsigned_abs() % 1000,
                custom_metadata,
            },
        );
    };
    let mut archive_keys = Vec::new();
    for &(sid, age, legacy, lag) in &spec.archives {
        let archived_at = sweep.time(age);
        let key = if legacy {
            legacy_archive_object_key(&session(sid), archived_at)
        } else {
            archive_object_key(&session(sid), archived_at)
        }
        .unwrap();
        put(key.clone(), archived_at + lag, None);
        archive_keys.push(key);
    }
    for junk in 0..spec.junk_objects {
        put(format!("conversations/junk-{junk}.txt"), 0, None);
        put(format!("backups/backup_{junk}/notes.txt"), 0, None);
    }
    for backup in &spec.backups {
        let id = backup_id(backup.id);
        let data_time = sweep.time(backup.data_age);
        if backup.data {
            put(backup_data_key(&id), data_time, None);
        }
        if backup.legacy_data {
            put(legacy_backup_data_key(&id), data_time, None);
        }
        if backup.manifest {
            let metadata = backup.created_at.map(|age| {
                BTreeMap::from([(
                    BACKUP_CREATED_AT_FIELD.to_owned(),
                    sweep.time(age).to_string(),
                )])
            });
            put(
                backup_manifest_object_key(&id),
                data_time + backup.manifest_lag,
                metadata,
            );
        }
    }

    let pointer_key = |pointer: &Pointer| -> Option<Value> {
        match pointer {
            Pointer::None => None,
            Pointer::Garbage => Some(json!({ INDEX_ARCHIVE_KEY_FIELD: "conversations/x.json" })),
            Pointer::Stored(n) if !archive_keys.is_empty() => {
                let key = &archive_keys[n % archive_keys.len()];
                Some(json!({ INDEX_ARCHIVE_KEY_FIELD: key }))
            }
            Pointer::Stored(_) => None,
            Pointer::Missing(sid, age) => {
                let key = archive_object_key(&session(sid + 100), sweep.time(*age)).unwrap();
                Some(json!({ INDEX_ARCHIVE_KEY_FIELD: key }))
            }
        }
    };
    let mut kv: BTreeMap<String, Option<Value>> = BTreeMap::new();
    for (index, is_embedding, meta) in &spec.caches {
        let prefix = if *is_embedding {
            "embedding:"
        } else {
            "query:"
        };
        let metadata = match meta {
            CacheMeta::None => None,
            CacheMeta::Garbage => Some(json!({"expiresAt": "soon"})),
            CacheMeta::ExpiresAt(age) => {
                let expires_at = sweep.time(*age);
                Some(json!({"createdAt": expires_at - DAY, "expiresAt": expires_at}))
            }
        };
        kv.insert(format!("{prefix}{index:064x}"), metadata);
    }
    for (sid, pointer) in &spec.archive_metas {
        kv.insert(archive_meta_key(&session(*sid)), pointer_key(pointer));
    }
    for (sid, age, pointer) in &spec.user_entries {
        let metadata = pointer_key(pointer);
        // The key spells the same archive time as the archive it points at.
        let archived_at = metadata
            .as_ref()
            .and_then(|metadata| metadata[INDEX_ARCHIVE_KEY_FIELD].as_str())
            .and_then(parse_archive_object_key)
            .map_or(sweep.time(*age), |archive| archive.archived_at_ms);
        // Every archive also has a global index entry, decided by the same rules.
        kv.insert(
            archive_index_key(archived_at, &session(*sid)).unwrap(),
            metadata.clone(),
        );
        kv.insert(
            user_index_key(USER_KEY, archived_at, &session(*sid)).unwrap(),
            metadata,
        );
    }
    for (id, created_at) in &spec.kv_manifests {
        let metadata = created_at.map(|age| json!({ BACKUP_CREATED_AT_FIELD: sweep.time(age) }));
        kv.insert(backup_manifest_kv_key(&backup_id(*id)), metadata);
    }
    World {
        r2: r2.into_values().collect(),
        kv: kv
            .into_iter()
            .map(|(name, metadata)| ListedKvKey {
                name,
                expiration_s: None,
                metadata,
            })
            .collect(),
    }
}

fn pages<'a, T>(listing: &'a [T], cuts: &[usize]) -> Vec<&'a [T]> {
    let mut pages = Vec::new();
    let mut rest = listing;
    for &cut in cuts.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (page, tail) = rest.split_at(cut.min(rest.len()));
        pages.push(page);
        rest = tail;
    }
    pages
}

fn plan_whole(world: &World, sweep: &Sweep) -> Vec<PlannedDeletion> {
    plan_retention(
        &sweep.policy(),
        sweep.now,
        sweep.options(),
        &world.r2,
        &world.kv,
    )
    .unwrap()
}

fn plan_paged(world: &World, sweep: &Sweep, spec: &WorldSpec) -> Vec<PlannedDeletion> {
    let mut planner = RetentionPlanner::new(&sweep.policy(), sweep.now, sweep.options());
    let mut planned = Vec::new();
    for page in pages(&world.r2, &spec.r2_cuts) {
        planned.extend(planner.plan_r2_page(page).unwrap());
    }
    planned.extend(planner.finish_r2_listing());
    planner.confirm_all(&planned);
    for page in pages(&world.kv, &spec.kv_cuts) {
        planned.extend(planner.plan_kv_page(page));
    }
    planned
}

fn without(world: &World, planned: &[PlannedDeletion]) -> World {
    let gone: BTreeSet<(Binding, &str)> =
        planned.iter().map(|d| (d.store, d.key.as_str())).collect();
    World {
        r2: world
            .r2
            .iter()
            .filter(|o| !gone.contains(&(Binding::R2, o.key.as_str())))
            .cloned()
            .collect(),
        kv: world
            .kv
            .iter()
            .filter(|k| !gone.contains(&(Binding::Kv, k.name.as_str())))
            .cloned()
            .collect(),
    }
}

/// The archive time an index entry names: its archive key's, else its own key's.
fn index_entry_time(entry: &ListedKvKey) -> Option<(i64, Option<String>)> {
    let archive_key = entry
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.get(INDEX_ARCHIVE_KEY_FIELD))
        .and_then(Value::as_str)
        .filter(|key| parse_archive_object_key(key).is_some());
    if let Some(key) = archive_key {
        let archived_at = parse_archive_object_key(key).unwrap().archived_at_ms;
        return Some((archived_at, Some(key.to_owned())));
    }
    parse_user_index_key(&entry.name)
        .map(|index| index.archived_at_ms)
        .or_else(|| parse_archive_index_key(&entry.name).map(|index| index.archived_at_ms))
        .map(|archived_at| (archived_at, None))
}

/// Checks one deletion against the limit that applies to it, from the listing alone.
fn check_deletion(
    deletion: &PlannedDeletion,
    world: &World,
    survivors: &World,
    planned: &[PlannedDeletion],
    sweep: &Sweep,
    complete_listing: bool,
) -> Result<(), TestCaseError> {
    let reason = deletion.reason;
    match deletion.store {
        Binding::R2 => {
            let object = world.r2.iter().find(|o| o.key == deletion.key).unwrap();
            prop_assert_eq!(deletion.size_bytes, Some(object.size));
            if let Some(archive) = parse_archive_object_key(&object.key) {
                prop_assert_eq!(reason, DeletionReason::ArchivePastRetention);
                prop_assert!(sweep.age(archive.archived_at_ms) >= sweep.retention);
                return Ok(());
            }
            let (id, _) = parse_backup_object_key(&object.key).unwrap();
            let group: Vec<&ListedR2Object> = world
                .r2
                .iter()
                .filter(|o| parse_backup_object_key(&o.key).is_some_and(|(other, _)| other == id))
                .collect();
            let manifest = group
                .iter()
                .find(|o| parse_backup_object_key(&o.key).unwrap().1 == BackupObjectKind::Manifest);
            match manifest {
                Some(manifest) => {
                    prop_assert_eq!(reason, DeletionReason::BackupPastRetention);
                    for member in &group {
                        prop_assert!(sweep.age(member.uploaded_ms) >= sweep.retention);
                    }
                    if let Some(created) = manifest
                        .custom_metadata
                        .as_ref()
                        .and_then(|m| m.get(BACKUP_CREATED_AT_FIELD))
                    {
                        prop_assert!(sweep.age(created.parse().unwrap()) >= sweep.retention);
                    }
                }
                None => {
                    // Orphan data goes only once all of it is past the grace: a backup still
                    // writing packs has a young one.
                    prop_assert_eq!(reason, DeletionReason::OrphanBackupData);
                    for member in &group {
                        prop_assert!(sweep.age(member.uploaded_ms) >= sweep.orphan_grace);
                    }
                }
            }
        }
        Binding::R2Replica => unreachable!("the planner deletes in ARCHIVE_R2 and CHAT_KV only"),
        Binding::Kv => {
            let entry = world.kv.iter().find(|k| k.name == deletion.key).unwrap();
            prop_assert_eq!(deletion.size_bytes, None);
            if let Some(id) = parse_backup_manifest_kv_key(&entry.name) {
                let created_at = entry
                    .metadata
                    .as_ref()
                    .and_then(|m| m.get(BACKUP_CREATED_AT_FIELD))
                    .and_then(Value::as_i64);
                let by_own_time = reason == DeletionReason::BackupPastRetention
                    && created_at.is_some_and(|t| sweep.age(t) >= sweep.retention);
                // Or it went with its whole backup: every R2 object of it, for the same reason.
                let mut backup_objects = world
                    .r2
                    .iter()
                    .filter(|o| {
                        parse_backup_object_key(&o.key).is_some_and(|(other, _)| other == id)
                    })
                    .peekable();
                let with_its_backup = backup_objects.peek().is_some()
                    && backup_objects.all(|o| {
                        planned
                            .iter()
                            .any(|d| d.store == Binding::R2 && d.key == o.key && d.reason == reason)
                    });
                prop_assert!(by_own_time || with_its_backup, "{:?}", deletion);
            } else if parse_archive_meta_key(&entry.name).is_some()
                || parse_user_index_key(&entry.name).is_some()
                || parse_archive_index_key(&entry.name).is_some()
            {
                prop_assert_eq!(reason, DeletionReason::DanglingIndexEntry);
                let (archived_at, archive_key) = index_entry_time(entry).unwrap();
                let past_retention = sweep.age(archived_at) >= sweep.retention;
                let missing = complete_listing
                    && sweep.age(archived_at) >= sweep.missing_grace
                    && archive_key.is_some_and(|key| survivors.r2.iter().all(|o| o.key != key));
                prop_assert!(past_retention || missing, "{:?}", deletion);
            } else {
                prop_assert_eq!(reason, DeletionReason::ExpiredCacheEntry);
                let expires_at = entry.metadata.as_ref().unwrap()["expiresAt"]
                    .as_i64()
                    .unwrap();
                prop_assert!(expires_at <= sweep.now);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_deletes_anything_younger_than_its_limit(spec in world_spec(), sweep in sweep()) {
        let world = build(&spec, &sweep);
        let planned = plan_whole(&world, &sweep);
        let survivors = without(&world, &planned);
        for deletion in &planned {
            check_deletion(deletion, &world, &survivors, &planned, &sweep, true)?;
        }
    }

    #[test]
    fn a_partial_listing_never_reveals_a_missing_archive(spec in world_spec(), sweep in sweep()) {
        let world = build(&spec, &sweep);
        let mut planner = RetentionPlanner::new(&sweep.policy(), sweep.now, sweep.options());
        let mut planned = planner.plan_r2_page(&world.r2).unwrap();
        planner.confirm_all(&planned);
        // Not finished: the listing might go on.
        planned.extend(planner.plan_kv_page(&world.kv));
        let survivors = without(&world, &planned);
        for deletion in &planned {
            check_deletion(deletion, &world, &survivors, &planned, &sweep, false)?;
        }
    }

    #[test]
    fn page_cuts_do_not_change_the_plan(spec in world_spec(), sweep in sweep()) {
        let world = build(&spec, &sweep);
        prop_assert_eq!(plan_paged(&world, &sweep, &spec), plan_whole(&world, &sweep));
    }

    #[test]
    fn plans_each_key_once_and_nothing_on_a_second_pass(spec in world_spec(), sweep in sweep()) {
        let world = build(&spec, &sweep);
        let planned = plan_whole(&world, &sweep);
        let distinct: BTreeSet<(Binding, &str)> =
            planned.iter().map(|d| (d.store, d.key.as_str())).collect();
        prop_assert_eq!(distinct.len(), planned.len());
        let again = plan_whole(&without(&world, &planned), &sweep);
        prop_assert!(again.is_empty(), "second pass planned {:?}", again);
    }

    #[test]
    fn deletes_every_archive_and_cache_entry_past_its_limit(spec in world_spec(), sweep in sweep()) {
        let world = build(&spec, &sweep);
        let planned = plan_whole(&world, &sweep);
        let planned_keys: BTreeSet<&str> = planned.iter().map(|d| d.key.as_str()).collect();
        for object in &world.r2 {
            if let Some(archive) = parse_archive_object_key(&object.key) {
                let due = sweep.age(archive.archived_at_ms) >= sweep.retention;
                prop_assert_eq!(planned_keys.contains(object.key.as_str()), due, "{}", object.key);
            }
        }
        for entry in &world.kv {
            let expires_at = entry
                .metadata
                .as_ref()
                .filter(|_| entry.name.starts_with("query:") || entry.name.starts_with("embedding:"))
                .and_then(|m| m.get("expiresAt"))
                .and_then(Value::as_i64);
            if let Some(expires_at) = expires_at {
                prop_assert_eq!(planned_keys.contains(entry.name.as_str()), expires_at <= sweep.now);
            }
        }
    }

    #[test]
    fn r2_batches_keep_every_key_in_order(count in 0usize..3500, max in 0usize..2500) {
        let deletions: Vec<PlannedDeletion> = (0..count)
            .map(|i| PlannedDeletion {
                store: if i % 7 == 3 { Binding::Kv } else { Binding::R2 },
                key: format!("k{i:05}"),
                reason: DeletionReason::ArchivePastRetention,
                size_bytes: None,
            })
            .collect();
        let batches = batch_r2_deletions(&deletions, max);
        let limit = max.clamp(1, R2_MAX_DELETE_KEYS);
        prop_assert!(batches.iter().all(|batch| !batch.is_empty() && batch.len() <= limit));
        let flat: Vec<&String> = batches.iter().flatten().collect();
        let expected: Vec<&String> = deletions
            .iter()
            .filter(|d| d.store == Binding::R2)
            .map(|d| &d.key)
            .collect();
        prop_assert_eq!(flat, expected);
    }
}
