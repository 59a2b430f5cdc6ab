//! Indexes for removing what no longer serves anyone (`store::housekeeping`):
//! refresh tokens by expiry, finished back-channel deliveries by the time
//! they finished. Ended sessions and applied registry changes already have
//! theirs.
use sea_orm_migration::prelude::*;

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Expiry alone: with `realm` in front the planner would also take it
        // for a realm's lookups by session and scan the realm's tokens.
        m.create_index(index("refresh_tokens_expiry", "refresh_tokens", &["expires_at"])).await?;
        m.create_index(index("logout_deliveries_finished", "logout_deliveries", &["finished_at"])).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop().name("logout_deliveries_finished").table(Alias::new("logout_deliveries")).to_owned(),
        )
        .await?;
        m.drop_index(Index::drop().name("refresh_tokens_expiry").table(Alias::new("refresh_tokens")).to_owned()).await
    }
}
