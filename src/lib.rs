//! civid: a unified identity provider for a city's government online
//! services, speaking OpenID Connect. See docs/ARCHITECTURE.md for the map.
pub mod account;
pub mod admin;
pub mod audit;
pub mod authn;
pub mod config;
pub mod crypto;
pub mod error;
pub mod housekeeping;
pub mod http;
pub mod identity;
pub mod logout;
pub mod metrics;
pub mod oidc;
pub mod proxy;
pub mod realm;
pub mod realname;
pub mod registry;
pub mod secrets;
pub mod server;
pub mod state;
pub mod store;
pub mod web;

pub use http::app;
