//! Whom a sign-in session acts for (the person, or an enterprise chosen at
//! sign-in), and the counts of a registry import's changes, kept with its
//! checkpoint so a resumed run reports the whole import.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Columns added to `registry_imports`: how many persons became deceased,
/// enterprises got a new legal representative, were revoked or cancelled.
const IMPORT_COUNTS: [&str; 3] = ["deceased", "rep_changed", "closed"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // `self`, or the blind index of the enterprise's credit code; NULL
        // until the person chose (SQLite alters one column per statement).
        m.alter_table(Table::alter().table("sso_sessions").add_column(string_null("acting")).to_owned()).await?;
        for col in IMPORT_COUNTS {
            m.alter_table(Table::alter().table("registry_imports").add_column(big_integer(col).default(0)).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in IMPORT_COUNTS {
            m.alter_table(Table::alter().table("registry_imports").drop_column(col).to_owned()).await?;
        }
        m.alter_table(Table::alter().table("sso_sessions").drop_column("acting").to_owned()).await?;
        Ok(())
    }
}
