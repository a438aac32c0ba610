//! Placement constraints: `zone == a`, `zone != a`, `zone in (a, b)`, `gpu exists`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One rule a node's labels must satisfy for a replica to be placed there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Constraint {
    /// `label == value`: the label is present with exactly this value.
    Equals { label: String, value: String },
    /// `label != value`: the label is absent or has another value.
    NotEquals { label: String, value: String },
    /// `label in (a, b)`: the label is present with one of the values.
    In { label: String, values: Vec<String> },
    /// `label exists`: the label is present, whatever its value.
    Exists { label: String },
}

impl Constraint {
    /// Whether a node with these labels satisfies the constraint.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Constraint::Equals { label, value } => labels.get(label) == Some(value),
            Constraint::NotEquals { label, value } => labels.get(label) != Some(value),
            Constraint::In { label, values } => {
                labels.get(label).is_some_and(|v| values.contains(v))
            }
            Constraint::Exists { label } => labels.contains_key(label),
        }
    }

    /// The label the constraint is about.
    pub fn label(&self) -> &str {
        match self {
            Constraint::Equals { label, .. }
            | Constraint::NotEquals { label, .. }
            | Constraint::In { label, .. }
            | Constraint::Exists { label } => label,
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Constraint::Equals { label, value } => write!(f, "{label} == {value}"),
            Constraint::NotEquals { label, value } => write!(f, "{label} != {value}"),
            Constraint::In { label, values } => write!(f, "{label} in ({})", values.join(", ")),
            Constraint::Exists { label } => write!(f, "{label} exists"),
        }
    }
}

impl std::str::FromStr for Constraint {
    type Err = crate::Invalid;

    fn from_str(s: &str) -> Result<Self, crate::Invalid> {
        Constraint::parse_text(s).map_err(crate::Invalid)
    }
}

impl Constraint {
    fn parse_text(s: &str) -> Result<Self, String> {
        parse_constraint_text(s)
    }
}

#[derive(Debug, PartialEq)]
enum Token<'a> {
    Word(&'a str),
    Eq,
    Ne,
    Open,
    Close,
    Comma,
}

/// Characters allowed in labels and values: letters, digits and `.`, `_`, `-`, `/`.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')
}

fn tokenize(s: &str) -> Result<Vec<Token<'_>>, String> {
    let mut tokens = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else {
            return Ok(tokens);
        };
        let (token, len) = match c {
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            ',' => (Token::Comma, 1),
            '=' if rest.starts_with("==") => (Token::Eq, 2),
            '!' if rest.starts_with("!=") => (Token::Ne, 2),
            c if is_word_char(c) => {
                let len = rest.find(|c: char| !is_word_char(c)).unwrap_or(rest.len());
                (Token::Word(&rest[..len]), len)
            }
            other => return Err(format!("unexpected `{other}`")),
        };
        tokens.push(token);
        rest = &rest[len..];
    }
}

/// Parses one constraint; the error says what form was expected.
pub fn parse_constraint(s: &str) -> Result<Constraint, crate::Invalid> {
    parse_constraint_text(s).map_err(crate::Invalid)
}

fn parse_constraint_text(s: &str) -> Result<Constraint, String> {
    let forms = "expected `label == value`, `label != value`, `label in (a, b)` or `label exists`";
    let tokens = tokenize(s).map_err(|e| format!("{e} in `{s}`; {forms}"))?;
    let bad = || format!("cannot read `{s}`; {forms}");
    let (label, rest) = match tokens.split_first() {
        Some((Token::Word(label), rest)) => ((*label).to_owned(), rest),
        _ => return Err(bad()),
    };
    match rest {
        [Token::Eq, Token::Word(value)] => Ok(Constraint::Equals {
            label,
            value: (*value).to_owned(),
        }),
        [Token::Ne, Token::Word(value)] => Ok(Constraint::NotEquals {
            label,
            value: (*value).to_owned(),
        }),
        [Token::Word("exists")] => Ok(Constraint::Exists { label }),
        [Token::Word("in"), Token::Open, list @ .., Token::Close] => {
            let mut values = Vec::new();
            for (i, token) in list.iter().enumerate() {
                match (i % 2, token) {
                    (0, Token::Word(v)) => values.push((*v).to_owned()),
                    (1, Token::Comma) => {}
                    _ => return Err(bad()),
                }
            }
            if values.is_empty() || list.len() % 2 == 0 {
                return Err(format!("`{s}`: `in` needs a list like (a, b)"));
            }
            Ok(Constraint::In { label, values })
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(label: &str, value: &str) -> Constraint {
        Constraint::Equals {
            label: label.into(),
            value: value.into(),
        }
    }

    #[test]
    fn reads_every_form() {
        assert_eq!(parse_constraint("zone == a"), Ok(eq("zone", "a")));
        assert_eq!(parse_constraint("zone==a"), Ok(eq("zone", "a")));
        assert_eq!(
            parse_constraint("disk != hdd"),
            Ok(Constraint::NotEquals {
                label: "disk".into(),
                value: "hdd".into()
            })
        );
        assert_eq!(
            parse_constraint("zone in (a, b,c)"),
            Ok(Constraint::In {
                label: "zone".into(),
                values: vec!["a".into(), "b".into(), "c".into()]
            })
        );
        assert_eq!(
            parse_constraint(" gpu exists "),
            Ok(Constraint::Exists {
                label: "gpu".into()
            })
        );
        assert_eq!(
            parse_constraint("orion.io/arch == x86_64"),
            Ok(eq("orion.io/arch", "x86_64"))
        );
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "zone ~ a",
            "zone",
            "zone =",
            "== a",
            "zone = a",
            "zone in ()",
            "zone in (a,)",
            "zone in (a b)",
            "zone in a",
            "zone == a b",
            "",
        ] {
            assert!(parse_constraint(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn display_round_trips_and_matches() {
        let labels = BTreeMap::from([("zone".to_owned(), "a".to_owned())]);
        for text in ["zone == a", "zone != b", "zone in (a, b)", "zone exists"] {
            let c = parse_constraint(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.to_string(), text);
            assert!(c.matches(&labels), "{text}");
        }
        assert!(!parse_constraint("gpu exists")
            .unwrap_or_else(|e| panic!("{e}"))
            .matches(&labels));
    }
}
