//! Validation shared by the admission webhook, the controllers and the CLI.

pub mod class;
pub mod connector;
pub mod identity;

pub use class::{structural_errors, validate_class};
pub use connector::{
    CA_SECRET_NAME_FIELD, SECRET_NAME_FIELD, SECRET_NAMESPACE_FIELD, check_http_url,
    is_object_name, object_name_error, secret_name_errors, spec_mismatch_errors,
    validate_against_class, validate_connector,
};
