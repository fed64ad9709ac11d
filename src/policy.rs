//! The data retention policy: how long conversations, cache entries and archives live, how often
//! cleanup runs and how large an archive may be; with its defaults, its validation, its parsing
//! from the Worker's environment variables and partial overrides from JavaScript.

use serde::{Deserialize, Serialize};

use crate::error::{PersistenceError, Result};
use crate::platform::JS_MAX_SAFE_INTEGER;
use crate::retention::GfsPolicy;

const HOUR_MS: u64 = 60 * 60 * 1000;
const DAY_MS: u64 = 24 * HOUR_MS;
const MIB: u64 = 1024 * 1024;

/// How long data lives, how large archives may be and which backups retention keeps. Durations
/// are milliseconds; the `backupKeep*` fields are counts (restic `forget` rules, see
/// [`crate::retention::GfsPolicy`]).
///
/// JSON names are the spec's: `conversationTTL`, `cacheTTL`, `archiveRetention`,
/// `cleanupInterval`, `maxArchiveSize`; then `backupKeepLast`, `backupKeepDaily`,
/// `backupKeepWeekly`, `backupKeepMonthly`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataRetentionPolicy {
    /// How long an active conversation is kept (default 7 days).
    #[serde(rename = "conversationTTL")]
    pub conversation_ttl_ms: u64,
    /// How long a cache entry is kept (default 24 hours).
    #[serde(rename = "cacheTTL")]
    pub cache_ttl_ms: u64,
    /// How long an archive is kept (default 90 days); also how long a backup is kept when every
    /// `backupKeep*` count is 0.
    #[serde(rename = "archiveRetention")]
    pub archive_retention_ms: u64,
    /// How often cleanup runs (default 1 hour).
    #[serde(rename = "cleanupInterval")]
    pub cleanup_interval_ms: u64,
    /// Largest serialized archive, in bytes (default 50 MiB).
    #[serde(rename = "maxArchiveSize")]
    pub max_archive_size_bytes: u64,
    /// Backups kept as the newest ones (default 0).
    #[serde(rename = "backupKeepLast")]
    pub backup_keep_last: u64,
    /// Days whose newest backup is kept (default 7).
    #[serde(rename = "backupKeepDaily")]
    pub backup_keep_daily: u64,
    /// ISO weeks whose newest backup is kept (default 4).
    #[serde(rename = "backupKeepWeekly")]
    pub backup_keep_weekly: u64,
    /// Months whose newest backup is kept (default 12).
    #[serde(rename = "backupKeepMonthly")]
    pub backup_keep_monthly: u64,
}

impl Default for DataRetentionPolicy {
    fn default() -> Self {
        Self {
            conversation_ttl_ms: 7 * DAY_MS,
            cache_ttl_ms: 24 * HOUR_MS,
            archive_retention_ms: 90 * DAY_MS,
            cleanup_interval_ms: HOUR_MS,
            max_archive_size_bytes: 50 * MIB,
            backup_keep_last: 0,
            backup_keep_daily: 7,
            backup_keep_weekly: 4,
            backup_keep_monthly: 12,
        }
    }
}

/// Largest `backupKeep*` count (the planner counts in `u32`).
const MAX_KEEP_COUNT: u64 = u32::MAX as u64;

/// What a policy field measures, which decides its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quantity {
    /// A duration or size: zero is meaningless (a zero retention would delete everything at
    /// once); at most `Number.MAX_SAFE_INTEGER`. Its variable is a decimal in `unit`s.
    Amount { unit: u64 },
    /// A number of backups: zero turns the rule off; at most [`MAX_KEEP_COUNT`]. Its variable
    /// is a whole number.
    Count,
}

/// Selects one field of a policy.
type FieldAccess = fn(&mut DataRetentionPolicy) -> &mut u64;

/// One policy field: its JSON name, its environment variable and its range.
pub struct PolicyField {
    /// Its JSON name (`Partial<DataRetentionPolicy>` in TypeScript).
    pub json: &'static str,
    /// Its name in wrangler.toml `[vars]`.
    pub name: &'static str,
    quantity: Quantity,
    field: FieldAccess,
}

