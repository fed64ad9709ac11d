//! cacheEmbedding / getCachedEmbedding and cacheFrequentQuery / getCachedQueryResult over the
//! in-memory stores: hits, misses, logical expiry shorter than KV's 60 s minimum, key
//! separation, graceful degradation of reads, refused input, and what never reaches a key.

#[allow(dead_code)]
mod common;

use std::rc::Rc;

use serde_json::{json, Value};
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::{ServiceOptions, MAX_CACHE_TEXT_BYTES};
use supportbot_persistence::store::memory::{
    block_on, CallCounts, CallFilter, MemoryStores, OperationKind,
};
use supportbot_persistence::store::{Binding, FailureKind};

use common::{service_over, Lines, Service, T0};

const TEN_SECONDS: u64 = 10_000;

struct Harness {
    stores: MemoryStores,
    lines: Rc<Lines>,
    service: Service,
}

impl Harness {
    fn with(cache_ttl_ms: u64, options: ServiceOptions) -> Self {
        let stores = MemoryStores::new(T0, 7);
        let lines = Rc::new(Lines::default());
        let policy = DataRetentionPolicy {
            cache_ttl_ms,
            ..DataRetentionPolicy::default()
        };
        let service = service_over(&stores, lines.clone(), policy, options);
        Harness {
            stores,
            lines,
            service,
        }
    }

    fn new() -> Self {
        Self::with(TEN_SECONDS, ServiceOptions::default())
    }

    fn counts(&self) -> CallCounts {
        self.stores.faults.counts()
    }

    fn cache_embedding(
        &self,
        text: &str,
        embedding: &[f64],
        metadata: Option<Value>,
    ) -> supportbot_persistence::Result<()> {
        let metadata = metadata.map(|m| m.to_string());
        block_on(
            self.service
                .cache_embedding(text, embedding, metadata.as_deref()),
        )
    }

    fn embedding(&self, text: &str, model: Option<&str>) -> Option<Vec<f64>> {
        block_on(self.service.get_cached_embedding(text, model)).unwrap()
    }

    fn cache_query(&self, query: &str, result: &Value) -> supportbot_persistence::Result<()> {
        block_on(
            self.service
                .cache_frequent_query(query, &result.to_string(), None),
        )
    }

    fn query(&self, query: &str) -> Option<Value> {
        block_on(self.service.get_cached_query_result(query))
            .unwrap()
            .map(|text| serde_json::from_str(&text).unwrap())
    }
}

#[test]
fn embeddings_round_trip_bit_exactly() {
    let h = Harness::new();
    let embedding = [0.1, -2.5, 1e-300, 3.0];
    h.cache_embedding(
        "how do I reset my password",
        &embedding,
        Some(json!({"source": "kb"})),
    )
    .unwrap();
    let cached = h.embedding("how do I reset my password", None).unwrap();
    let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&cached), bits(&embedding));
    assert_eq!(h.embedding("how do I reset my Password", None), None);
    assert_eq!(h.counts().of(Binding::Kv, OperationKind::Put), 1);
    assert_eq!(h.counts().of(Binding::Kv, OperationKind::Get), 2);
}

#[test]
fn a_ten_second_ttl_works_despite_kvs_sixty_second_minimum() {
    let h = Harness::new();
    h.cache_embedding("t", &[1.0], None).unwrap();
    let (key, entry) = h.stores.snapshot().kv.into_iter().next().unwrap();
    assert_eq!(
        entry.metadata,
        Some(json!({"createdAt": T0, "expiresAt": T0 + 10_000}))
    );

    h.stores.clock.advance_ms(TEN_SECONDS - 1);
    assert_eq!(h.embedding("t", None), Some(vec![1.0]));
    h.stores.clock.advance_ms(1);
    assert_eq!(h.embedding("t", None), None);
    // A read never writes: KV's own 60 s TTL removes the entry.
    assert!(h.stores.snapshot().kv.contains_key(&key));
    assert_eq!(h.counts().of(Binding::Kv, OperationKind::Delete), 0);
    h.stores.clock.advance_ms(60_000 - TEN_SECONDS);
    assert!(!h.stores.snapshot().kv.contains_key(&key));
    assert!(h.lines.warnings().is_empty());
}

