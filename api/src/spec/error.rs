//! Spec errors: every problem found in a file, each with its `file:line:column`.

use std::fmt;

/// One problem in a spec file, pointing at the offending key or value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpecError {
    /// The file name the caller gave, for messages only.
    pub file: String,
    /// 1-based; 0 when the YAML parser could not tell.
    pub line: usize,
    /// 1-based, in characters; 0 when unknown.
    pub column: usize,
    /// Path of the field, e.g. `health.http.port` or `command[0]`; empty for
    /// syntax errors that belong to no field.
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecError {}

/// Every problem found in a file, in file order; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_file_line_column_field_message() {
        let err = SpecError {
            file: "orion.yaml".into(),
            line: 4,
            column: 11,
            field: "replicas".into(),
            message: "expected a non-negative integer".into(),
        };
        assert_eq!(
            err.to_string(),
            "orion.yaml:4:11: replicas: expected a non-negative integer"
        );
        let syntax = SpecError {
            field: String::new(),
            ..err.clone()
        };
        assert_eq!(
            SpecErrors(vec![err, syntax]).to_string(),
            "orion.yaml:4:11: replicas: expected a non-negative integer\n\
             orion.yaml:4:11: expected a non-negative integer"
        );
    }
}