const fn amount(
    json: &'static str,
    name: &'static str,
    unit: u64,
    field: FieldAccess,
) -> PolicyField {
    PolicyField {
        json,
        name,
        quantity: Quantity::Amount { unit },
        field,
    }
}

const fn count(json: &'static str, name: &'static str, field: FieldAccess) -> PolicyField {
    PolicyField {
        json,
        name,
        quantity: Quantity::Count,
        field,
    }
}

/// Every policy field, the one list of their JSON names and `[vars]` (the TypeScript side reads
/// the names through `policyVarNames`). `MB` means MiB (2^20 bytes).
pub const ENV_VARS: [PolicyField; 9] = [
    amount("conversationTTL", "SESSION_TTL_HOURS", HOUR_MS, |p| {
        &mut p.conversation_ttl_ms
    }),
    amount("cacheTTL", "CACHE_TTL_HOURS", HOUR_MS, |p| {
        &mut p.cache_ttl_ms
    }),
    amount("archiveRetention", "ARCHIVE_RETENTION_DAYS", DAY_MS, |p| {
        &mut p.archive_retention_ms
    }),
    amount("cleanupInterval", "CLEANUP_INTERVAL_HOURS", HOUR_MS, |p| {
        &mut p.cleanup_interval_ms
    }),
    amount("maxArchiveSize", "MAX_ARCHIVE_SIZE_MB", MIB, |p| {
        &mut p.max_archive_size_bytes
    }),
    count("backupKeepLast", "BACKUP_KEEP_LAST", |p| {
        &mut p.backup_keep_last
    }),
    count("backupKeepDaily", "BACKUP_KEEP_DAILY", |p| {
        &mut p.backup_keep_daily
    }),
    count("backupKeepWeekly", "BACKUP_KEEP_WEEKLY", |p| {
        &mut p.backup_keep_weekly
    }),
    count("backupKeepMonthly", "BACKUP_KEEP_MONTHLY", |p| {
        &mut p.backup_keep_monthly
    }),
];

impl PolicyField {
    /// Checks a value of this field, named `name` in the error (the JSON name or the variable).
    fn check(&self, name: &str, value: u64) -> Result<u64> {
        let reason = match self.quantity {
            Quantity::Amount { .. } if value == 0 => "must be greater than zero".to_owned(),
            Quantity::Amount { .. } if value > JS_MAX_SAFE_INTEGER => {
                format!("exceeds Number.MAX_SAFE_INTEGER ({JS_MAX_SAFE_INTEGER})")
            }
            Quantity::Count if value > MAX_KEEP_COUNT => format!("exceeds {MAX_KEEP_COUNT}"),
            _ => return Ok(value),
        };
        Err(PersistenceError::InvalidConfig {
            variable: name.to_owned(),
            value: value.to_string(),
            reason,
        })
    }

    /// Parses this field's environment variable.
    fn parse_var(&self, text: &str) -> Result<u64> {
        match self.quantity {
            Quantity::Amount { unit } => parse_scaled_decimal(self.name, text, unit),
            Quantity::Count => parse_count(self.name, text),
        }
    }
}

impl DataRetentionPolicy {
    /// Checks every field; fails with `INVALID_CONFIG` naming the first bad field (by its JSON
    /// name) and its value.
    pub fn validate(&self) -> Result<()> {
        let mut copy = *self;
        for field in &ENV_VARS {
            field.check(field.json, *(field.field)(&mut copy))?;
        }
        Ok(())
    }

    /// The backup rotation rules (restic `forget`); all zero means backups follow
    /// `archiveRetention` instead.
    pub fn gfs(&self) -> GfsPolicy {
        // `validate` keeps every count within u32.
        let count = |value: u64| u32::try_from(value).unwrap_or(u32::MAX);
        GfsPolicy {
            keep_last: count(self.backup_keep_last),
            keep_daily: count(self.backup_keep_daily),
            keep_weekly: count(self.backup_keep_weekly),
            keep_monthly: count(self.backup_keep_monthly),
        }
    }
}

