//! Contender (d) of `npm run bench` (bench/run.mjs): the crate's service and core natively,
//! over the in-memory stores, on the inputs the Node benchmark generated. Prints one JSON
//! object with the median milliseconds per operation and the storage calls per operation of
//! every workload.
//!
//! `cargo run --release --features memory --example bench_native -- '{"input": "<path>", "reps": 5, "ops": {...}}'`

use std::error::Error;
use std::rc::Rc;
use std::time::Instant;

use serde_json::{json, Map, Value};
use supportbot_persistence::hash;
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::{DataPersistenceService, RunBudget, ServiceOptions};
use supportbot_persistence::store::memory::{
    block_on, CallCounts, MemoryKv, MemoryR2, MemoryStores, OperationKind, VirtualClock,
};
use supportbot_persistence::store::{
    Binding, Clock, KvPutOptions, KvStore, LogSink, ObjectPutOptions, ObjectStore,
};

type Service = DataPersistenceService<MemoryKv, MemoryR2, VirtualClock>;
type Outcome<T> = Result<T, Box<dyn Error>>;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Builds each log line, as the wasm build does, then drops it instead of printing it.
struct DiscardLog;

impl LogSink for DiscardLog {
    fn emit(&self, line: &str) {
        std::hint::black_box(line);
    }
}

/// A service over `stores` with `policy`, with the per-key write rate limits off.
fn service_over(stores: &MemoryStores, policy: DataRetentionPolicy) -> Outcome<Service> {
    stores.kv.set_write_rate_limit(false);
    stores.r2.set_write_rate_limit(false);
    Ok(DataPersistenceService::new(
        stores.kv.clone(),
        stores.r2.clone(),
        stores.clock.clone(),
        Rc::new(DiscardLog),
        policy,
        ServiceOptions::default(),
    )?)
}

