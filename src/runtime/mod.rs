//! What every process of the operator runs on: shutdown, leader election, the clock,
//! watch and retry backoff, the caches gate. Knows no controller, webhook or proxy.

mod apiserver;
mod backoff;
mod caches;
mod clock;
mod fair_share;
mod initial_lists;
mod key_locks;
mod leader;
mod shutdown;
mod ttl_cache;

pub use apiserver::{ApiService, MAX_HTTP1_REQUESTS, apiserver_client, apiserver_client_builder};
pub use backoff::{WatchBackoff, backoff_delay};
pub use caches::{CachesReady, CachesStopped};
pub use clock::now;
pub use fair_share::{FairShare, Slot};
pub use initial_lists::InitialLists;
pub use key_locks::KeyLocks;
pub use leader::{LeaseSettings, run_while_leader};
pub use shutdown::Shutdown;
pub use ttl_cache::TtlCache;
