//! The data retention policy: how long conversations, cache entries and archives live, how often
//! cleanup runs and how large an archive may be; with its defaults, its validation, its parsing
//! from the Worker's environment variables and partial overrides from JavaScript.

use serde::{Deserialize, Serialize};

use crate::error::{PersistenceError, Result};
use crate::platform::JS_MAX_SAFE_INTEGER;

const HOUR_MS: u64 = 60 * 60 * 1000;
const DAY_MS: u64 = 24 * HOUR_MS;
const MIB: u64 = 1024 * 1024;

/// How long data lives and how large archives may be. All durations are milliseconds.
///
/// JSON names are the spec's: `conversationTTL`, `cacheTTL`, `archiveRetention`,
/// `cleanupInterval`, `maxArchiveSize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataRetentionPolicy {
    /// How long an active conversation is kept (default 7 days).
    #[serde(rename = "conversationTTL")]
    pub conversation_ttl_ms: u64,
    /// How long a cache entry is kept (default 24 hours).
    #[serde(rename = "cacheTTL")]
    pub cache_ttl_ms: u64,
    /// How long an archive or backup is kept (default 90 days).
    #[serde(rename = "archiveRetention")]
    pub archive_retention_ms: u64,
    /// How often cleanup runs (default 1 hour).
    #[serde(rename = "cleanupInterval")]
    pub cleanup_interval_ms: u64,
    /// Largest serialized archive, in bytes (default 50 MiB).
    #[serde(rename = "maxArchiveSize")]
    pub max_archive_size_bytes: u64,
}

impl Default for DataRetentionPolicy {
    fn default() -> Self {
        Self {
            conversation_ttl_ms: 7 * DAY_MS,
            cache_ttl_ms: 24 * HOUR_MS,
            archive_retention_ms: 90 * DAY_MS,
            cleanup_interval_ms: HOUR_MS,
            max_archive_size_bytes: 50 * MIB,
        }
    }
}

/// Checks one policy value: zero is meaningless for every field (a zero retention would delete
/// everything at once), and JavaScript must be able to hold it exactly.
fn check_value(field: &str, value: u64) -> Result<u64> {
    let reason = if value == 0 {
        "must be greater than zero".to_owned()
    } else if value > JS_MAX_SAFE_INTEGER {
        format!("exceeds Number.MAX_SAFE_INTEGER ({JS_MAX_SAFE_INTEGER})")
    } else {
        return Ok(value);
    };
    Err(PersistenceError::InvalidConfig {
        variable: field.to_owned(),
        value: value.to_string(),
        reason,
    })
}

impl DataRetentionPolicy {
    /// Checks every field; fails with `INVALID_CONFIG` naming the first bad field (by its JSON
    /// name) and its value.
    pub fn validate(&self) -> Result<()> {
        check_value("conversationTTL", self.conversation_ttl_ms)?;
        check_value("cacheTTL", self.cache_ttl_ms)?;
        check_value("archiveRetention", self.archive_retention_ms)?;
        check_value("cleanupInterval", self.cleanup_interval_ms)?;
        check_value("maxArchiveSize", self.max_archive_size_bytes)?;
        Ok(())
    }
}

/// Selects one field of a policy.
type FieldAccess = fn(&mut DataRetentionPolicy) -> &mut u64;

/// One environment variable and how its value becomes a policy field.
pub struct EnvVar {
    /// Its name in wrangler.toml `[vars]`.
    pub name: &'static str,
    /// Milliseconds (or bytes) per unit of the variable.
    unit: u64,
    field: FieldAccess,
}

impl EnvVar {
    const fn new(name: &'static str, unit: u64, field: FieldAccess) -> Self {
        EnvVar { name, unit, field }
    }
}

