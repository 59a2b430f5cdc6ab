//! Realms: isolated tenants with their own clients, keys and policies.
//! `model` is what a realm is, `file` and `apply` are config as code,
//! `keys` its signing keys, `cache` what a node keeps in memory.
pub mod apply;
pub mod cache;
pub mod file;
pub mod keys;
pub mod model;