#[test]
fn reads_of_an_expired_entry_write_nothing_and_cannot_remove_its_replacement() {
    let h = Harness::new();
    h.cache_query("q", &json!(1)).unwrap();
    h.stores.clock.advance_ms(TEN_SECONDS);
    for _ in 0..5 {
        assert_eq!(h.query("q"), None);
    }
    assert_eq!(h.counts().of(Binding::Kv, OperationKind::Get), 5);
    assert_eq!(h.counts().total(), 6, "one put, then gets only");
    h.cache_query("q", &json!(2)).unwrap();
    assert_eq!(h.query("q"), Some(json!(2)));
    assert!(h.lines.warnings().is_empty());
}

#[test]
fn the_specs_example_hits_without_naming_the_model() {
    // ../shared/spec/data-persistence-system.md, "Embedding Caching", as written there.
    let h = Harness::new();
    let metadata = json!({"source": "knowledge_base", "model": "text-embedding-ada-002"});
    h.cache_embedding("reset password", &[0.5, -0.25], Some(metadata))
        .unwrap();
    assert_eq!(h.embedding("reset password", None), Some(vec![0.5, -0.25]));
    assert_eq!(
        h.embedding("reset password", Some("")),
        Some(vec![0.5, -0.25])
    );
    assert_eq!(
        h.embedding("reset password", Some("text-embedding-ada-002")),
        Some(vec![0.5, -0.25])
    );
    assert_eq!(h.stores.snapshot().kv.len(), 1);
}

#[test]
fn a_read_naming_a_model_never_gets_another_models_vector() {
    let h = Harness::new();
    h.cache_embedding("hello", &[1.0], Some(json!({"model": "model-a"})))
        .unwrap();
    assert_eq!(h.embedding("hello", Some("model-b")), None);
    // One entry per text: caching it for model-b replaces model-a's.
    h.cache_embedding("hello", &[2.0], Some(json!({"model": "model-b"})))
        .unwrap();
    assert_eq!(h.embedding("hello", Some("model-a")), None);
    assert_eq!(h.embedding("hello", Some("model-b")), Some(vec![2.0]));
    assert_eq!(h.embedding("hello", None), Some(vec![2.0]));
    // An entry that names no model was cached for no model in particular: a read naming one
    // cannot know it is that model's.
    h.cache_embedding("hello", &[3.0], None).unwrap();
    h.cache_embedding("bye", &[4.0], Some(json!({"model": null})))
        .unwrap();
    assert_eq!(h.embedding("hello", Some("model-b")), None);
    assert_eq!(h.embedding("bye", Some("model-b")), None);
    assert_eq!(h.embedding("hello", None), Some(vec![3.0]));
    assert_eq!(h.embedding("bye", None), Some(vec![4.0]));
    assert_eq!(h.stores.snapshot().kv.len(), 2);
}