/// The variables of the spec's `wrangler.toml` `[vars]`, the one list of their names (the
/// TypeScript side reads it through `policyVarNames`). `MB` means MiB (2^20 bytes).
pub const ENV_VARS: [EnvVar; 5] = [
    EnvVar::new("SESSION_TTL_HOURS", HOUR_MS, |p| &mut p.conversation_ttl_ms),
    EnvVar::new("CACHE_TTL_HOURS", HOUR_MS, |p| &mut p.cache_ttl_ms),
    EnvVar::new("ARCHIVE_RETENTION_DAYS", DAY_MS, |p| {
        &mut p.archive_retention_ms
    }),
    EnvVar::new("CLEANUP_INTERVAL_HOURS", HOUR_MS, |p| {
        &mut p.cleanup_interval_ms
    }),
    EnvVar::new("MAX_ARCHIVE_SIZE_MB", MIB, |p| {
        &mut p.max_archive_size_bytes
    }),
];

/// Builds a policy from the Worker's environment variables, looked up through `lookup`:
/// `SESSION_TTL_HOURS`, `CACHE_TTL_HOURS`, `ARCHIVE_RETENTION_DAYS`, `CLEANUP_INTERVAL_HOURS`
/// and `MAX_ARCHIVE_SIZE_MB` (MiB). An absent variable keeps its default.
///
/// A value is a plain decimal number, optionally with a fraction (`"24"`, `"0.5"`), surrounded
/// by optional whitespace; it is converted exactly and rounded to the nearest millisecond (or
/// byte). Anything else fails with `INVALID_CONFIG` naming the variable and its value: an empty,
/// non-numeric, signed, exponent, `NaN` or `Infinity` value, a value that rounds to zero, or one
/// beyond `Number.MAX_SAFE_INTEGER` milliseconds (bytes).
pub fn from_env_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<DataRetentionPolicy> {
    let mut policy = DataRetentionPolicy::default();
    for var in &ENV_VARS {
        if let Some(text) = lookup(var.name) {
            *(var.field)(&mut policy) = parse_scaled_decimal(var.name, &text, var.unit)?;
        }
    }
    Ok(policy)
}

/// Parses `text` as a plain decimal and returns `round(text * unit)`, exactly.
fn parse_scaled_decimal(variable: &str, text: &str, unit: u64) -> Result<u64> {
    let invalid = |reason: String| PersistenceError::InvalidConfig {
        variable: variable.to_owned(),
        value: text.to_owned(),
        reason,
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid("is empty".to_owned()));
    }
    if trimmed.starts_with('-') {
        return Err(invalid("must not be negative".to_owned()));
    }
    let (whole, fraction) = trimmed.split_once('.').unwrap_or((trimmed, ""));
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(invalid(
            "is not a plain decimal number such as \"24\" or \"0.5\"".to_owned(),
        ));
    }
    // Leading zeros carry no value; beyond them, 30 digits keep the arithmetic in u128 exact.
    let significant = whole.trim_start_matches('0').len() + fraction.len();
    let too_large = || invalid(format!("exceeds {JS_MAX_SAFE_INTEGER} after conversion"));
    if significant > 30 {
        return Err(if whole.trim_start_matches('0').len() > 20 {
            too_large()
        } else {
            invalid("has more than 30 significant digits".to_owned())
        });
    }
    let digits = format!("{whole}{fraction}");
    let mantissa: u128 = digits.parse().map_err(|_| too_large())?;
    let scale = 10u128.pow(u32::try_from(fraction.len()).map_err(|_| too_large())?);
    // round(mantissa * unit / scale), half up; mantissa < 10^30 and unit < 10^8 fit in u128.
    let scaled = (mantissa * u128::from(unit) + scale / 2) / scale;
    if scaled == 0 {
        return Err(invalid("must be greater than zero".to_owned()));
    }
    match u64::try_from(scaled) {
        Ok(value) if value <= JS_MAX_SAFE_INTEGER => Ok(value),
        _ => Err(too_large()),
    }
}

