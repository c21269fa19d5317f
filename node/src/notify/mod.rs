//! Notifications: events recorded with the changes they describe
//! (api::events builds them, `Command::Notify` records them) and delivered
//! at least once to each configured endpoint (docs/operations.md).

pub mod config;
mod deliver;
pub mod metrics;

pub use config::{EndpointConfig, NotifyConfig};
pub use deliver::{Deliverer, ENVELOPE_MEDIA_TYPE};
pub use metrics::NotifyMetrics;
