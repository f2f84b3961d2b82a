//! One problem with one field, as reported by validation, admission and conditions.

use std::fmt;

/// One problem with one field: `spec.params[1].name: "x" is not declared ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON-ish path of the field, e.g. `spec.authProbes[0].probe.http.response.cel`.
    pub path: String,
    /// What is wrong, for a person to act on. Never contains a Secret value.
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Joins errors into one message, `; `-separated.
pub fn join_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
