//! Reading JSON objects without building a `serde_json::Value` tree: members are borrowed from
//! the document text as [`RawValue`] slices, and only the fields this library understands are
//! parsed. Values kept verbatim (metadata, context, unknown fields) stay text.
//!
//! A kept value is written back exactly as serde_json writes the value it holds (what the
//! `Value`-based reader of earlier versions wrote), so archives do not depend on which reader
//! produced them: text already in that form is borrowed, anything else (whitespace, exponents,
//! escapes serde_json would not write) is rewritten through a `Value` once.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;
use serde_json::Value;

use super::model::{check_epoch_ms, FieldError};

/// A JSON value kept as text.
pub type Verbatim<'a> = Cow<'a, RawValue>;

/// The JSON type name of a value, for error messages.
pub fn kind(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    }
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// A string borrowed from the document when it has no escapes.
struct CowStr<'a>(Cow<'a, str>);

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
type Members<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// A JSON value read as the members of an object, or the kind of a value that is not one.
pub enum Item<'a> {
    /// The members of an object.
    Object(Members<'a>),
    /// The JSON type name of anything else.
    Other(&'static str),
}

/// Collects an object's members; a repeated name keeps its first position and its last value
/// (as `serde_json::Map` with `preserve_order` does).
fn collect_members<'de, A: MapAccess<'de>>(mut map: A) -> Result<Members<'de>, A::Error> {
    let mut members: Members<'de> = Vec::new();
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

impl<'de> Deserialize<'de> for Item<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = Item<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                collect_members(map).map(Item::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Item::Other("array"))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Item::Other("string"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Item::Other("boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Item::Other("number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Item::Other("number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Item::Other("number"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Item::Other("null"))
            }
        }
        deserializer.deserialize_any(ItemVisitor)
    }
}

/// Reads the text of a whole JSON document, in one pass, as an [`Item`].
pub fn parse_item(text: &str) -> Result<Item<'_>, serde_json::Error> {
    serde_json::from_str(text)
}

/// Reads the object items of an array in one pass, handing each to `read` as it is parsed
/// (the first [`FieldError`] stops the parse and is kept in `failure`).
struct ObjectItems<'p, F> {
    path: &'p str,
    read: F,
    failure: &'p mut Option<FieldError>,
}

