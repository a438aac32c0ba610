//! The YAML tree with a source position on every node and every mapping key.
//!
//! Parsing goes through this tree instead of deriving `Deserialize` on the spec
//! types, so that decoding can report *every* problem in a document (not just the
//! first), name the field by its full path, and point at the exact `line:column`
//! of a key or value — also for checks that run after the types are known.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A 1-based `line:column` in the file. `0:0` means "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_location(loc: serde_saphyr::Location) -> Self {
        Pos {
            line: usize::try_from(loc.line()).unwrap_or(usize::MAX),
            column: usize::try_from(loc.column()).unwrap_or(usize::MAX),
        }
    }
}

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    pub at: Pos,
}

/// A mapping key: always a scalar, kept as text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub name: String,
    pub at: Pos,
}

/// What a node holds. Scalars keep the type YAML 1.2 resolved them to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// In document order; the YAML parser already rejects duplicate keys.
    Map(Vec<(Key, Node)>),
}

impl Value {
    /// How a message names this kind of value: "expected X, found a string".
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The text of a scalar (strings, numbers, booleans); `None` otherwise.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }
}

/// Reads every document of `text`; empty documents are skipped.
///
/// YAML 1.2 booleans only (`true`/`false`): `N`, `no`, `on` stay strings, so
/// `env: {N: 1}` and `command: [echo, yes]` mean what they say.
pub(crate) fn read_documents(text: &str) -> Result<Vec<Node>, serde_saphyr::Error> {
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_multiple_with_options::<Node>(text, options)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node {
            value: spanned.value,
            at: Pos::from_location(spanned.referenced),
        })
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        let name = spanned
            .value
            .scalar_text()
            .ok_or_else(|| de::Error::custom("mapping keys must be plain scalars"))?;
        Ok(Key {
            name,
            at: Pos::from_location(spanned.referenced),
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(v)))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(Value::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<Key, Node>()? {
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Node> {
        read_documents(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn positions_of_keys_and_values() {
        let docs = parse("kind: Service\nreplicas: -1\nenv: {A: b}\nlist:\n  - x\n  - 2\n");
        assert_eq!(docs.len(), 1);
        let Value::Map(entries) = &docs[0].value else {
            panic!("not a map: {:?}", docs[0]);
        };
        let (k, v) = &entries[1];
        assert_eq!(k.name, "replicas");
        assert_eq!(k.at, Pos { line: 2, column: 1 });
        assert_eq!(v.value, Value::Int(-1));
        assert_eq!(
            v.at,
            Pos {
                line: 2,
                column: 11
            }
        );
        let (_, env) = &entries[2];
        let Value::Map(env) = &env.value else {
            panic!()
        };
        assert_eq!(env[0].0.at, Pos { line: 3, column: 7 });
        assert_eq!(
            env[0].1.at,
            Pos {
                line: 3,
                column: 10
            }
        );
        let Value::Seq(list) = &entries[3].1.value else {
            panic!()
        };
        assert_eq!(list[1].at, Pos { line: 6, column: 5 });
    }

    #[test]
    fn documents_keep_file_positions() {
        let docs = parse("a: 1\n---\n# c\nb: x\n---\n\n---\nc: [1]\n");
        let lines: Vec<usize> = docs.iter().map(|d| d.at.line).collect();
        assert_eq!(lines, [1, 4, 8], "the empty document is skipped");
    }

    #[test]
    fn only_yaml_1_2_booleans() {
        let docs = parse("[N, yes, off, true, False]");
        let Value::Seq(items) = &docs[0].value else {
            panic!()
        };
        let values: Vec<&Value> = items.iter().map(|n| &n.value).collect();
        assert_eq!(
            values,
            [
                &Value::Str("N".into()),
                &Value::Str("yes".into()),
                &Value::Str("off".into()),
                &Value::Bool(true),
                &Value::Bool(false)
            ]
        );
    }
}
