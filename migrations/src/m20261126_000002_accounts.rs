//! Citizen accounts: second factors and passkeys (`credentials`), where and
//! on what a session was started (for the account page's session list), and
//! when a cancelled account's data is purged.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("credentials")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("realm"))
                .col(string("user_id"))
                // `passkey` or `totp`.
                .col(string("kind"))
                // The name the person gave it ("my phone").
                .col(string("name"))
                // For a passkey, the credential id (base64url): what a
                // browser presents at a usernameless sign-in.
                .col(string_null("lookup"))
                // The credential (passkey state, TOTP secret), sealed.
                .col(blob("sealed"))
                .col(big_integer("created_at"))
                .col(big_integer_null("last_used_at"))
                .to_owned(),
        )
        .await?;
        let mut idx = Index::create();
        idx.name("credentials_user").table("credentials").col("realm").col("user_id").if_not_exists();
        m.create_index(idx.to_owned()).await?;
        let mut idx = Index::create();
        idx.name("credentials_lookup").table("credentials").col("realm").col("lookup").unique().if_not_exists();
        m.create_index(idx.to_owned()).await?;
        // SQLite adds one column per statement.
        for col in ["ip", "user_agent"] {
            m.alter_table(Table::alter().table("sso_sessions").add_column(string_null(col)).to_owned()).await?;
        }
        m.alter_table(Table::alter().table("users").add_column(big_integer_null("purge_after")).to_owned()).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("credentials").if_exists().to_owned()).await?;
        for col in ["ip", "user_agent"] {
            m.alter_table(Table::alter().table("sso_sessions").drop_column(col).to_owned()).await?;
        }
        m.alter_table(Table::alter().table("users").drop_column("purge_after").to_owned()).await?;
        Ok(())
    }
}
