//! The one reader of JSON objects, field by field, for every format and for caller input:
//! each field is removed as it is read, so what remains is the object's unknown fields in
//! their original order, and every error names the field's path (`messages[3].role`).
//!
//! Members are either slices of the document text (`&RawValue`: archives and caller input,
//! which may be tens of MB and are never built into a `Value` tree) or parsed `Value`s
//! (backups and cache entries, which have always been parsed whole first, so they accept
//! exactly what serde_json accepts). Each kind keeps the wording its formats' errors have
//! always had (see [`Member::CONVENTIONS`]).
//!
//! A value kept verbatim is written back exactly as serde_json writes the value it holds (what
//! the `Value`-based reader of earlier versions wrote), so archives do not depend on which
//! reader produced them: text already in that form is borrowed, anything else (whitespace,
//! exponents, escapes serde_json would not write) is rewritten through a `Value` once.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{
    self, Deserialize, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess,
    SeqAccess, Visitor,
};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::PersistenceError;

/// A JSON value kept as text, in the form serde_json writes it (see [`verbatim`]).
#[derive(Debug, Clone)]
pub struct Verbatim<'a>(Cow<'a, RawValue>);

impl Verbatim<'_> {
    /// The JSON text.
    pub fn raw(&self) -> &RawValue {
        &self.0
    }
}

impl PartialEq for Verbatim<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Serialize for Verbatim<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// What is wrong with one value of a JSON document, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the value, e.g. `memory.messages[3].timestamp`.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The error as `CORRUPT_DATA` of the stored object `what`.
    pub fn corrupt(self, what: &str) -> PersistenceError {
        PersistenceError::corrupt(what, format!("{}: {}", self.path, self.reason))
    }

    /// The error as `INVALID_INPUT` naming the field.
    pub fn invalid_input(self) -> PersistenceError {
        PersistenceError::invalid_input(self.path, self.reason)
    }
}

/// The JSON type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `null`.
    Null,
    /// `true` or `false`.
    Boolean,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl Kind {
    /// The kind of the valid JSON text `raw`.
    pub fn of_raw(raw: &RawValue) -> Self {
        match raw.get().as_bytes().first() {
            Some(b'{') => Self::Object,
            Some(b'[') => Self::Array,
            Some(b'"') => Self::String,
            Some(b't' | b'f') => Self::Boolean,
            Some(b'n') => Self::Null,
            _ => Self::Number,
        }
    }

    /// The kind of `value`.
    pub fn of_value(value: &Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(_) => Self::Boolean,
            Value::Number(_) => Self::Number,
            Value::String(_) => Self::String,
            Value::Array(_) => Self::Array,
            Value::Object(_) => Self::Object,
        }
    }

    /// Its name: `number`.
    pub fn name(self) -> &'static str {
        self.names().0
    }

    /// Its name with an article: `a number` (but `null`).
    pub fn with_article(self) -> &'static str {
        self.names().1
    }

    fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::Null => ("null", "null"),
            Self::Boolean => ("boolean", "a boolean"),
            Self::Number => ("number", "a number"),
            Self::String => ("string", "a string"),
            Self::Array => ("array", "an array"),
            Self::Object => ("object", "an object"),
        }
    }
}

/// How a format reads `null` and words what is wrong with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conventions {
    /// Archives and caller input: `null` counts as absent; "is missing", "must be a string,
    /// found number", a number quoted as written.
    Archive,
    /// Backups and cache entries: `null` is a value; "missing", "must be a string, not a
    /// number", a number quoted as serde_json writes it.
    Record,
}

impl Conventions {
    /// Why a required value is absent.
    pub fn missing(self) -> &'static str {
        match self {
            Self::Archive => "is missing",
            Self::Record => "missing",
        }
    }

    /// Why a value of kind `found` is not `wanted` (e.g. "a string").
    fn wrong_kind(self, wanted: &str, found: Kind) -> String {
        match self {
            Self::Archive => format!("must be {wanted}, found {}", found.name()),
            Self::Record => format!("must be {wanted}, not {}", found.with_article()),
        }
    }

    /// Why the value written `found` is not `wanted` (e.g. "a non-negative integer").
    fn wrong_value(self, wanted: &str, found: &str) -> String {
        match self {
            Self::Archive => format!("must be {wanted}, found {found}"),
            Self::Record => format!("must be {wanted}, not {found}"),
        }
    }
}