/// Builds a policy from the Worker's environment variables, looked up through `lookup`: the
/// names of [`ENV_VARS`]. An absent variable keeps its default.
///
/// A duration or size is a plain decimal number, optionally with a fraction (`"24"`, `"0.5"`),
/// surrounded by optional whitespace; it is converted exactly and rounded to the nearest
/// millisecond (or byte). A `BACKUP_KEEP_*` count is a whole number, 0 included. Anything else
/// fails with `INVALID_CONFIG` naming the variable and its value: an empty, non-numeric, signed,
/// exponent, `NaN` or `Infinity` value, a duration that rounds to zero, a fractional count, or
/// a value out of range.
pub fn from_env_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<DataRetentionPolicy> {
    let mut policy = DataRetentionPolicy::default();
    for var in &ENV_VARS {
        if let Some(text) = lookup(var.name) {
            *(var.field)(&mut policy) = var.parse_var(&text)?;
        }
    }
    Ok(policy)
}

/// The `INVALID_CONFIG` error of variable `variable` whose value `text` fails for `reason`.
fn invalid_var(variable: &str, text: &str, reason: String) -> PersistenceError {
    PersistenceError::InvalidConfig {
        variable: variable.to_owned(),
        value: text.to_owned(),
        reason,
    }
}

/// `text` without surrounding whitespace, refused when empty or negative.
fn unsigned_text<'a>(variable: &str, text: &'a str) -> Result<&'a str> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid_var(variable, text, "is empty".to_owned()));
    }
    if trimmed.starts_with('-') {
        return Err(invalid_var(
            variable,
            text,
            "must not be negative".to_owned(),
        ));
    }
    Ok(trimmed)
}

/// Parses a `BACKUP_KEEP_*` value: a whole, non-negative number within [`MAX_KEEP_COUNT`].
fn parse_count(variable: &str, text: &str) -> Result<u64> {
    let invalid = |reason: String| invalid_var(variable, text, reason);
    let trimmed = unsigned_text(variable, text)?;
    if !trimmed.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(invalid("is not a whole number such as \"7\"".to_owned()));
    }
    match trimmed.trim_start_matches('0').parse::<u64>() {
        Ok(value) if value <= MAX_KEEP_COUNT => Ok(value),
        // All zeros trims to nothing.
        Err(_) if trimmed.bytes().all(|byte| byte == b'0') => Ok(0),
        _ => Err(invalid(format!("exceeds {MAX_KEEP_COUNT}"))),
    }
}

