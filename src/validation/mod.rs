//! Validation shared by the admission webhook, the controllers and the CLI.

pub mod class;
pub mod connector;

pub use class::{structural_errors, validate_class};
pub use connector::{
    SECRET_NAMESPACE_FIELD, check_http_url, spec_mismatch_errors, validate_against_class,
    validate_connector,
};