/// A conversation template rewritten for another session (and user), as JSON text.
fn with_session(template: &Value, session_id: &str, user_id: &str) -> Outcome<(String, String)> {
    let mut memory = template["memory"].clone();
    let mut session = template["session"].clone();
    memory["sessionId"] = json!(session_id);
    if let Some(messages) = memory["messages"].as_array_mut() {
        for message in messages {
            message["sessionId"] = json!(session_id);
        }
    }
    session["id"] = json!(session_id);
    session["userId"] = json!(user_id);
    Ok((memory.to_string(), session.to_string()))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Storage calls of `counts` divided by `ops`, as `{"kv": {...}, "r2": {...}}`.
fn calls_json(counts: &CallCounts, ops: usize) -> Value {
    let kinds = [
        ("get", OperationKind::Get),
        ("head", OperationKind::Head),
        ("put", OperationKind::Put),
        ("delete", OperationKind::Delete),
        ("list", OperationKind::List),
    ];
    let per_binding = |binding: Binding| -> Value {
        let mut map = Map::new();
        for (name, kind) in kinds {
            map.insert(
                name.into(),
                json!(counts.of(binding, kind) as f64 / ops as f64),
            );
        }
        Value::Object(map)
    };
    json!({ "kv": per_binding(Binding::Kv), "r2": per_binding(Binding::R2) })
}

/// Runs `op(i)` `ops` times per repetition (after one warm-up repetition) and reports the
/// median ms per op and the calls of the last repetition. `setup` runs untimed before each.
fn measure<S>(
    reps: usize,
    ops: usize,
    mut setup: impl FnMut() -> Outcome<S>,
    mut op: impl FnMut(&S, usize) -> Outcome<()>,
    stores_of: impl Fn(&S) -> MemoryStores,
) -> Outcome<Value> {
    let mut times = Vec::with_capacity(reps);
    let mut calls = Value::Null;
    for rep in 0..=reps {
        let state = setup()?;
        let stores = stores_of(&state);
        let before = stores.faults.counts();
        let started = Instant::now();
        for i in 0..ops {
            op(&state, i)?;
        }
        let elapsed = started.elapsed().as_secs_f64() * 1000.0 / ops as f64;
        // The first repetition warms caches and the allocator, as the JIT warm-up in Node.
        if rep > 0 || reps == 1 {
            times.push(elapsed);
        }
        calls = calls_json(&stores.faults.counts().since(&before), ops);
    }
    Ok(json!({ "msPerOp": median(times), "calls": calls }))
}

struct Bench {
    input: Value,
    reps: usize,
    ops: Value,
    start_ms: i64,
}

impl Bench {
    fn ops(&self, name: &str) -> usize {
        self.ops[name].as_u64().unwrap_or(1).max(1) as usize
    }

    fn fresh(&self) -> Outcome<(MemoryStores, Service)> {
        let stores = MemoryStores::new(self.start_ms, 7);
        let service = service_over(&stores, DataRetentionPolicy::default())?;
        Ok((stores, service))
    }

    fn archive(&self, size: &str) -> Outcome<(Value, Value)> {
        let conversation = &self.input["conversations"][size];
        let memory = conversation["memory"].to_string();
        let session = conversation["session"].to_string();
        let session_id = conversation["session"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let archive = measure(
            self.reps,
            self.ops(&format!("archive-{size}")),
            || self.fresh(),
            |(stores, service), _| {
                stores.clock.advance_ms(1000);
                block_on(service.archive_conversation(&memory, &session))?;
                Ok(())
            },
            |(stores, _)| stores.clone(),
        )?;
        let retrieve = measure(
            self.reps,
            self.ops(&format!("retrieve-{size}")),
            || {
                let (stores, service) = self.fresh()?;
                block_on(service.archive_conversation(&memory, &session))?;
                Ok((stores, service))
            },
            |(_, service), _| {
                let found = block_on(service.retrieve_archived_conversation(&session_id))?;
                std::hint::black_box(found.ok_or("archive not found")?);
                Ok(())
            },
            |(stores, _)| stores.clone(),
        )?;
        Ok((archive, retrieve))
    }

    fn embeddings(&self, dims: &str, results: &mut Map<String, Value>) -> Outcome<()> {
        let set = &self.input["embeddings"][dims];
        let texts: Vec<String> = serde_json::from_value(set["texts"].clone())?;
        let vectors: Vec<Vec<f64>> = serde_json::from_value(set["vectors"].clone())?;
        let metadata = json!({ "model": "bge-base", "source": "knowledge_base" }).to_string();
        let put = measure(
            self.reps,
            self.ops(&format!("embed-put-{dims}")),
            || self.fresh(),
            |(_, service), i| {
                let at = i % texts.len();
                block_on(service.cache_embedding(&texts[at], &vectors[at], Some(&metadata)))?;
                Ok(())
            },
            |(stores, _)| stores.clone(),
        )?;
        let get = measure(
            self.reps,
            self.ops(&format!("embed-get-{dims}")),
            || {
                let (stores, service) = self.fresh()?;
                for (text, vector) in texts.iter().zip(&vectors) {
                    block_on(service.cache_embedding(text, vector, Some(&metadata)))?;
                }
                Ok((stores, service))
            },
            |(_, service), i| {
                let found = block_on(
                    service.get_cached_embedding(&texts[i % texts.len()], Some("bge-base")),
                )?;
                std::hint::black_box(found.ok_or("embedding not found")?);
                Ok(())
            },
            |(stores, _)| stores.clone(),
        )?;
        results.insert(format!("embed-put-{dims}"), put);
        results.insert(format!("embed-get-{dims}"), get);
        Ok(())
    }

    /// The generated (query, result JSON text) pairs.
    fn query_pairs(&self) -> Outcome<Vec<(String, String)>> {
        Ok(self.input["queries"]
            .as_array()
            .ok_or("queries")?
            .iter()
            .map(|entry| {
                (
                    entry["query"].as_str().unwrap_or_default().to_owned(),
                    entry["result"].to_string(),
                )
            })
            .collect())
    }

    fn queries(&self, results: &mut Map<String, Value>) -> Outcome<()> {
        let queries = self.query_pairs()?;
        let misses: Vec<String> = serde_json::from_value(self.input["missQueries"].clone())?;
        let populated = || {
            let (stores, service) = self.fresh()?;
            for (query, result) in &queries {
                block_on(service.cache_frequent_query(query, result, None))?;
            }
            Ok((stores, service))
        };
        let hit = measure(
            self.reps,
            self.ops("query-hit"),
            populated,
            |(_, service), i| {
                let found =
                    block_on(service.get_cached_query_result(&queries[i % queries.len()].0))?;
                std::hint::black_box(found.ok_or("query not found")?);
                Ok(())
            },
            |(stores, _)| stores.clone(),
        )?;
        let miss = measure(
            self.reps,
            self.ops("query-miss"),
            populated,
            |(_, service), i| {
                let found = block_on(service.get_cached_query_result(&misses[i % misses.len()]))?;
                if found.is_some() {
                    return Err("a miss query hit".into());
                }
                Ok(())
            },
            |(stores, _)| stores.clone(),
        )?;
        results.insert("query-hit".into(), hit);
        results.insert("query-miss".into(), miss);
        Ok(())
    }

    fn short_hash(&self) -> Outcome<Value> {
        let keys: Vec<String> = serde_json::from_value(self.input["shortKeys"].clone())?;
        measure(
            self.reps,
            self.ops("hash-short"),
            || Ok(MemoryStores::new(self.start_ms, 7)),
            |_, i| {
                std::hint::black_box(hash::hash_text(&keys[i % keys.len()]));
                Ok(())
            },
            |stores| stores.clone(),
        )
    }

    fn pool(&self, at: usize) -> Outcome<&Value> {
        let pool = self.input["pool"].as_array().ok_or("pool")?;
        pool.get(at % pool.len()).ok_or_else(|| "empty pool".into())
    }

    fn listing(&self) -> Outcome<Value> {
        let plan = &self.input["plan"]["list"];
        let user = plan["userId"].as_str().ok_or("plan.list.userId")?;
        let count = plan["count"].as_u64().ok_or("plan.list.count")? as usize;
        let page_size = plan["pageSize"].as_u64().ok_or("plan.list.pageSize")? as u32;
        measure(
            self.reps,
            self.ops("list-500"),
            || {
                let (stores, service) = self.fresh()?;
                for i in 0..count {
                    let (memory, session) =
                        with_session(self.pool(i)?, &format!("list-{i}"), user)?;
                    stores.clock.advance_ms(1000);
                    block_on(service.archive_conversation(&memory, &session))?;
                }
                Ok((stores, service))
            },
            |(_, service), _| {
                let mut cursor: Option<String> = None;
                let mut listed = 0;
                loop {
                    let page = block_on(service.list_archived_conversations(
                        Some(user),
                        page_size,
                        cursor.as_deref(),
                    ))?;
                    listed += page.archives.len();
                    if page.list_complete {
                        break;
                    }
                    cursor = page.cursor;
                }
                if listed != count {
                    return Err(format!("listed {listed} archives, expected {count}").into());
                }
                Ok(())
            },
            |(stores, _)| stores.clone(),
        )
    }

    fn retention(&self) -> Outcome<Value> {
        let plan = &self.input["plan"]["retention"];
        let number = |name: &str| {
            plan[name]
                .as_u64()
                .map(|n| n as usize)
                .ok_or(name.to_owned())
        };
        let (embeddings, queries, archives) = (
            number("embeddings")?,
            number("queries")?,
            number("archives")?,
        );
        let vectors: Vec<Vec<f64>> =
            serde_json::from_value(self.input["embeddings"]["768"]["vectors"].clone())?;
        let query_texts = self.query_pairs()?;
        let expired = |i: usize| i % 10 < 3;
        let policy = DataRetentionPolicy {
            cache_ttl_ms: 30_000,
            ..DataRetentionPolicy::default()
        };
        let populate = || -> Outcome<(MemoryStores, Service)> {
            let stores = MemoryStores::new(self.start_ms - 100 * DAY_MS as i64, 7);
            let service = service_over(&stores, policy)?;
            for pass_expired in [true, false] {
                let at = if pass_expired { 100 } else { 1 } * DAY_MS as i64;
                stores.clock.set_ms(self.start_ms - at);
                for i in (0..archives).filter(|&i| expired(i) == pass_expired) {
                    let (memory, session) = with_session(
                        self.pool(i)?,
                        &format!("ret-{i}"),
                        &format!("user-{}", i % 50),
                    )?;
                    stores.clock.advance_ms(1);
                    block_on(service.archive_conversation(&memory, &session))?;
                }
            }
            for pass_expired in [true, false] {
                stores
                    .clock
                    .set_ms(self.start_ms - if pass_expired { 45_000 } else { 0 });
                for i in (0..embeddings).filter(|&i| expired(i) == pass_expired) {
                    let vector = &vectors[i % vectors.len()];
                    block_on(service.cache_embedding(&format!("ret-emb-{i}"), vector, None))?;
                }
                for i in (0..queries).filter(|&i| expired(i) == pass_expired) {
                    let (query, result) = &query_texts[i % query_texts.len()];
                    block_on(service.cache_frequent_query(
                        &format!("{query} ret-{i}"),
                        result,
                        None,
                    ))?;
                }
            }
            stores.clock.set_ms(self.start_ms);
            Ok((stores, service))
        };
        measure(
            self.reps.min(3),
            1,
            populate,
            |(_, service), _| {
                let run = block_on(service.enforce_retention_policy(RunBudget::default()))?;
                if !run.status.complete {
                    return Err("retention stopped early".into());
                }
                Ok(())
            },
            |(stores, _)| stores.clone(),
        )
    }

    fn backup(&self, results: &mut Map<String, Value>) -> Outcome<()> {
        let sessions = self.input["plan"]["backup"]["sessions"]
            .as_u64()
            .ok_or("plan.backup.sessions")? as usize;
        let ids: Vec<String> = (0..sessions).map(|i| format!("bk-{i}")).collect();
        let populated = || -> Outcome<(MemoryStores, Service)> {
            let (stores, service) = self.fresh()?;
            for (i, id) in ids.iter().enumerate() {
                let (memory, session) = with_session(self.pool(i)?, id, "user-bk")?;
                stores.clock.advance_ms(1);
                block_on(service.archive_conversation(&memory, &session))?;
            }
            Ok((stores, service))
        };
        let backup = measure(
            self.reps.min(3),
            1,
            populated,
            |(stores, service), _| {
                stores.clock.advance_ms(1000);
                block_on(service.create_backup(&ids, None, false))?;
                Ok(())
            },
            |(stores, _)| stores.clone(),
        )?;
        // Restore into fresh stores holding only the backup, as after losing the archives.
        let restore_setup = || -> Outcome<(MemoryStores, Service, String)> {
            let (stores, service) = populated()?;
            let backup_id = block_on(service.create_backup(&ids, None, false))?;
            let snapshot = stores.snapshot();
            let (fresh, fresh_service) = self.fresh()?;
            fresh.clock.set_ms(stores.clock.now_ms() + 1000);
            for (key, object) in snapshot
                .r2
                .iter()
                .filter(|(key, _)| key.starts_with("backups/"))
            {
                let options = ObjectPutOptions {
                    custom_metadata: object.meta.custom_metadata.clone(),
                    sha256: object.meta.sha256.clone(),
                    ..ObjectPutOptions::default()
                };
                block_on(fresh.r2.put(key, &object.body, options))
                    .map_err(|err| format!("{err:?}"))?;
            }
            for (key, value) in snapshot
                .kv
                .iter()
                .filter(|(key, _)| key.starts_with("backup_manifest:"))
            {
                let options = KvPutOptions {
                    expiration_ttl_secs: None,
                    metadata: value.metadata.clone(),
                };
                block_on(fresh.kv.put(key, &value.value, options))
                    .map_err(|err| format!("{err:?}"))?;
            }
            Ok((fresh, fresh_service, backup_id))
        };
        let restore = measure(
            self.reps.min(3),
            1,
            restore_setup,
            |(_, service, backup_id), _| {
                let restored = block_on(service.restore_from_backup(backup_id, None))?;
                if restored.len() != sessions {
                    return Err(format!("restored {} of {sessions}", restored.len()).into());
                }
                Ok(())
            },
            |(stores, _, _)| stores.clone(),
        )?;
        results.insert("backup-100".into(), backup);
        results.insert("restore-100".into(), restore);
        Ok(())
    }
}

fn run() -> Outcome<Value> {
    let args: Value = serde_json::from_str(&std::env::args().nth(1).ok_or("missing JSON args")?)?;
    let input_path = args["input"].as_str().ok_or("args.input")?;
    let input: Value = serde_json::from_slice(&std::fs::read(input_path)?)?;
    let bench = Bench {
        start_ms: input["startMs"].as_i64().ok_or("input.startMs")?,
        reps: args["reps"].as_u64().unwrap_or(5).max(1) as usize,
        ops: args["ops"].clone(),
        input,
    };
    let mut results = Map::new();
    for size in ["20", "200", "2000"] {
        let (archive, retrieve) = bench.archive(size)?;
        results.insert(format!("archive-{size}"), archive);
        results.insert(format!("retrieve-{size}"), retrieve);
    }
    bench.embeddings("768", &mut results)?;
    bench.embeddings("1536", &mut results)?;
    bench.queries(&mut results)?;
    results.insert("hash-short".into(), bench.short_hash()?);
    results.insert("list-500".into(), bench.listing()?);
    results.insert("retention-10k".into(), bench.retention()?);
    bench.backup(&mut results)?;
    Ok(
        json!({ "workloads": results, "profile": if cfg!(debug_assertions) { "debug" } else { "release" } }),
    )
}

fn main() {
    match run() {
        Ok(report) => println!("{report}"),
        Err(err) => {
            eprintln!("bench_native: {err}");
            std::process::exit(1);
        }
    }
}