/// A value as [`Fields`] takes it apart.
pub trait Member<'a>: Sized {
    /// How problems with members of this kind are worded, and whether `null` is absent.
    const CONVENTIONS: Conventions;
    /// Its JSON type.
    fn kind(&self) -> Kind;
    /// The value as a `T` (a number type), if it is one.
    fn number<T: DeserializeOwned>(&self) -> Option<T>;
    /// Its JSON text, for error messages.
    fn text(&self) -> Cow<'_, str>;
    /// The text of a string (fails on escapes that are no text, such as a lone surrogate).
    fn into_str(self) -> Result<Cow<'a, str>, String>;
    /// The members of an object, or its kind.
    fn into_item(self) -> Result<Item<'a, Self>, String>;
    /// The items of an array.
    fn into_items(self) -> Result<Vec<Self>, String>;
}

/// Why text is not JSON.
pub fn not_json(err: serde_json::Error) -> String {
    format!("is not valid JSON: {err}")
}

impl<'a> Member<'a> for &'a RawValue {
    const CONVENTIONS: Conventions = Conventions::Archive;

    fn kind(&self) -> Kind {
        Kind::of_raw(self)
    }

    fn number<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(self.get()).ok()
    }

    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.get())
    }

    fn into_str(self) -> Result<Cow<'a, str>, String> {
        parse_str(self).map_err(not_json)
    }

    fn into_item(self) -> Result<Item<'a, Self>, String> {
        parse_item(self.get()).map_err(not_json)
    }

    fn into_items(self) -> Result<Vec<Self>, String> {
        serde_json::from_str(self.get()).map_err(not_json)
    }
}

impl<'a> Member<'a> for Value {
    const CONVENTIONS: Conventions = Conventions::Record;

    fn kind(&self) -> Kind {
        Kind::of_value(self)
    }

    fn number<T: DeserializeOwned>(&self) -> Option<T> {
        T::deserialize(self).ok()
    }

    fn text(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_string())
    }

    fn into_str(self) -> Result<Cow<'a, str>, String> {
        match self {
            Value::String(text) => Ok(Cow::Owned(text)),
            other => Err(Conventions::Record.wrong_kind("a string", other.kind())),
        }
    }

    fn into_item(self) -> Result<Item<'a, Self>, String> {
        Ok(match self {
            Value::Object(map) => Item::Object(
                map.into_iter()
                    .map(|(name, value)| (Cow::Owned(name), value))
                    .collect(),
            ),
            other => Item::Other(other.kind()),
        })
    }

    fn into_items(self) -> Result<Vec<Self>, String> {
        match self {
            Value::Array(items) => Ok(items),
            other => Err(Conventions::Record.wrong_kind("an array", other.kind())),
        }
    }
}

/// A string borrowed from the document when it has no escapes.
pub(crate) struct CowStr<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// Parses a JSON string value (its text, quotes included).
pub fn parse_str(raw: &RawValue) -> Result<Cow<'_, str>, serde_json::Error> {
    serde_json::from_str::<CowStr<'_>>(raw.get()).map(|text| text.0)
}

/// Objects with more members than this index them to find repeated names.
const LINEAR_LOOKUP_MAX: usize = 16;

/// The members of one JSON object in document order.
type Members<'a, M> = Vec<(Cow<'a, str>, M)>;

/// A JSON value read as the members of an object, or the kind of a value that is not one.
pub enum Item<'a, M> {
    /// The members of an object.
    Object(Members<'a, M>),
    /// The JSON type of anything else.
    Other(Kind),
}

/// Collects an object's members; a repeated name keeps its first position and its last value
/// (as `serde_json::Map` with `preserve_order` does).
fn collect_members<'de, A: MapAccess<'de>>(
    mut map: A,
) -> Result<Members<'de, &'de RawValue>, A::Error> {
    let mut members: Members<'de, &'de RawValue> = Vec::new();
    let mut index: HashMap<Cow<'de, str>, usize> = HashMap::new();
    while let Some(CowStr(name)) = map.next_key::<CowStr<'de>>()? {
        let value: &'de RawValue = map.next_value()?;
        let position = if members.len() <= LINEAR_LOOKUP_MAX {
            members.iter().position(|(known, _)| *known == name)
        } else {
            if index.is_empty() {
                index = members
                    .iter()
                    .enumerate()
                    .map(|(position, (known, _))| (known.clone(), position))
                    .collect();
            }
            index.get(&name).copied()
        };
        match position.and_then(|position| members.get_mut(position)) {
            Some(member) => member.1 = value,
            None => {
                if !index.is_empty() {
                    index.insert(name.clone(), members.len());
                }
                members.push((name, value));
            }
        }
    }
    Ok(members)
}

