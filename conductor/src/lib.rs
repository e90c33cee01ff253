//! # loophole-conductor
//!
//! The conductor's drivers around the sans-IO cores of `loophole-net-proto`, and the client
//! library nodes join it with:
//! - [`serve`]: `loophole-conductor serve`: QUIC (quinn, TLS 1.3), one session task owning the
//!   `Conductor` core, one task per connection, the durable [`store`], band time ([`band`]),
//!   set distribution ([`set`]);
//! - [`client`]: [`client::Client`], a plain-thread API around the `NodeClient` core (connect,
//!   fetch the set into a [`cache`], band time from datagram pings, presses, events,
//!   reconnection);
//! - [`join`]: join codes; [`identity`] and [`tls`]: the certificate, secrets and the pinned
//!   TLS settings; [`wire`]: close codes and datagrams; [`ctl`]: the `ctl` subcommand.
//!
//! `docs/conductor.md` describes the protocol and what is built.
//!
//! Thread: see each module.
#![warn(missing_docs)]

pub mod band;
pub mod cache;
pub mod client;
pub mod ctl;
pub mod identity;
pub mod join;
pub mod serve;
pub mod set;
pub mod store;
pub mod tls;
pub mod wire;
