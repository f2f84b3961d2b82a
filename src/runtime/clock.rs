//! The clock of status timestamps.

/// Now, to the second: stored times have second precision, so comparing a fresh
/// status with the stored one stays exact.
pub fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    use k8s_openapi::jiff::{Timestamp, Unit};
    let now = Timestamp::now();
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now.round(Unit::Second).unwrap_or(now))
}