/// A partial policy, as JavaScript passes `Partial<DataRetentionPolicy>`: each present field
/// replaces the base value. JSON names are the spec's; unknown names are rejected so a typo
/// (`cacheTtl`) does not silently keep a default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawOverrides")]
pub struct PolicyOverrides {
    /// Replaces `conversationTTL` (ms).
    pub conversation_ttl_ms: Option<u64>,
    /// Replaces `cacheTTL` (ms).
    pub cache_ttl_ms: Option<u64>,
    /// Replaces `archiveRetention` (ms).
    pub archive_retention_ms: Option<u64>,
    /// Replaces `cleanupInterval` (ms).
    pub cleanup_interval_ms: Option<u64>,
    /// Replaces `maxArchiveSize` (bytes).
    pub max_archive_size_bytes: Option<u64>,
}

/// The JSON shape of [`PolicyOverrides`], before each number is checked under its field name.
/// A present `null` is kept (as `Some(Value::Null)`) so it is rejected, not taken for absent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverrides {
    #[serde(rename = "conversationTTL", default, deserialize_with = "present")]
    conversation_ttl: Option<serde_json::Value>,
    #[serde(rename = "cacheTTL", default, deserialize_with = "present")]
    cache_ttl: Option<serde_json::Value>,
    #[serde(rename = "archiveRetention", default, deserialize_with = "present")]
    archive_retention: Option<serde_json::Value>,
    #[serde(rename = "cleanupInterval", default, deserialize_with = "present")]
    cleanup_interval: Option<serde_json::Value>,
    #[serde(rename = "maxArchiveSize", default, deserialize_with = "present")]
    max_archive_size: Option<serde_json::Value>,
}

/// Deserializes a field that is present, whatever its value (including `null`).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// A JSON number that is a whole, non-negative value JavaScript holds exactly; zero and range
/// are checked later by [`DataRetentionPolicy::validate`].
fn override_value(field: &str, value: Option<serde_json::Value>) -> Result<Option<u64>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let whole = value.as_u64().or_else(|| {
        // JS may hand over 3600000 as 3600000.0; accept integral floats only.
        let float = value.as_f64()?;
        let integral = (0.0..=JS_MAX_SAFE_INTEGER as f64).contains(&float) && float.fract() == 0.0;
        integral.then_some(float as u64)
    });
    match whole {
        Some(number) => Ok(Some(number)),
        None => Err(PersistenceError::InvalidConfig {
            variable: field.to_owned(),
            value: value.to_string(),
            reason: "must be a whole, non-negative number".to_owned(),
        }),
    }
}

impl TryFrom<RawOverrides> for PolicyOverrides {
    type Error = PersistenceError;

    fn try_from(raw: RawOverrides) -> Result<Self> {
        Ok(Self {
            conversation_ttl_ms: override_value("conversationTTL", raw.conversation_ttl)?,
            cache_ttl_ms: override_value("cacheTTL", raw.cache_ttl)?,
            archive_retention_ms: override_value("archiveRetention", raw.archive_retention)?,
            cleanup_interval_ms: override_value("cleanupInterval", raw.cleanup_interval)?,
            max_archive_size_bytes: override_value("maxArchiveSize", raw.max_archive_size)?,
        })
    }
}

