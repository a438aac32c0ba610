//! Reading typed values out of the YAML tree while collecting every problem.
//!
//! Each reader returns `None` after recording an error, so decoding keeps going
//! and one run reports everything wrong with a document.

use super::duration::parse_duration_ms;
use super::error::SpecError;
use super::node::{Key, Node, Pos, Value};

/// Collects errors for one file.
pub(crate) struct Decoder<'f> {
    file: &'f str,
    pub errors: Vec<SpecError>,
}

/// `parent.child`, or just `child` at the top of a document.
pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// A mapping whose keys were checked against the allowed field names.
pub(crate) struct Fields<'n> {
    entries: &'n [(Key, Node)],
    /// Where the mapping starts, for "missing field" errors.
    pub at: Pos,
    /// Path of the mapping itself.
    pub path: String,
}

impl<'n> Fields<'n> {
    /// The value of a field; an explicit `null` counts as absent.
    pub fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v)
            .filter(|v| v.value != Value::Null)
    }

    /// All entries, for mappings with free-form keys (`env`).
    pub fn entries(&self) -> &'n [(Key, Node)] {
        self.entries
    }

    /// Where a field's key is written, if it is.
    pub fn key_at(&self, name: &str) -> Option<Pos> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(k, _)| k.at)
    }

    /// Path of a field of this mapping.
    pub fn path(&self, name: &str) -> String {
        join(&self.path, name)
    }
}

impl<'f> Decoder<'f> {
    pub fn new(file: &'f str) -> Self {
        Decoder {
            file,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, at: Pos, field: &str, message: impl Into<String>) {
        self.errors.push(SpecError {
            file: self.file.to_owned(),
            line: at.line,
            column: at.column,
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn expected(&mut self, node: &Node, field: &str, what: &str) {
        let found = node.value.describe();
        self.error(node.at, field, format!("expected {what}, found {found}"));
    }

    /// A mapping with any keys (`env`).
    pub fn mapping<'n>(&mut self, node: &'n Node, path: &str) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.expected(node, path, "a mapping");
            return None;
        };
        Some(Fields {
            entries,
            at: node.at,
            path: path.to_owned(),
        })
    }

    /// A mapping with only `allowed` keys; every unknown key is reported at its position.
    pub fn fields<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        allowed: &[&str],
    ) -> Option<Fields<'n>> {
        let fields = self.mapping(node, path)?;
        for (key, _) in fields.entries {
            if !allowed.contains(&key.name.as_str()) {
                let list = allowed
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.error(
                    key.at,
                    &join(path, &key.name),
                    format!("unknown field `{}`, expected one of {list}", key.name),
                );
            }
        }
        Some(fields)
    }

    /// A required field; reports it missing at the mapping's position.
    pub fn required<'n>(&mut self, fields: &Fields<'n>, name: &str) -> Option<&'n Node> {
        let node = fields.get(name);
        if node.is_none() {
            self.error(fields.at, &fields.path(name), "missing required field");
        }
        node
    }

    /// A string written as a string (not a number or a boolean).
    pub fn string(&mut self, node: &Node, field: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.expected(node, field, "a string");
                None
            }
        }
    }

    /// Any scalar as text: `PORT: 8080` and `[sleep, 5]` read as strings.
    pub fn text(&mut self, node: &Node, field: &str) -> Option<String> {
        let text = node.value.scalar_text();
        if text.is_none() {
            self.expected(node, field, "a string");
        }
        text
    }

    /// A list of scalars as text, each with its position.
    pub fn text_list(&mut self, node: &Node, field: &str) -> Option<Vec<(String, Pos)>> {
        let Value::Seq(items) = &node.value else {
            self.expected(node, field, "a list of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.text(item, &format!("{field}[{i}]")) {
                Some(s) => out.push((s, item.at)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// `true` or `false`, written as a YAML boolean.
    pub fn boolean(&mut self, node: &Node, field: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.expected(node, field, "true or false");
                None
            }
        }
    }

    /// A non-negative integer that fits `T`.
    pub fn uint<T: TryFrom<i128>>(&mut self, node: &Node, field: &str) -> Option<T> {
        let value = match &node.value {
            Value::Int(i) if *i >= 0 => T::try_from(*i).ok(),
            _ => None,
        };
        if value.is_none() {
            let found = match &node.value {
                Value::Int(i) if *i >= 0 => format!("{i}, which is too large"),
                Value::Int(i) => i.to_string(),
                Value::Str(s) => format!("`{s}`"),
                other => other.describe().to_owned(),
            };
            self.error(
                node.at,
                field,
                format!("expected a non-negative integer, found {found}"),
            );
        }
        value
    }

    /// A positive integer that fits `T`.
    pub fn positive<T: TryFrom<i128> + Default + PartialEq>(
        &mut self,
        node: &Node,
        field: &str,
    ) -> Option<T> {
        let value = self.uint::<T>(node, field)?;
        if value == T::default() {
            self.error(node.at, field, "must be at least 1");
            return None;
        }
        Some(value)
    }

    /// A duration (`2s`, `1m30s`) in milliseconds.
    pub fn duration(&mut self, node: &Node, field: &str) -> Option<u64> {
        let parsed = match &node.value {
            Value::Str(s) => parse_duration_ms(s),
            Value::Int(0) => Ok(0),
            Value::Int(i) => Err(crate::Invalid(format!(
                "expected a duration like 500ms, 2s, 1m30s or 1h: `{i}` is missing a unit (ms, s, m, h)"
            ))),
            other => Err(crate::Invalid(format!(
                "expected a duration like 500ms, 2s, 1m30s or 1h, found {}",
                other.describe()
            ))),
        };
        self.check(node, field, parsed)
    }

    /// Turns a parse result about `node` into a value or a recorded error.
    pub fn check<T, E: Into<String>>(
        &mut self,
        node: &Node,
        field: &str,
        parsed: Result<T, E>,
    ) -> Option<T> {
        parsed
            .map_err(|e| self.error(node.at, field, e.into()))
            .ok()
    }
}