impl<'de> Deserialize<'de> for Item<'de, &'de RawValue> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = Item<'de, &'de RawValue>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                collect_members(map).map(Item::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Item::Other(Kind::Array))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Item::Other(Kind::String))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Item::Other(Kind::Boolean))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Item::Other(Kind::Number))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Item::Other(Kind::Number))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Item::Other(Kind::Number))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Item::Other(Kind::Null))
            }
        }
        deserializer.deserialize_any(ItemVisitor)
    }
}

/// Reads the text of a whole JSON document, in one pass, as an [`Item`].
pub fn parse_item(text: &str) -> Result<Item<'_, &RawValue>, serde_json::Error> {
    serde_json::from_str(text)
}

/// Reads the object items of an array in one pass, handing each to `read` as it is parsed
/// (the first [`FieldError`] stops the parse and is kept in `failure`); its value is the
/// number of items. One instance for every caller (`read` is a trait object): each instance of
/// a serde visitor carries its own copy of the JSON parser, which weighs in the `.wasm`.
struct ObjectItems<'p, 'de> {
    path: &'p str,
    read: &'p mut dyn FnMut(Fields<'de>) -> Result<(), FieldError>,
    failure: &'p mut Option<FieldError>,
}

impl<'de> DeserializeSeed<'de> for ObjectItems<'_, 'de> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ObjectItems<'_, 'de> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut count = 0_usize;
        while let Some(item) = seq.next_element::<Item<'de, &'de RawValue>>()? {
            let path = format!("{}[{count}]", self.path);
            match Fields::from_item(path, item).and_then(&mut *self.read) {
                Ok(()) => count += 1,
                Err(err) => {
                    *self.failure = Some(err);
                    return Err(de::Error::custom("an item is not what it must be"));
                }
            }
        }
        Ok(count)
    }
}

/// The fields of one JSON object, each removed as it is read.
pub struct Fields<'a, M = &'a RawValue> {
    path: String,
    members: Members<'a, M>,
}

/// The path of member `name` of the value at `path` (just `name` at the document root, whose
/// path is empty).
fn member_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// `member`, which must be of JSON type `kind`, converted by `convert` (which says what is
/// wrong with one it cannot convert); `path` names it in errors.
pub fn convert_member<'a, M: Member<'a>, T>(
    member: M,
    kind: Kind,
    path: impl FnOnce() -> String,
    convert: impl FnOnce(M) -> Result<T, String>,
) -> Result<T, FieldError> {
    let found = member.kind();
    let converted = if found == kind {
        convert(member)
    } else {
        Err(M::CONVENTIONS.wrong_kind(kind.with_article(), found))
    };
    converted.map_err(|reason| FieldError::new(path(), reason))
}