#[test]
fn the_embedding_model_option_namespaces_keys_and_is_recorded() {
    let h = Harness::new();
    let service_for = |model: &str| {
        let options = ServiceOptions {
            default_embedding_model: Some(model.into()),
            ..ServiceOptions::default()
        };
        service_over(
            &h.stores,
            h.lines.clone(),
            DataRetentionPolicy::default(),
            options,
        )
    };
    let (model_a, model_b) = (service_for("model-a"), service_for("model-b"));
    block_on(model_a.cache_embedding("hello", &[1.0], None)).unwrap();
    block_on(model_b.cache_embedding("hello", &[2.0], None)).unwrap();
    // One service per model keeps one vector per model, each recorded for its model.
    assert_eq!(
        block_on(model_a.get_cached_embedding("hello", None)).unwrap(),
        Some(vec![1.0])
    );
    assert_eq!(
        block_on(model_b.get_cached_embedding("hello", None)).unwrap(),
        Some(vec![2.0])
    );
    assert_eq!(
        block_on(model_a.get_cached_embedding("hello", Some("model-b"))).unwrap(),
        None
    );
    // A service without the option reads another namespace.
    assert_eq!(h.embedding("hello", None), None);
    let stored = h.stores.snapshot().kv;
    assert_eq!(stored.len(), 2);
    // A call naming another model than the option's is recorded for the model it names.
    block_on(model_a.cache_embedding("bye", &[3.0], Some(r#"{"model":"model-c"}"#))).unwrap();
    assert_eq!(
        block_on(model_a.get_cached_embedding("bye", None)).unwrap(),
        None
    );
    assert_eq!(
        block_on(model_a.get_cached_embedding("bye", Some("model-c"))).unwrap(),
        Some(vec![3.0])
    );
}

#[test]
fn normalized_queries_share_an_entry() {
    let h = Harness::new();
    let result = json!({"answer": "Use the reset link.", "confidence": 0.95, "z": [1, "a"]});
    h.cache_query("  How do I RESET my password? ", &result)
        .unwrap();
    assert_eq!(h.query("how do i reset my password?"), Some(result.clone()));
    assert_eq!(h.query("How do I reset my password?"), Some(result));
    assert_eq!(h.query("how do i reset my password"), None);
}

#[test]
fn normalization_can_be_opted_out_of() {
    let options = ServiceOptions {
        normalize_queries: false,
        ..ServiceOptions::default()
    };
    let h = Harness::with(TEN_SECONDS, options);
    h.cache_query("  How do I RESET my password? ", &json!(1))
        .unwrap();
    assert_eq!(h.query("how do i reset my password?"), None);
    assert_eq!(h.query("  How do I RESET my password? "), Some(json!(1)));
}

#[test]
fn query_results_keep_their_json_and_metadata_gains_the_length() {
    let h = Harness::new();
    block_on(h.service.cache_frequent_query(
        "héllo",
        r#"{"z":1,"a":[true,null]}"#,
        Some(r#"{"confidence":0.95,"source":"support_bot"}"#),
    ))
    .unwrap();
    assert_eq!(
        block_on(h.service.get_cached_query_result("héllo"))
            .unwrap()
            .as_deref(),
        Some(r#"{"z":1,"a":[true,null]}"#)
    );
    let entry = h.stores.snapshot().kv.into_values().next().unwrap();
    let stored: Value = serde_json::from_slice(&entry.value).unwrap();
    assert_eq!(
        stored["metadata"],
        json!({"confidence": 0.95, "source": "support_bot", "queryLength": 5})
    );
}

#[test]
fn reads_degrade_to_logged_misses_when_kv_fails() {
    let h = Harness::new();
    h.cache_embedding("t", &[1.0], None).unwrap();
    h.cache_query("q", &json!(1)).unwrap();
    h.stores.faults.fail_next(
        100,
        FailureKind::Transient,
        CallFilter::call(Binding::Kv, OperationKind::Get),
    );
    assert_eq!(h.embedding("t", None), None);
    assert_eq!(h.query("q"), None);
    // The failed attempts have opened the breaker by now: still a miss, not an error.
    assert_eq!(h.embedding("t", None), None);
    let misses: Vec<Value> = h
        .lines
        .warnings()
        .into_iter()
        .filter(|w| w["msg"] == "cache read failed; serving a miss")
        .map(|w| w["code"].clone())
        .collect();
    assert_eq!(misses.len(), 3);
    assert_eq!(misses[0], "STORAGE_UNAVAILABLE");
    assert_eq!(misses[2], "CIRCUIT_OPEN");
}

#[test]
fn writes_report_storage_failures() {
    let h = Harness::new();
    h.stores.faults.fail_next(
        100,
        FailureKind::Transient,
        CallFilter::call(Binding::Kv, OperationKind::Put),
    );
    let err = h.cache_embedding("t", &[1.0], None).unwrap_err();
    assert_eq!(err.code(), "STORAGE_UNAVAILABLE");
    let err = h.cache_query("q", &json!(1)).unwrap_err();
    assert!(
        ["STORAGE_UNAVAILABLE", "CIRCUIT_OPEN"].contains(&err.code()),
        "{err}"
    );
}

#[test]
fn corrupt_entries_are_logged_misses() {
    let h = Harness::new();
    h.cache_embedding("t", &[1.0, 2.0], None).unwrap();
    h.cache_query("q", &json!({"a": 1})).unwrap();
    for key in h.stores.kv.keys() {
        assert!(h.stores.kv.corrupt(&key, 1));
    }
    assert_eq!(h.embedding("t", None), None);
    assert_eq!(h.query("q"), None);
    let warnings = h.lines.warnings();
    assert_eq!(warnings.len(), 2);
    assert!(
        warnings.iter().all(|w| w["code"] == "CORRUPT_DATA"),
        "{warnings:?}"
    );
}

#[test]
fn bad_input_is_refused_and_nothing_is_stored() {
    let h = Harness::new();
    let cases: Vec<(supportbot_persistence::Result<()>, &str)> = vec![
        (
            h.cache_embedding("t", &[1.0, f64::NAN], None),
            "embedding[1]",
        ),
        (
            h.cache_embedding("t", &[f64::INFINITY], None),
            "embedding[0]",
        ),
        (h.cache_embedding("t", &[], None), "embedding"),
        (h.cache_embedding("", &[1.0], None), "text"),
        (h.cache_embedding("t", &[1.0], Some(json!([1]))), "metadata"),
        (
            h.cache_embedding("t", &[1.0], Some(json!({"model": 7}))),
            "metadata.model",
        ),
        (
            block_on(h.service.cache_frequent_query("q", "{nope", None)),
            "result",
        ),
        (
            block_on(h.service.cache_frequent_query("q", "1", Some("\"x\""))),
            "metadata",
        ),
        (h.cache_query("   ", &json!(1)), "query"),
    ];
    for (result, field) in cases {
        let err = result.unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT", "{field}");
        assert!(
            err.to_string()
                .starts_with(&format!("invalid input: {field}:")),
            "{err}"
        );
    }
    for err in [
        block_on(h.service.get_cached_embedding("", None)).unwrap_err(),
        block_on(h.service.get_cached_query_result("")).unwrap_err(),
    ] {
        assert_eq!(err.code(), "INVALID_INPUT");
    }
    assert_eq!(h.counts().total(), 0);
}

#[test]
fn texts_up_to_the_bound_are_hashed_and_ten_megabytes_are_refused() {
    let h = Harness::new();
    let long = "word ".repeat(MAX_CACHE_TEXT_BYTES / 5);
    h.cache_embedding(&long, &[0.5], None).unwrap();
    assert_eq!(h.embedding(&long, None), Some(vec![0.5]));
    let before = h.counts().total();
    for too_long in [
        "x".repeat(MAX_CACHE_TEXT_BYTES + 1),
        "word ".repeat(2 * 1024 * 1024),
    ] {
        let err = block_on(h.service.get_cached_embedding(&too_long, None)).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        let err = h.cache_embedding(&too_long, &[0.5], None).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
    }
    assert_eq!(
        h.counts().total(),
        before,
        "refused before any storage call"
    );
}

#[test]
fn keys_values_and_logs_never_hold_the_text() {
    let h = Harness::new();
    let text = "my secret account number";
    h.cache_embedding(text, &[1.0], Some(json!({"source": "kb"})))
        .unwrap();
    h.cache_query(text, &json!("answer")).unwrap();
    h.embedding(text, None);
    h.query(text);
    let snapshot = h.stores.snapshot();
    assert_eq!(snapshot.kv.len(), 2);
    for (key, entry) in &snapshot.kv {
        assert!(
            key.starts_with("embedding:") || key.starts_with("query:"),
            "{key}"
        );
        assert!(!key.contains("secret"), "{key}");
        assert!(
            !String::from_utf8_lossy(&entry.value).contains("secret"),
            "{key}"
        );
    }
    for line in h.lines.0.borrow().iter() {
        assert!(!line.contains("secret"), "{line}");
    }
}

#[test]
fn a_busy_key_does_not_open_the_circuit_for_the_whole_binding() {
    use supportbot_persistence::service::BreakerState;
    for (kind, opens) in [
        (FailureKind::RateLimited, false),
        (FailureKind::Transient, true),
    ] {
        let h = Harness::new();
        // Two writes whose every attempt fails (4 attempts each; the breaker's threshold is 5).
        h.stores
            .faults
            .fail_next(8, kind, CallFilter::call(Binding::Kv, OperationKind::Put));
        assert!(h.cache_query("hot", &json!(1)).is_err(), "{kind:?}");
        assert!(h.cache_query("hot", &json!(1)).is_err(), "{kind:?}");
        let state = h.service.breaker_state(Binding::Kv);
        let after = h.cache_query("another key", &json!(2));
        if opens {
            assert!(matches!(state, BreakerState::Open { .. }), "{state:?}");
            assert_eq!(after.unwrap_err().code(), "CIRCUIT_OPEN");
        } else {
            assert_eq!(state, BreakerState::Closed);
            after.unwrap();
            assert_eq!(h.query("another key"), Some(json!(2)));
        }
    }
}
