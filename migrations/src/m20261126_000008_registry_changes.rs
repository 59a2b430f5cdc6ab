//! What a registry import changed that matters to accounts — a person newly
//! deceased, an enterprise with a new legal representative or newly closed —
//! recorded in the transaction of the batch that changed it, and applied to
//! accounts (demotion, ended claims, delegations and sessions, audit) later,
//! exactly once, however the import ended.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("registry_changes")
                .if_not_exists()
                // Applied in this order; pages of pending changes are read by it.
                .col(big_pk_auto("id"))
                // The import (`registry_imports.id`) whose batch made the change.
                .col(string("import_id"))
                // `deceased`, `rep_changed` or `closed`.
                .col(string("kind"))
                // Blind index of the person's ID number (`resident_id`) or of
                // the enterprise's credit code (`uscc`).
                .col(string("blind_index"))
                .col(big_integer("created_at"))
                // When its consequences were applied; NULL while pending.
                .col(big_integer_null("applied_at"))
                .to_owned(),
        )
        .await?;
        let mut idx = Index::create();
        idx.name("registry_changes_pending").table("registry_changes").col("applied_at").col("id").if_not_exists();
        m.create_index(idx.to_owned()).await?;
        let mut idx = Index::create();
        idx.name("registry_changes_import").table("registry_changes").col("import_id").col("id").if_not_exists();
        m.create_index(idx.to_owned()).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("registry_changes").if_exists().to_owned()).await?;
        Ok(())
    }
}