impl<'de, T, F> DeserializeSeed<'de> for ObjectItems<'_, F>
where
    F: FnMut(RawObject<'de>) -> Result<T, FieldError>,
{
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T, F> Visitor<'de> for ObjectItems<'_, F>
where
    F: FnMut(RawObject<'de>) -> Result<T, FieldError>,
{
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<Item<'de>>()? {
            let path = format!("{}[{}]", self.path, items.len());
            match RawObject::from_item(path, item).and_then(&mut self.read) {
                Ok(read) => items.push(read),
                Err(err) => {
                    *self.failure = Some(err);
                    return Err(de::Error::custom("an item is not what it must be"));
                }
            }
        }
        Ok(items)
    }
}

/// Reads the fields of one JSON object, removing each as it is read so that what remains is
/// the object's unknown fields, in their original order.
pub struct RawObject<'a> {
    path: String,
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> RawObject<'a> {
    /// Starts reading `raw`, which must be an object; `path` names it in errors.
    pub fn new(path: impl Into<String>, raw: &'a RawValue) -> Result<Self, FieldError> {
        let path = path.into();
        match parse_item(raw.get()) {
            Ok(item) => Self::from_item(path, item),
            Err(err) => Err(FieldError::new(path, format!("is not valid JSON: {err}"))),
        }
    }

    /// Starts reading a parsed `item`, which must be an object; `path` names it in errors.
    pub fn from_item(path: impl Into<String>, item: Item<'a>) -> Result<Self, FieldError> {
        let path = path.into();
        match item {
            Item::Object(fields) => Ok(Self { path, fields }),
            Item::Other(found) => Err(FieldError::new(
                path,
                format!("must be an object, found {found}"),
            )),
        }
    }

    /// The path of field `name` of this object (just `name` at the document root, whose path
    /// is empty).
    pub fn path_of(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// Removes field `name`; an explicit `null` counts as absent.
    fn take(&mut self, name: &str) -> Option<&'a RawValue> {
        let position = self.fields.iter().position(|(known, _)| known == name)?;
        let (_, value) = self.fields.remove(position);
        Some(value).filter(|value| !is_null(value))
    }

    fn type_error(&self, name: &str, wanted: &str, raw: &RawValue) -> FieldError {
        FieldError::new(
            self.path_of(name),
            format!("must be {wanted}, found {}", kind(raw)),
        )
    }

    /// Removes field `name` and checks that it is absent (this library writes it itself).
    pub fn refuse(&mut self, name: &str, why: &str) -> Result<(), FieldError> {
        match self.take(name) {
            Some(_) => Err(FieldError::new(self.path_of(name), why)),
            None => Ok(()),
        }
    }

    /// A required field.
    pub fn required(&mut self, name: &str) -> Result<&'a RawValue, FieldError> {
        self.take(name)
            .ok_or_else(|| FieldError::new(self.path_of(name), "is missing"))
    }

    /// A required string.
    pub fn string(&mut self, name: &str) -> Result<Cow<'a, str>, FieldError> {
        let raw = self.required(name)?;
        self.as_string(name, raw)
    }

    /// An optional string (`null` counts as absent).
    pub fn optional_string(&mut self, name: &str) -> Result<Option<Cow<'a, str>>, FieldError> {
        self.take(name)
            .map(|raw| self.as_string(name, raw))
            .transpose()
    }

    fn as_string(&self, name: &str, raw: &'a RawValue) -> Result<Cow<'a, str>, FieldError> {
        if kind(raw) != "string" {
            return Err(self.type_error(name, "a string", raw));
        }
        parse_str(raw)
            .map_err(|err| FieldError::new(self.path_of(name), format!("is not valid JSON: {err}")))
    }

    /// A required string kept as JSON text.
    pub fn verbatim_string(&mut self, name: &str) -> Result<Verbatim<'a>, FieldError> {
        let raw = self.required(name)?;
        if kind(raw) != "string" {
            return Err(self.type_error(name, "a string", raw));
        }
        verbatim(raw).map_err(|reason| FieldError::new(self.path_of(name), reason))
    }

    /// A required non-negative integer.
    pub fn count(&mut self, name: &str) -> Result<u64, FieldError> {
        self.optional_count(name)?
            .ok_or_else(|| FieldError::new(self.path_of(name), "is missing"))
    }

    /// An optional non-negative integer (`null` counts as absent).
    pub fn optional_count(&mut self, name: &str) -> Result<Option<u64>, FieldError> {
        self.take(name)
            .map(|raw| {
                serde_json::from_str::<u64>(raw.get()).map_err(|_| {
                    FieldError::new(
                        self.path_of(name),
                        format!("must be a non-negative integer, found {}", raw.get()),
                    )
                })
            })
            .transpose()
    }

    /// A required integer (which may be negative).
    pub fn integer(&mut self, name: &str) -> Result<i64, FieldError> {
        let raw = self.required(name)?;
        serde_json::from_str::<i64>(raw.get()).map_err(|_| {
            FieldError::new(
                self.path_of(name),
                format!("must be an integer, found {}", raw.get()),
            )
        })
    }

    /// A required time in epoch milliseconds (an integer JavaScript's `Date` can hold).
    pub fn epoch_ms(&mut self, name: &str) -> Result<i64, FieldError> {
        let raw = self.required(name)?;
        let path = self.path_of(name);
        let ms = serde_json::from_str::<i64>(raw.get()).map_err(|_| {
            FieldError::new(
                &path,
                format!(
                    "must be an integer number of epoch milliseconds, found {}",
                    raw.get()
                ),
            )
        })?;
        check_epoch_ms(&path, ms)?;
        Ok(ms)
    }

    /// A required object, as text.
    pub fn object(&mut self, name: &str) -> Result<&'a RawValue, FieldError> {
        let raw = self.required(name)?;
        self.as_object(name, raw)
    }

    /// An optional object, as text (`null` counts as absent).
    pub fn optional_object(&mut self, name: &str) -> Result<Option<&'a RawValue>, FieldError> {
        self.take(name)
            .map(|raw| self.as_object(name, raw))
            .transpose()
    }

    fn as_object(&self, name: &str, raw: &'a RawValue) -> Result<&'a RawValue, FieldError> {
        if kind(raw) == "object" {
            Ok(raw)
        } else {
            Err(self.type_error(name, "an object", raw))
        }
    }

    /// An optional object kept verbatim (`null` counts as absent).
    pub fn optional_verbatim_object(
        &mut self,
        name: &str,
    ) -> Result<Option<Verbatim<'a>>, FieldError> {
        self.optional_object(name)?
            .map(|raw| verbatim(raw).map_err(|reason| FieldError::new(self.path_of(name), reason)))
            .transpose()
    }

    /// A required array, its items as text.
    pub fn array(&mut self, name: &str) -> Result<Vec<&'a RawValue>, FieldError> {
        let raw = self.required(name)?;
        if kind(raw) != "array" {
            return Err(self.type_error(name, "an array", raw));
        }
        serde_json::from_str(raw.get())
            .map_err(|err| FieldError::new(self.path_of(name), format!("is not valid JSON: {err}")))
    }

    /// A required array of objects, each read by `read` as soon as it is parsed (so that the
    /// members of all items are never held at once).
    pub fn object_items<T>(
        &mut self,
        name: &str,
        read: impl FnMut(RawObject<'a>) -> Result<T, FieldError>,
    ) -> Result<Vec<T>, FieldError> {
        let raw = self.required(name)?;
        if kind(raw) != "array" {
            return Err(self.type_error(name, "an array", raw));
        }
        let path = self.path_of(name);
        let mut failure = None;
        let seed = ObjectItems {
            path: &path,
            read,
            failure: &mut failure,
        };
        let parsed = seed.deserialize(&mut serde_json::Deserializer::from_str(raw.get()));
        match (parsed, failure) {
            (_, Some(err)) => Err(err),
            (Ok(items), None) => Ok(items),
            (Err(err), None) => Err(FieldError::new(path, format!("is not valid JSON: {err}"))),
        }
    }

    /// A required array of strings.
    pub fn strings(&mut self, name: &str) -> Result<Vec<String>, FieldError> {
        let path = self.path_of(name);
        self.array(name)?
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let item_path = || format!("{path}[{index}]");
                if kind(item) != "string" {
                    return Err(FieldError::new(
                        item_path(),
                        format!("must be a string, found {}", kind(item)),
                    ));
                }
                parse_str(item).map(Cow::into_owned).map_err(|err| {
                    FieldError::new(item_path(), format!("is not valid JSON: {err}"))
                })
            })
            .collect()
    }

    /// The fields not read, in their original order, kept verbatim.
    pub fn rest(self) -> Result<Vec<(Cow<'a, str>, Verbatim<'a>)>, FieldError> {
        let path = self.path;
        self.fields
            .into_iter()
            .map(|(name, raw)| match verbatim(raw) {
                Ok(value) => Ok((name, value)),
                Err(reason) => Err(FieldError::new(
                    if path.is_empty() {
                        name.into_owned()
                    } else {
                        format!("{path}.{name}")
                    },
                    reason,
                )),
            })
            .collect()
    }
}

