//! Refresh tokens by session: ending a session revokes its refresh tokens,
//! and the portals that were issued one in a session are told at its end
//! (the token row records the portal's participation, so an SSO round
//! needs no write to the session row). Without this index both were a scan
//! of every refresh token.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("refresh_tokens_session")
                .table(Alias::new("refresh_tokens"))
                .col(Alias::new("session_id"))
                .if_not_exists()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("refresh_tokens_session").table(Alias::new("refresh_tokens")).to_owned()).await
    }
}