impl<'a, M: Member<'a>> Fields<'a, M> {
    /// Starts reading `member`, which must be an object; `path` names it in errors.
    pub fn of(path: impl Into<String>, member: M) -> Result<Self, FieldError> {
        let path = path.into();
        match member.into_item() {
            Ok(item) => Self::from_item(path, item),
            Err(reason) => Err(FieldError::new(path, reason)),
        }
    }

    /// Starts reading a parsed `item`, which must be an object; `path` names it in errors.
    pub fn from_item(path: impl Into<String>, item: Item<'a, M>) -> Result<Self, FieldError> {
        let path = path.into();
        match item {
            Item::Object(members) => Ok(Self { path, members }),
            Item::Other(found) => {
                let reason = M::CONVENTIONS.wrong_kind("an object", found);
                Err(FieldError::new(path, reason))
            }
        }
    }

    /// The path of this object.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of field `name` of this object.
    pub fn path_of(&self, name: &str) -> String {
        member_path(&self.path, name)
    }

    /// Removes field `name`, if present (an explicit `null` counts as absent in archives).
    pub fn member(&mut self, name: &str) -> Option<M> {
        let position = self.members.iter().position(|(known, _)| known == name)?;
        let (_, value) = self.members.remove(position);
        match M::CONVENTIONS {
            Conventions::Archive if value.kind() == Kind::Null => None,
            _ => Some(value),
        }
    }

    /// Removes field `name` and checks that it is absent (this library writes it itself).
    pub fn refuse(&mut self, name: &str, why: &str) -> Result<(), FieldError> {
        match self.member(name) {
            Some(_) => Err(FieldError::new(self.path_of(name), why)),
            None => Ok(()),
        }
    }

    /// A required field.
    pub fn required(&mut self, name: &str) -> Result<M, FieldError> {
        self.member(name)
            .ok_or_else(|| FieldError::new(self.path_of(name), M::CONVENTIONS.missing()))
    }

    /// A required field of JSON type `kind`, converted by `convert` (which says what is wrong
    /// with one it cannot convert).
    pub fn convert<T>(
        &mut self,
        name: &str,
        kind: Kind,
        convert: impl FnOnce(M) -> Result<T, String>,
    ) -> Result<T, FieldError> {
        let member = self.required(name)?;
        convert_member(member, kind, || self.path_of(name), convert)
    }

    /// An optional field of JSON type `kind`, converted (see [`Fields::convert`]).
    pub fn optional_convert<T>(
        &mut self,
        name: &str,
        kind: Kind,
        convert: impl FnOnce(M) -> Result<T, String>,
    ) -> Result<Option<T>, FieldError> {
        self.member(name)
            .map(|member| convert_member(member, kind, || self.path_of(name), convert))
            .transpose()
    }

    /// A required string.
    pub fn string(&mut self, name: &str) -> Result<Cow<'a, str>, FieldError> {
        self.convert(name, Kind::String, M::into_str)
    }

    /// An optional string.
    pub fn optional_string(&mut self, name: &str) -> Result<Option<Cow<'a, str>>, FieldError> {
        self.optional_convert(name, Kind::String, M::into_str)
    }

    /// A required object, as it was given.
    pub fn object(&mut self, name: &str) -> Result<M, FieldError> {
        self.convert(name, Kind::Object, Ok)
    }

    /// A required object, to read field by field.
    pub fn fields(&mut self, name: &str) -> Result<Fields<'a, M>, FieldError> {
        let member = self.object(name)?;
        Fields::of(self.path_of(name), member)
    }

    /// A required number read as `T`; `wanted` says what it must be (e.g. "an integer").
    pub fn number<T: DeserializeOwned>(
        &mut self,
        name: &str,
        wanted: &str,
    ) -> Result<T, FieldError> {
        let member = self.required(name)?;
        self.number_of(name, &member, wanted)
    }

    /// An optional number read as `T` (see [`Fields::number`]).
    pub fn optional_number<T: DeserializeOwned>(
        &mut self,
        name: &str,
        wanted: &str,
    ) -> Result<Option<T>, FieldError> {
        self.member(name)
            .map(|member| self.number_of(name, &member, wanted))
            .transpose()
    }

    /// A required non-negative integer.
    pub fn count(&mut self, name: &str) -> Result<u64, FieldError> {
        self.number(name, "a non-negative integer")
    }

    fn number_of<T: DeserializeOwned>(
        &self,
        name: &str,
        member: &M,
        wanted: &str,
    ) -> Result<T, FieldError> {
        member.number().ok_or_else(|| {
            let reason = M::CONVENTIONS.wrong_value(wanted, &member.text());
            FieldError::new(self.path_of(name), reason)
        })
    }

    /// A required array, each item read by `read` with its path.
    pub fn items<T>(
        &mut self,
        name: &str,
        mut read: impl FnMut(String, M) -> Result<T, FieldError>,
    ) -> Result<Vec<T>, FieldError> {
        let items = self.convert(name, Kind::Array, M::into_items)?;
        let path = self.path_of(name);
        items
            .into_iter()
            .enumerate()
            .map(|(index, item)| (format!("{path}[{index}]"), item))
            .map(|(path, item)| read(path, item))
            .collect()
    }

    /// A required array of strings.
    pub fn strings(&mut self, name: &str) -> Result<Vec<Cow<'a, str>>, FieldError> {
        self.items(name, |path, item| {
            convert_member(item, Kind::String, || path, M::into_str)
        })
    }
}

