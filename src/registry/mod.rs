//! The national registries civid checks real names against: the population
//! registry (自然人基础数据库) and the legal-person registry (法人基础数据库),
//! imported from CSV files the operator receives (`civid registry import`)
//! and stored sealed, keyed by blind index (`store/registry.rs`).
//!
//! What an import changed that matters to accounts — a person newly
//! `deceased`, an enterprise whose legal representative changed or that was
//! revoked or cancelled — is recorded in `registry_changes` with the batch
//! that changed it, and applied to accounts (demotion, ended claims,
//! delegations and sessions, audit) exactly once by [`changes`].
pub mod changes;
pub mod import;
pub mod synth;

pub use import::{ImportOptions, ImportOutcome, OnError, import};

/// Which registry a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Person,
    Enterprise,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "person" => Some(Kind::Person),
            "enterprise" => Some(Kind::Enterprise),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Person => "person",
            Kind::Enterprise => "enterprise",
        }
    }
}

/// Blind-index kind of resident ID numbers (registry rows, legal
/// representatives, identity proofs: one index space).
pub const RESIDENT_ID_INDEX: &str = "resident_id";
/// Blind-index kind of unified social credit codes.
pub const USCC_INDEX: &str = "uscc";

/// Associated data of a sealed column of a registry row: table, column and
/// the row's key, so a sealed value cannot be moved to another row or column.
pub fn aad(table: &str, column: &str, key: &str) -> Vec<u8> {
    format!("{table}\0{column}\0{key}").into_bytes()
}

/// Today's date in China (UTC+8): a birth date after it is in the future.
pub fn today_in_china() -> chrono::NaiveDate {
    (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive()
}
