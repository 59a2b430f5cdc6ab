//! Real-name verification: the imported population and legal-person
//! registries, the import runs (resumable), and what each account proved.
//! Names and numbers are sealed; lookups go through blind indexes.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // 自然人基础数据库: one row per resident ID number.
        m.create_table(
            Table::create()
                .table("registry_persons")
                .if_not_exists()
                // Blind index of the normalised ID number.
                .col(string("id_index").primary_key())
                .col(blob("id_sealed"))
                .col(blob("name_sealed"))
                // `alive` or `deceased`.
                .col(string("status"))
                .col(big_integer("updated_at"))
                // The import run that last wrote the row.
                .col(string("import_id"))
                .to_owned(),
        )
        .await?;
        // 法人基础数据库: one row per unified social credit code.
        m.create_table(
            Table::create()
                .table("registry_enterprises")
                .if_not_exists()
                .col(string("uscc_index").primary_key())
                .col(blob("uscc_sealed"))
                .col(blob("name_sealed"))
                // Blind index of the legal representative's ID number.
                .col(string("rep_index"))
                .col(blob("rep_name_sealed"))
                // `active`, `revoked` (吊销) or `cancelled` (注销).
                .col(string("status"))
                .col(big_integer("updated_at"))
                .col(string("import_id"))
                .to_owned(),
        )
        .await?;
        let mut idx = Index::create();
        idx.name("registry_enterprises_rep").table("registry_enterprises").col("rep_index").if_not_exists();
        m.create_index(idx.to_owned()).await?;
        m.create_table(
            Table::create()
                .table("registry_imports")
                .if_not_exists()
                .col(string("id").primary_key())
                // `person` or `enterprise`.
                .col(string("kind"))
                // SHA-256 of the file: a resumed run must read the same file.
                .col(string("file_sha256"))
                .col(string("file_name"))
                // `running`, `done`, `aborted`.
                .col(string("status"))
                // Lines (after the header) committed so far: where a resumed
                // run continues.
                .col(big_integer("lines_done"))
                .col(big_integer("rows_written"))
                .col(big_integer("rows_bad"))
                .col(big_integer("started_at"))
                .col(big_integer_null("finished_at"))
                .to_owned(),
        )
        .await?;
        // What an account proved about its holder, per realm: one ID number
        // belongs to one account per realm.
        m.create_table(
            Table::create()
                .table("identity_proofs")
                .if_not_exists()
                .col(string("realm"))
                .col(string("user_id"))
                .col(string("id_index"))
                .col(blob("id_sealed"))
                .col(blob("name_sealed"))
                // L3 (registry), L4 (face), L5 (in person).
                .col(string("level"))
                // `registry`, `http`, `face`, `in_person`.
                .col(string("method"))
                .col(text("evidence"))
                .col(big_integer("verified_at"))
                .col(big_integer("consent_at"))
                .primary_key(Index::create().col("realm").col("user_id"))
                .to_owned(),
        )
        .await?;
        let mut idx = Index::create();
        idx.name("identity_proofs_id").table("identity_proofs").col("realm").col("id_index").unique().if_not_exists();
        m.create_index(idx.to_owned()).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["identity_proofs", "registry_imports", "registry_enterprises", "registry_persons"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