/// `raw`, which must be an array of objects, read item by item by `read` as each is parsed
/// (so that the members of all items are never held at once); `path` names the array.
pub fn object_items<'a, T>(
    path: impl Into<String>,
    raw: &'a RawValue,
    mut read: impl FnMut(Fields<'a>) -> Result<T, FieldError>,
) -> Result<Vec<T>, FieldError> {
    let path = path.into();
    let raw = convert_member(raw, Kind::Array, || path.clone(), Ok)?;
    let mut items = Vec::new();
    let mut failure = None;
    let seed = ObjectItems {
        path: &path,
        read: &mut |fields| {
            items.push(read(fields)?);
            Ok(())
        },
        failure: &mut failure,
    };
    let parsed = seed.deserialize(&mut serde_json::Deserializer::from_str(raw.get()));
    match (parsed, failure) {
        (_, Some(err)) => Err(err),
        (Ok(_), None) => Ok(items),
        (Err(err), None) => Err(FieldError::new(path, not_json(err))),
    }
}

impl<'a> Fields<'a> {
    /// A required array of objects, each read by `read` as soon as it is parsed (so that the
    /// members of all items are never held at once).
    pub fn object_items<T>(
        &mut self,
        name: &str,
        read: impl FnMut(Fields<'a>) -> Result<T, FieldError>,
    ) -> Result<Vec<T>, FieldError> {
        let raw = self.required(name)?;
        object_items(self.path_of(name), raw, read)
    }

    /// The fields not read, in their original order, each converted by `keep` (which says
    /// what is wrong with one it cannot keep).
    pub fn rest<T>(
        self,
        keep: impl Fn(&'a RawValue) -> Result<T, String>,
    ) -> Result<Vec<(Cow<'a, str>, T)>, FieldError> {
        let path = self.path;
        self.members
            .into_iter()
            .map(|(name, raw)| match keep(raw) {
                Ok(value) => Ok((name, value)),
                Err(reason) => Err(FieldError::new(member_path(&path, &name), reason)),
            })
            .collect()
    }
}

/// `value` written as a kept value (owned, in the form [`verbatim`] keeps).
pub fn to_verbatim<T: Serialize + ?Sized>(value: &T) -> Result<Verbatim<'static>, String> {
    serde_json::value::to_raw_value(value)
        .map(|raw| Verbatim(Cow::Owned(raw)))
        .map_err(|err| err.to_string())
}

/// `raw` as it is kept: borrowed when its text is what serde_json writes for it, else
/// rewritten in that form. Fails (with the reason) on text serde_json cannot read as a value,
/// such as a lone UTF-16 surrogate escape.
pub fn verbatim(raw: &RawValue) -> Result<Verbatim<'_>, String> {
    if is_canonical(raw.get().as_bytes()) {
        return Ok(Verbatim(Cow::Borrowed(raw)));
    }
    serde_json::from_str::<Value>(raw.get())
        .and_then(|value| serde_json::value::to_raw_value(&value))
        .map(|raw| Verbatim(Cow::Owned(raw)))
        .map_err(not_json)
}

/// Whether valid JSON text is exactly what serde_json's compact writer gives for the value it
/// holds: no whitespace; integers of at most 18 digits (longer ones may pass through `f64`);
/// other numbers as serde_json writes the `f64` it reads them as (the shortest text that
/// reads back the same, e.g. `2.5`, `1.0`, `1e-7`); string escapes only where serde_json
/// escapes, spelled as it spells them.
fn is_canonical(text: &[u8]) -> bool {
    let mut at = 0;
    while let Some(&byte) = text.get(at) {
        let end = match byte {
            b'"' => canonical_string_end(text, at + 1),
            b' ' | b'\t' | b'\n' | b'\r' => None,
            b'-' | b'0'..=b'9' => canonical_number_end(text, at),
            _ => Some(at + 1),
        };
        match end {
            Some(end) => at = end,
            None => return false,
        }
    }
    true
}

/// Where the first `"` or `\\` at or after `from` is, eight bytes at a time (string content is
/// most of a document).
fn next_quote_or_backslash(text: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    let has_byte = |word: u64, byte: u8| {
        let matched = word ^ (ONES * u64::from(byte));
        matched.wrapping_sub(ONES) & !matched & (ONES << 7)
    };
    let rest = text.get(from..)?;
    let mut words = rest.chunks_exact(8);
    let mut offset = from;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().ok()?);
        let found = has_byte(word, b'"') | has_byte(word, b'\\');
        if found != 0 {
            // The lowest flagged byte is a true match (a borrow only flags bytes above one).
            return Some(offset + found.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    let tail = words
        .remainder()
        .iter()
        .position(|byte| matches!(byte, b'"' | b'\\'));
    tail.map(|at| offset + at)
}

/// Where the string whose content starts at `from` ends (after its closing quote), if its
/// escapes are spelled as serde_json spells them.
fn canonical_string_end(text: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        at = next_quote_or_backslash(text, at)?;
        if text.get(at) == Some(&b'"') {
            return Some(at + 1);
        }
        at += match *text.get(at + 1)? {
            b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
            b'u' => {
                let [b'0', b'0', high @ b'0'..=b'1', low] = *text.get(at + 2..at + 6)? else {
                    return None;
                };
                let low = match low {
                    b'0'..=b'9' => low - b'0',
                    b'a'..=b'f' => low - b'a' + 10,
                    _ => return None,
                };
                // serde_json writes these five as \b \t \n \f \r.
                if matches!((high - b'0') * 16 + low, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                    return None;
                }
                6
            }
            _ => return None,
        };
    }
}

