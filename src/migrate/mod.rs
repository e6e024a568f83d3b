//! Sending images over the network and live migration (`docs/migration.md`): the page
//! stream and its connection ([`wire`]), the sender ([`client`], an `image::ImageSink`),
//! the page server and receiver ([`server`]), certificate TLS ([`tls`]) and `stasis migrate`'s pre-copy rounds
//! ([`rounds`]) or post-copy ([`postcopy`]). It owns the transport and the order of rounds, not what an image holds
//! (`image`) nor how a tree is dumped (`dump`).

pub mod client;
pub mod error;
pub mod postcopy;
pub mod rounds;
pub mod server;
pub mod spool;
pub mod tls;
pub mod wire;

pub use client::{RemoteImage, Target};
pub use error::MigrateError;
pub use tls::{TlsConfig, TlsFiles};
pub use wire::Security;
