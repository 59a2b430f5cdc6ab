//! Schema of civid's durable state. Schema changes happen only here, one
//! migration per file (sea-orm-migration names a migration after its file).
pub use sea_orm_migration::prelude::*;

mod m20261126_000001_core;
mod m20261126_000002_accounts;
mod m20261126_000003_registry;
mod m20261126_000004_enterprises;
mod m20261126_000005_acting;
mod m20261126_000006_guardians;
mod m20261126_000007_logout_outbox;
mod m20261126_000008_registry_changes;
mod m20261127_000009_session_tokens;
mod m20261127_000010_housekeeping;

/// A non-unique index `name` on `table` (`cols`), created if missing.
pub(crate) fn index(name: &str, table: &str, cols: &[&str]) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(Alias::new(table)).if_not_exists();
    for c in cols {
        idx.col(Alias::new(*c));
    }
    idx.to_owned()
}

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_core::Migration),
            Box::new(m20261126_000002_accounts::Migration),
            Box::new(m20261126_000003_registry::Migration),
            Box::new(m20261126_000004_enterprises::Migration),
            Box::new(m20261126_000005_acting::Migration),
            Box::new(m20261126_000006_guardians::Migration),
            Box::new(m20261126_000007_logout_outbox::Migration),
            Box::new(m20261126_000008_registry_changes::Migration),
            Box::new(m20261127_000009_session_tokens::Migration),
            Box::new(m20261127_000010_housekeeping::Migration),
        ]
    }
}