impl PolicyOverrides {
    /// Parses overrides from JSON text (e.g. `JSON.stringify(partialPolicy)`).
    ///
    /// Fails with `INVALID_CONFIG`: naming the field whose value is not a whole, non-negative
    /// number; or naming `policy` when the text is not a JSON object of known fields.
    pub fn from_json(json: &str) -> Result<Self> {
        let invalid = |reason: String| PersistenceError::InvalidConfig {
            variable: "policy".to_owned(),
            value: json.chars().take(64).collect(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|err| invalid(err.to_string()))?;
        // serde would also accept an array for a struct; JavaScript passes an object.
        if !value.is_object() {
            return Err(invalid("must be a JSON object".to_owned()));
        }
        let raw = RawOverrides::deserialize(value).map_err(|err| invalid(err.to_string()))?;
        Self::try_from(raw)
    }

    /// `base` with every present override applied, validated.
    pub fn apply(&self, base: DataRetentionPolicy) -> Result<DataRetentionPolicy> {
        let policy = DataRetentionPolicy {
            conversation_ttl_ms: self.conversation_ttl_ms.unwrap_or(base.conversation_ttl_ms),
            cache_ttl_ms: self.cache_ttl_ms.unwrap_or(base.cache_ttl_ms),
            archive_retention_ms: self
                .archive_retention_ms
                .unwrap_or(base.archive_retention_ms),
            cleanup_interval_ms: self.cleanup_interval_ms.unwrap_or(base.cleanup_interval_ms),
            max_archive_size_bytes: self
                .max_archive_size_bytes
                .unwrap_or(base.max_archive_size_bytes),
        };
        policy.validate()?;
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        move |name| {
            owned
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        }
    }

    fn config_error(err: PersistenceError) -> (String, String, String) {
        assert_eq!(err.code(), "INVALID_CONFIG");
        match err {
            PersistenceError::InvalidConfig {
                variable,
                value,
                reason,
            } => (variable, value, reason),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_spec_values() {
        let policy = DataRetentionPolicy::default();
        assert_eq!(policy.conversation_ttl_ms, 604_800_000);
        assert_eq!(policy.cache_ttl_ms, 86_400_000);
        assert_eq!(policy.archive_retention_ms, 7_776_000_000);
        assert_eq!(policy.cleanup_interval_ms, 3_600_000);
        assert_eq!(policy.max_archive_size_bytes, 52_428_800);
        assert!(policy.validate().is_ok());
    }

    #[test]
    fn json_uses_the_spec_names() {
        let json = serde_json::to_string(&DataRetentionPolicy::default()).unwrap();
        assert_eq!(
            json,
            "{\"conversationTTL\":604800000,\"cacheTTL\":86400000,\
             \"archiveRetention\":7776000000,\"cleanupInterval\":3600000,\
             \"maxArchiveSize\":52428800}"
        );
        let back: DataRetentionPolicy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, DataRetentionPolicy::default());
    }

    #[test]
    fn validate_rejects_zero_and_unsafe_integers_naming_the_field() {
        let cases: [(&str, FieldAccess); 5] = [
            ("conversationTTL", |p| &mut p.conversation_ttl_ms),
            ("cacheTTL", |p| &mut p.cache_ttl_ms),
            ("archiveRetention", |p| &mut p.archive_retention_ms),
            ("cleanupInterval", |p| &mut p.cleanup_interval_ms),
            ("maxArchiveSize", |p| &mut p.max_archive_size_bytes),
        ];
        for (name, field) in cases {
            for (bad, reason) in [
                (0, "must be greater than zero"),
                (
                    JS_MAX_SAFE_INTEGER + 1,
                    "exceeds Number.MAX_SAFE_INTEGER (9007199254740991)",
                ),
            ] {
                let mut policy = DataRetentionPolicy::default();
                *field(&mut policy) = bad;
                let (variable, value, why) = config_error(policy.validate().unwrap_err());
                assert_eq!((variable.as_str(), why.as_str()), (name, reason));
                assert_eq!(value, bad.to_string());
            }
            let mut policy = DataRetentionPolicy::default();
            *field(&mut policy) = JS_MAX_SAFE_INTEGER;
            assert!(policy.validate().is_ok());
        }
    }

    #[test]
    fn env_vars_absent_keep_defaults() {
        assert_eq!(
            from_env_vars(|_| None).unwrap(),
            DataRetentionPolicy::default()
        );
    }

    #[test]
    fn env_vars_convert_units() {
        let policy = from_env_vars(env(&[
            ("SESSION_TTL_HOURS", "24"),
            ("CACHE_TTL_HOURS", "0.5"),
            ("ARCHIVE_RETENTION_DAYS", " 30 "),
            ("CLEANUP_INTERVAL_HOURS", "0.25"),
            ("MAX_ARCHIVE_SIZE_MB", "1.5"),
        ]))
        .unwrap();
        assert_eq!(
            policy,
            DataRetentionPolicy {
                conversation_ttl_ms: 86_400_000,
                cache_ttl_ms: 1_800_000,
                archive_retention_ms: 2_592_000_000,
                cleanup_interval_ms: 900_000,
                max_archive_size_bytes: 1_572_864,
            }
        );
    }

    #[test]
    fn env_var_decimals_are_exact_and_rounded_to_whole_units() {
        // 0.1 h is 360000 ms exactly (a float product would give 360000.00000000006).
        let policy = from_env_vars(env(&[
            ("CACHE_TTL_HOURS", "0.1"),
            ("MAX_ARCHIVE_SIZE_MB", "0.1"),
            ("CLEANUP_INTERVAL_HOURS", "0000.001"),
            ("SESSION_TTL_HOURS", "1."),
        ]))
        .unwrap();
        assert_eq!(policy.cache_ttl_ms, 360_000);
        // 104857.6 bytes rounds to 104858.
        assert_eq!(policy.max_archive_size_bytes, 104_858);
        assert_eq!(policy.conversation_ttl_ms, 3_600_000);
        assert_eq!(policy.cleanup_interval_ms, 3_600);
    }

    #[test]
    fn env_vars_reject_every_bad_value_class_naming_variable_and_value() {
        let not_decimal = "is not a plain decimal number such as \"24\" or \"0.5\"";
        let too_large = "exceeds 9007199254740991 after conversion";
        let cases = [
            ("CACHE_TTL_HOURS", "", "is empty"),
            ("CACHE_TTL_HOURS", "   ", "is empty"),
            ("CACHE_TTL_HOURS", "abc", not_decimal),
            ("CACHE_TTL_HOURS", "12h", not_decimal),
            ("CACHE_TTL_HOURS", "NaN", not_decimal),
            ("CACHE_TTL_HOURS", "Infinity", not_decimal),
            ("CACHE_TTL_HOURS", "inf", not_decimal),
            ("CACHE_TTL_HOURS", "1e3", not_decimal),
            ("CACHE_TTL_HOURS", "+5", not_decimal),
            ("CACHE_TTL_HOURS", ".5", not_decimal),
            ("CACHE_TTL_HOURS", "1.2.3", not_decimal),
            ("CACHE_TTL_HOURS", "1,5", not_decimal),
            ("CACHE_TTL_HOURS", "٣", not_decimal),
            ("SESSION_TTL_HOURS", "-1", "must not be negative"),
            ("SESSION_TTL_HOURS", "-0.5", "must not be negative"),
            ("ARCHIVE_RETENTION_DAYS", "0", "must be greater than zero"),
            (
                "ARCHIVE_RETENTION_DAYS",
                "0.000",
                "must be greater than zero",
            ),
            (
                "CLEANUP_INTERVAL_HOURS",
                "0.0000001",
                "must be greater than zero",
            ),
            ("ARCHIVE_RETENTION_DAYS", "104249992", too_large),
            (
                "MAX_ARCHIVE_SIZE_MB",
                "99999999999999999999999999999",
                too_large,
            ),
            ("MAX_ARCHIVE_SIZE_MB", "18446744073709551616", too_large),
            (
                "MAX_ARCHIVE_SIZE_MB",
                "1.0000000000000000000000000000001",
                "has more than 30 significant digits",
            ),
        ];
        for (name, text, reason) in cases {
            let err = from_env_vars(env(&[(name, text)])).unwrap_err();
            let (variable, value, why) = config_error(err);
            assert_eq!(
                (variable.as_str(), value.as_str(), why.as_str()),
                (name, text, reason)
            );
        }
        // The largest day count that stays within JS_MAX_SAFE_INTEGER ms is accepted.
        let policy = from_env_vars(env(&[("ARCHIVE_RETENTION_DAYS", "104249991")])).unwrap();
        assert_eq!(policy.archive_retention_ms, 104_249_991 * DAY_MS);
    }

    #[test]
    fn overrides_replace_only_present_fields() {
        let overrides =
            PolicyOverrides::from_json(r#"{"cacheTTL": 60000, "maxArchiveSize": 1048576.0}"#)
                .unwrap();
        let policy = overrides.apply(DataRetentionPolicy::default()).unwrap();
        assert_eq!(
            policy,
            DataRetentionPolicy {
                cache_ttl_ms: 60_000,
                max_archive_size_bytes: 1_048_576,
                ..DataRetentionPolicy::default()
            }
        );
        assert_eq!(
            PolicyOverrides::from_json("{}")
                .unwrap()
                .apply(DataRetentionPolicy::default())
                .unwrap(),
            DataRetentionPolicy::default()
        );
    }

    #[test]
    fn overrides_reject_bad_numbers_naming_the_field() {
        for (json, field, value) in [
            (r#"{"cacheTTL": -1}"#, "cacheTTL", "-1"),
            (r#"{"cacheTTL": 1.5}"#, "cacheTTL", "1.5"),
            (
                r#"{"archiveRetention": "90"}"#,
                "archiveRetention",
                "\"90\"",
            ),
            (r#"{"cleanupInterval": null}"#, "cleanupInterval", "null"),
            (r#"{"conversationTTL": 1e300}"#, "conversationTTL", "1e+300"),
        ] {
            let (variable, shown, reason) =
                config_error(PolicyOverrides::from_json(json).unwrap_err());
            assert_eq!(
                (variable.as_str(), reason.as_str()),
                (field, "must be a whole, non-negative number")
            );
            assert_eq!(shown, value, "{json}");
        }
        let (variable, _, reason) = config_error(
            PolicyOverrides::from_json(r#"{"maxArchiveSize": 0}"#)
                .unwrap()
                .apply(DataRetentionPolicy::default())
                .unwrap_err(),
        );
        assert_eq!(
            (variable.as_str(), reason.as_str()),
            ("maxArchiveSize", "must be greater than zero")
        );
    }

    #[test]
    fn overrides_reject_unknown_fields_and_non_objects() {
        for json in [r#"{"cacheTtl": 5}"#, "[]", "[1]", "5", "null", "{"] {
            let (variable, _, reason) = config_error(PolicyOverrides::from_json(json).unwrap_err());
            assert_eq!(variable, "policy", "{json}");
            assert!(!reason.is_empty());
        }
        let (_, _, reason) =
            config_error(PolicyOverrides::from_json(r#"{"cacheTtl": 5}"#).unwrap_err());
        assert!(reason.contains("cacheTtl"), "{reason}");
    }

    #[test]
    fn overrides_deserialize_through_serde_too() {
        let overrides: PolicyOverrides = serde_json::from_str(r#"{"cacheTTL": 5}"#).unwrap();
        assert_eq!(overrides.cache_ttl_ms, Some(5));
        let err = serde_json::from_str::<PolicyOverrides>(r#"{"cacheTTL": -5}"#).unwrap_err();
        assert!(err.to_string().contains("cacheTTL"), "{err}");
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))] // proptest runs natively only
mod proptests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn whole_hours_convert_exactly(hours in 1u64..=2_501_999_792) {
            let policy = from_env_vars(|name| {
                (name == "CACHE_TTL_HOURS").then(|| hours.to_string())
            }).unwrap();
            prop_assert_eq!(policy.cache_ttl_ms, hours * HOUR_MS);
        }

        #[test]
        fn any_env_value_is_accepted_in_range_or_rejected_by_name(text in any::<String>()) {
            match from_env_vars(|name| (name == "CACHE_TTL_HOURS").then(|| text.clone())) {
                Ok(policy) => prop_assert!(policy.validate().is_ok()),
                Err(PersistenceError::InvalidConfig { variable, value, .. }) => {
                    prop_assert_eq!(variable, "CACHE_TTL_HOURS");
                    prop_assert_eq!(value, text);
                }
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }
}
