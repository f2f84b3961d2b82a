//! The decide step: pure functions from observed facts to the desired status.

pub mod address;
pub mod class;
pub mod conditions;
pub mod connector;
pub mod directory;
pub mod events;
pub mod identity;
pub mod plan;
pub mod proxy_service;
pub mod schedule;