/// Where the number starting at `from` ends, if serde_json writes the value it reads as this
/// text.
fn canonical_number_end(text: &[u8], from: usize) -> Option<usize> {
    let rest = text.get(from..)?;
    let length = rest
        .iter()
        .position(|byte| !matches!(byte, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
        .unwrap_or(rest.len());
    let number = rest.get(..length)?;
    let digits = number.strip_prefix(b"-").unwrap_or(number);
    if !digits.iter().any(|byte| matches!(byte, b'.' | b'e' | b'E')) {
        // "-0" is read as the float -0.0.
        let negative_zero = digits.len() < number.len() && digits.first() == Some(&b'0');
        return (digits.len() <= 18 && !negative_zero).then_some(from + length);
    }
    let value: f64 = serde_json::from_slice(number).ok()?;
    // The longest text serde_json writes for an f64 (ryu's) is 24 bytes.
    let mut written = [0_u8; 32];
    let mut unwritten = &mut written[..];
    serde_json::to_writer(&mut unwritten, &value).ok()?;
    let left = unwritten.len();
    (written.get(..written.len() - left)? == number).then_some(from + length)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).unwrap()
    }

    /// What the `Value`-based reader wrote for `text`.
    fn through_value(text: &str) -> String {
        serde_json::from_str::<Value>(text).unwrap().to_string()
    }

    #[test]
    fn kept_values_are_written_as_serde_json_writes_them() {
        let borrowed = [
            r#"{"a":[1,-2,null,true,false,"x\"\\\n\t\u001f é 😀"],"b":{}}"#,
            "123456789012345678",
            r#""\b\f\r""#,
            // Floats as serde_json writes them.
            "[1.0,2.5,-0.0,0.001,1e-7,1e+21,123.45,-1.5e+300]",
            r#"{"score":0.873,"total":199.99}"#,
        ];
        for text in borrowed {
            let kept = verbatim(raw(text)).unwrap();
            assert!(matches!(kept.0, Cow::Borrowed(_)), "{text}");
            assert_eq!(kept.raw().get(), through_value(text), "{text}");
        }
        let rewritten = [
            r#"{ "a" : 1 }"#,
            "[1.0, 2.5]",
            "1e21",
            "-1.5e300",
            "1E+2",
            "2.50",
            "1.0e0",
            "0.1000000000000000055511151231257827",
            "-0",
            "12345678901234567890",
            r#""\u0041\/""#,
            r#""\u000a""#,
            r#""\u001F""#,
            r#""\ud83d\ude00""#,
        ];
        for text in rewritten {
            let kept = verbatim(raw(text)).unwrap();
            assert!(matches!(kept.0, Cow::Owned(_)), "{text}");
            assert_eq!(kept.raw().get(), through_value(text), "{text}");
        }
        let err = verbatim(raw(r#""\ud800""#)).unwrap_err();
        assert!(err.starts_with("is not valid JSON: "), "{err}");
    }

    #[test]
    fn reads_fields_and_keeps_the_rest_in_order() {
        let mut object = Fields::of(
            "m",
            raw(r#"{"z":1,"id":"a\"b","n":null,"t":1736157600000,"a":{"b":2},"z":3}"#),
        )
        .unwrap();
        assert_eq!(object.string("id").unwrap(), "a\"b");
        assert_eq!(object.optional_string("n").unwrap(), None);
        assert_eq!(
            object.number::<i64>("t", "an integer").unwrap(),
            1_736_157_600_000
        );
        assert_eq!(
            object.string("id").unwrap_err(),
            FieldError::new("m.id", "is missing")
        );
        let rest: Vec<(String, String)> = object
            .rest(verbatim)
            .unwrap()
            .into_iter()
            .map(|(name, value)| (name.into_owned(), value.raw().get().to_owned()))
            .collect();
        // A repeated name keeps its first place and its last value.
        assert_eq!(
            rest,
            [
                ("z".to_owned(), "3".to_owned()),
                ("a".to_owned(), r#"{"b":2}"#.to_owned())
            ]
        );
    }

    #[test]
    fn repeated_names_in_large_objects_keep_the_last_value() {
        let members: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let text = format!("{{{},\"k3\":99,\"k39\":7}}", members.join(","));
        let object = Fields::of("o", raw(&text)).unwrap();
        let rest = object.rest(verbatim).unwrap();
        assert_eq!(rest.len(), 40);
        assert_eq!(rest[3].1.raw().get(), "99");
        assert_eq!(rest[39].1.raw().get(), "7");
    }

    #[test]
    fn type_errors_name_the_path_and_the_found_kind() {
        let mut object =
            Fields::of("", raw(r#"{"s":7,"o":[1],"c":-1,"i":1.5,"l":["a",2]}"#)).unwrap();
        assert_eq!(
            object.string("s").unwrap_err(),
            FieldError::new("s", "must be a string, found number")
        );
        assert_eq!(
            object.optional_convert("o", Kind::Object, Ok).unwrap_err(),
            FieldError::new("o", "must be an object, found array")
        );
        assert_eq!(
            object.count("c").unwrap_err(),
            FieldError::new("c", "must be a non-negative integer, found -1")
        );
        assert_eq!(
            object.number::<i64>("i", "an integer").unwrap_err(),
            FieldError::new("i", "must be an integer, found 1.5")
        );
        assert_eq!(
            object.strings("l").unwrap_err(),
            FieldError::new("l[1]", "must be a string, found number")
        );
        assert_eq!(
            Fields::of("x", raw("[]")).err().unwrap(),
            FieldError::new("x", "must be an object, found array")
        );
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))] // proptest runs natively only
mod proptests {
    use proptest::prelude::*;

    use super::*;

    /// A number as JavaScript, serde_json or a hand may write it.
    fn number_text() -> impl Strategy<Value = String> {
        let float = prop_oneof![
            any::<f64>().prop_filter("finite", |x| x.is_finite()),
            (-100_000_i64..100_000, 0_u32..6)
                .prop_map(|(n, scale)| n as f64 / 10_f64.powi(scale as i32)),
        ];
        prop_oneof![
            float
                .clone()
                .prop_map(|x| serde_json::to_string(&x).unwrap()),
            float.clone().prop_map(|x| format!("{x:e}")),
            float.clone().prop_map(|x| format!("{x:E}")),
            float.prop_map(|x| format!("{x}")),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            (0_u32..4).prop_map(|zeros| format!("-0{}", ".0".repeat(zeros.min(1) as usize))),
        ]
    }

    proptest! {
        /// A kept value is what the `Value`-based reader wrote for it, whether borrowed or not.
        #[test]
        fn kept_numbers_are_written_as_serde_json_writes_them(numbers in prop::collection::vec(number_text(), 1..6)) {
            let text = format!("[{}]", numbers.join(","));
            // serde_json refuses some (out of range); they are not kept either.
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                let raw: &RawValue = serde_json::from_str(&text).unwrap();
                let kept = verbatim(raw).unwrap();
                prop_assert_eq!(kept.raw().get(), value.to_string());
            }
        }

        #[test]
        fn kept_strings_are_written_as_serde_json_writes_them(
            text in any::<String>(),
            escape_every in 1_usize..5,
        ) {
            // The string, then the same with some characters as \u escapes.
            let plain = serde_json::to_string(&text).unwrap();
            let escaped: String = text
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % escape_every == 0 && (c as u32) < 0x10000 {
                        format!("\\u{:04x}", c as u32)
                    } else {
                        {
                            let quoted = serde_json::to_string(&c.to_string()).unwrap();
                            quoted[1..quoted.len() - 1].to_owned()
                        }
                    }
                })
                .collect();
            for text in [plain.clone(), format!("\"{escaped}\"")] {
                let raw: &RawValue = serde_json::from_str(&text).unwrap();
                let kept = verbatim(raw).unwrap();
                prop_assert_eq!(kept.raw().get(), plain.as_str());
            }
        }
    }
}