/// Parses `text` as a plain decimal and returns `round(text * unit)`, exactly.
fn parse_scaled_decimal(variable: &str, text: &str, unit: u64) -> Result<u64> {
    let invalid = |reason: String| invalid_var(variable, text, reason);
    let trimmed = unsigned_text(variable, text)?;
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyOverrides {
    /// `(index into ENV_VARS, value)` of every present field.
    values: Vec<(usize, u64)>,
}

/// A JSON number that is a whole, non-negative value JavaScript holds exactly; zero and range
/// are checked later by [`DataRetentionPolicy::validate`].
fn override_value(field: &str, value: &serde_json::Value) -> Result<u64> {
    let whole = value.as_u64().or_else(|| {
        // JS may hand over 3600000 as 3600000.0; accept integral floats only.
        let float = value.as_f64()?;
        let integral = (0.0..=JS_MAX_SAFE_INTEGER as f64).contains(&float) && float.fract() == 0.0;
        integral.then_some(float as u64)
    });
    whole.ok_or_else(|| PersistenceError::InvalidConfig {
        variable: field.to_owned(),
        value: value.to_string(),
        reason: "must be a whole, non-negative number".to_owned(),
    })
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
        let serde_json::Value::Object(fields) = value else {
            return Err(invalid("must be a JSON object".to_owned()));
        };
        let mut values = Vec::with_capacity(fields.len());
        for (name, value) in &fields {
            let Some(index) = ENV_VARS.iter().position(|field| field.json == name) else {
                let known: Vec<&str> = ENV_VARS.iter().map(|field| field.json).collect();
                return Err(invalid(format!(
                    "unknown field `{name}`, expected one of {}",
                    known.join(", ")
                )));
            };
            values.push((index, override_value(name, value)?));
        }
        Ok(Self { values })
    }

    /// The override of the field with JSON name `json`, if present.
    pub fn get(&self, json: &str) -> Option<u64> {
        let index = ENV_VARS.iter().position(|field| field.json == json)?;
        self.values
            .iter()
            .find(|(at, _)| *at == index)
            .map(|(_, value)| *value)
    }

    /// `base` with every present override applied, validated.
    pub fn apply(&self, base: DataRetentionPolicy) -> Result<DataRetentionPolicy> {
        let mut policy = base;
        for (index, value) in &self.values {
            *(ENV_VARS[*index].field)(&mut policy) = *value;
        }
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
             \"maxArchiveSize\":52428800,\"backupKeepLast\":0,\"backupKeepDaily\":7,\
             \"backupKeepWeekly\":4,\"backupKeepMonthly\":12}"
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
            assert!(ENV_VARS.iter().any(|var| var.json == name));
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
    fn backup_keep_counts_allow_zero_and_default_to_daily_weekly_monthly() {
        let defaults = DataRetentionPolicy::default().gfs();
        assert_eq!(
            (
                defaults.keep_last,
                defaults.keep_daily,
                defaults.keep_weekly,
                defaults.keep_monthly
            ),
            (0, 7, 4, 12)
        );
        let policy = from_env_vars(env(&[
            ("BACKUP_KEEP_LAST", "3"),
            ("BACKUP_KEEP_DAILY", "0"),
            ("BACKUP_KEEP_WEEKLY", " 000 "),
            ("BACKUP_KEEP_MONTHLY", "4294967295"),
        ]))
        .unwrap();
        assert!(policy.validate().is_ok());
        let gfs = policy.gfs();
        assert_eq!(
            (
                gfs.keep_last,
                gfs.keep_daily,
                gfs.keep_weekly,
                gfs.keep_monthly
            ),
            (3, 0, 0, u32::MAX)
        );
        let zero = PolicyOverrides::from_json(r#"{"backupKeepDaily": 0, "backupKeepLast": 2.0}"#)
            .unwrap()
            .apply(DataRetentionPolicy::default())
            .unwrap();
        assert_eq!((zero.backup_keep_daily, zero.backup_keep_last), (0, 2));
    }

    #[test]
    fn backup_keep_counts_reject_negative_fractional_and_huge_values_by_name() {
        let cases = [
            ("BACKUP_KEEP_DAILY", "-1", "must not be negative"),
            (
                "BACKUP_KEEP_WEEKLY",
                "1.5",
                "is not a whole number such as \"7\"",
            ),
            (
                "BACKUP_KEEP_MONTHLY",
                "12.0",
                "is not a whole number such as \"7\"",
            ),
            ("BACKUP_KEEP_LAST", "", "is empty"),
            (
                "BACKUP_KEEP_LAST",
                "seven",
                "is not a whole number such as \"7\"",
            ),
            ("BACKUP_KEEP_LAST", "4294967296", "exceeds 4294967295"),
            (
                "BACKUP_KEEP_LAST",
                "99999999999999999999999",
                "exceeds 4294967295",
            ),
        ];
        for (name, text, reason) in cases {
            let (variable, value, why) =
                config_error(from_env_vars(env(&[(name, text)])).unwrap_err());
            assert_eq!(
                (variable.as_str(), value.as_str(), why.as_str()),
                (name, text, reason)
            );
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
                ..DataRetentionPolicy::default()
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
            (r#"{"backupKeepDaily": -1}"#, "backupKeepDaily", "-1"),
            (r#"{"backupKeepWeekly": 0.5}"#, "backupKeepWeekly", "0.5"),
        ] {
            let (variable, shown, reason) =
                config_error(PolicyOverrides::from_json(json).unwrap_err());
            assert_eq!(
                (variable.as_str(), reason.as_str()),
                (field, "must be a whole, non-negative number")
            );
            assert_eq!(shown, value, "{json}");
        }
        for (json, field, why) in [
            (
                r#"{"maxArchiveSize": 0}"#,
                "maxArchiveSize",
                "must be greater than zero",
            ),
            (
                r#"{"backupKeepMonthly": 4294967296}"#,
                "backupKeepMonthly",
                "exceeds 4294967295",
            ),
        ] {
            let (variable, _, reason) = config_error(
                PolicyOverrides::from_json(json)
                    .unwrap()
                    .apply(DataRetentionPolicy::default())
                    .unwrap_err(),
            );
            assert_eq!((variable.as_str(), reason.as_str()), (field, why));
        }
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
