//! Guardians who confirmed a minor's real-name verification online (PIPL
//! Art. 31): who, in what relationship (as they attest it), when, and when
//! they consented to the processing of the minor's sensitive information.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("guardians")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("realm"))
                // The minor's account, verified (L3) on this confirmation.
                .col(string("minor_user_id"))
                // The guardian's account (L3, adult by their proven number).
                .col(string("guardian_user_id"))
                // `parent` or `guardian` (other legal guardian), attested.
                .col(string("relationship"))
                .col(big_integer("consent_at"))
                .col(big_integer("confirmed_at"))
                .to_owned(),
        )
        .await?;
        let mut idx = Index::create();
        idx.name("guardians_minor").table("guardians").col("realm").col("minor_user_id").if_not_exists();
        m.create_index(idx.to_owned()).await?;
        let mut idx = Index::create();
        idx.name("guardians_guardian").table("guardians").col("realm").col("guardian_user_id").if_not_exists();
        m.create_index(idx.to_owned()).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("guardians").if_exists().to_owned()).await?;
        Ok(())
    }
}
