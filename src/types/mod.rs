//! Leaf types shared by every layer: field errors (rules), probe outcomes (engine and
//! decide) and the condition vocabulary. Imports nothing of the crate.

pub mod conditions;
mod field_error;
mod outcome;

pub use field_error::{FieldError, join_errors};
pub use outcome::{FailureReason, ProbeKind, ProbeOutcome};