/// `raw` as it is kept: borrowed when its text is what serde_json writes for it, else
/// rewritten in that form. Fails (with the reason) on text serde_json cannot read as a value,
/// such as a lone UTF-16 surrogate escape.
pub fn verbatim(raw: &RawValue) -> Result<Verbatim<'_>, String> {
    if is_canonical(raw.get().as_bytes()) {
        return Ok(Cow::Borrowed(raw));
    }
    serde_json::from_str::<Value>(raw.get())
        .and_then(|value| serde_json::value::to_raw_value(&value))
        .map(Cow::Owned)
        .map_err(|err| format!("is not valid JSON: {err}"))
}

/// Whether valid JSON text is exactly what serde_json's compact writer gives for the value it
/// holds: no whitespace; numbers that are integers of at most 18 digits (other numbers pass
/// through `f64`, whose printing may differ); string escapes only where serde_json escapes,
/// spelled as it spells them.
fn is_canonical(text: &[u8]) -> bool {
    // The common case, a string without escapes (e.g. message content), in one quick pass.
    if text.first() == Some(&b'"') && !text.contains(&b'\\') {
        return true;
    }
    let mut bytes = text.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        match byte {
            b'"' if !canonical_string_rest(&mut bytes) => return false,
            b' ' | b'\t' | b'\n' | b'\r' => return false,
            b'-' | b'0'..=b'9' => {
                let negative = byte == b'-';
                let mut first_digit = (!negative).then_some(byte);
                let mut digits = usize::from(!negative);
                while let Some(digit) = bytes.next_if(u8::is_ascii_digit) {
                    first_digit.get_or_insert(digit);
                    digits += 1;
                }
                // A fraction or exponent makes it a float; "-0" is read as the float -0.0.
                let is_float = matches!(bytes.peek(), Some(b'.' | b'e' | b'E'));
                if is_float || digits > 18 || (negative && first_digit == Some(b'0')) {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// Scans the rest of a string after its opening quote; whether its escapes are canonical.
fn canonical_string_rest(bytes: &mut impl Iterator<Item = u8>) -> bool {
    while let Some(byte) = bytes.next() {
        match byte {
            b'"' => return true,
            b'\\' => match bytes.next() {
                Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                Some(b'u') => {
                    let hex = [bytes.next(), bytes.next(), bytes.next(), bytes.next()];
                    let [Some(b'0'), Some(b'0'), Some(high @ b'0'..=b'1'), Some(low)] = hex else {
                        return false;
                    };
                    let low = match low {
                        b'0'..=b'9' => low - b'0',
                        b'a'..=b'f' => low - b'a' + 10,
                        _ => return false,
                    };
                    let code = (high - b'0') * 16 + low;
                    // serde_json writes these five as \b \t \n \f \r.
                    if matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                        return false;
                    }
                }
                _ => return false,
            },
            _ => {}
        }
    }
    false
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
        ];
        for text in borrowed {
            let kept = verbatim(raw(text)).unwrap();
            assert!(matches!(kept, Cow::Borrowed(_)), "{text}");
            assert_eq!(kept.get(), through_value(text), "{text}");
        }
        let rewritten = [
            r#"{ "a" : 1 }"#,
            "[1.0, 2.5]",
            "1e21",
            "1E+2",
            "-0",
            "12345678901234567890",
            r#""\u0041\/""#,
            r#""\u000a""#,
            r#""\u001F""#,
            r#""\ud83d\ude00""#,
        ];
        for text in rewritten {
            let kept = verbatim(raw(text)).unwrap();
            assert!(matches!(kept, Cow::Owned(_)), "{text}");
            assert_eq!(kept.get(), through_value(text), "{text}");
        }
        let err = verbatim(raw(r#""\ud800""#)).unwrap_err();
        assert!(err.starts_with("is not valid JSON: "), "{err}");
    }

    #[test]
    fn reads_fields_and_keeps_the_rest_in_order() {
        let mut object = RawObject::new(
            "m",
            raw(r#"{"z":1,"id":"a\"b","n":null,"t":1736157600000,"a":{"b":2},"z":3}"#),
        )
        .unwrap();
        assert_eq!(object.string("id").unwrap(), "a\"b");
        assert_eq!(object.optional_string("n").unwrap(), None);
        assert_eq!(object.epoch_ms("t").unwrap(), 1_736_157_600_000);
        assert_eq!(
            object.string("id").unwrap_err(),
            FieldError::new("m.id", "is missing")
        );
        let rest: Vec<(String, String)> = object
            .rest()
            .unwrap()
            .into_iter()
            .map(|(name, value)| (name.into_owned(), value.get().to_owned()))
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
        let object = RawObject::new("o", raw(&text)).unwrap();
        let rest = object.rest().unwrap();
        assert_eq!(rest.len(), 40);
        assert_eq!(rest[3].1.get(), "99");
        assert_eq!(rest[39].1.get(), "7");
    }

    #[test]
    fn type_errors_name_the_path_and_the_found_kind() {
        let mut object =
            RawObject::new("", raw(r#"{"s":7,"o":[1],"c":-1,"i":1.5,"l":["a",2]}"#)).unwrap();
        assert_eq!(
            object.string("s").unwrap_err(),
            FieldError::new("s", "must be a string, found number")
        );
        assert_eq!(
            object.optional_object("o").unwrap_err(),
            FieldError::new("o", "must be an object, found array")
        );
        assert_eq!(
            object.count("c").unwrap_err(),
            FieldError::new("c", "must be a non-negative integer, found -1")
        );
        assert_eq!(
            object.integer("i").unwrap_err(),
            FieldError::new("i", "must be an integer, found 1.5")
        );
        assert_eq!(
            object.strings("l").unwrap_err(),
            FieldError::new("l[1]", "must be a string, found number")
        );
        assert_eq!(
            RawObject::new("x", raw("[]")).err().unwrap(),
            FieldError::new("x", "must be an object, found array")
        );
    }
}
