pub mod api;
pub mod probe;
pub mod status;
pub mod validation;
