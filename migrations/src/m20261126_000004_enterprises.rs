//! Enterprises (legal persons) claimed by their legal representative, and
//! the agents (经办人) the representative appoints.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("enterprises")
                .if_not_exists()
                .col(string("realm"))
                // Blind index of the unified social credit code.
                .col(string("uscc_index"))
                .col(blob("uscc_sealed"))
                .col(blob("name_sealed"))
                // The account of the legal representative who claimed it.
                .col(string("rep_user_id"))
                .col(big_integer("claimed_at"))
                .primary_key(Index::create().col("realm").col("uscc_index"))
                .to_owned(),
        )
        .await?;
        let mut idx = Index::create();
        idx.name("enterprises_rep").table("enterprises").col("realm").col("rep_user_id").if_not_exists();
        m.create_index(idx.to_owned()).await?;
        m.create_table(
            Table::create()
                .table("delegations")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("realm"))
                .col(string("uscc_index"))
                // The agent's account.
                .col(string("user_id"))
                .col(string("role"))
                .col(big_integer("expires_at"))
                .col(string("created_by"))
                .col(big_integer("created_at"))
                .col(big_integer_null("revoked_at"))
                .to_owned(),
        )
        .await?;
        let mut idx = Index::create();
        idx.name("delegations_user").table("delegations").col("realm").col("user_id").if_not_exists();
        m.create_index(idx.to_owned()).await?;
        let mut idx = Index::create();
        idx.name("delegations_enterprise").table("delegations").col("realm").col("uscc_index").if_not_exists();
        m.create_index(idx.to_owned()).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["delegations", "enterprises"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
