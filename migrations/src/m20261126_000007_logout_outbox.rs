//! Back-channel logout: the durable outbox of logout tokens to deliver (one
//! row per ended session and portal) and every delivery attempt; indexes
//! that let the expiry job find sessions past their lifetimes.
use sea_orm_migration::{prelude::*, schema::*};

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("logout_deliveries")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("realm"))
                .col(string("client_id"))
                // The ended session (`sid`) and whose it was.
                .col(string("session_id"))
                .col(string("user_id"))
                // The `sub` this portal knows the person by (pairwise or public).
                .col(string("subject"))
                // The portal's backchannel_logout_uri when the session ended.
                .col(text("uri"))
                .col(string("reason"))
                // pending, delivered, failed (given up)
                .col(string("state"))
                .col(integer("attempts"))
                .col(big_integer("created_at"))
                .col(big_integer("next_attempt_at"))
                // Retries stop after this time.
                .col(big_integer("deadline"))
                // A worker's claim: no other node sends while it holds it.
                .col(string_null("lease"))
                .col(big_integer_null("lease_until"))
                .col(integer_null("last_status"))
                .col(text_null("last_error"))
                .col(big_integer_null("finished_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("logout_deliveries_due", "logout_deliveries", &["state", "next_attempt_at"])).await?;
        m.create_index(index("logout_deliveries_client", "logout_deliveries", &["realm", "client_id", "state"]))
            .await?;
        m.create_index(index("logout_deliveries_user", "logout_deliveries", &["realm", "user_id"])).await?;
        m.create_index(index("logout_deliveries_session", "logout_deliveries", &["realm", "session_id"])).await?;
        m.create_table(
            Table::create()
                .table("logout_attempts")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string("delivery_id"))
                .col(integer("n"))
                .col(big_integer("at"))
                .col(integer("duration_ms"))
                // The portal's HTTP status, if it answered.
                .col(integer_null("status"))
                .col(text_null("error"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("logout_attempts_delivery", "logout_attempts", &["delivery_id"])).await?;
        // The expiry job's queries: live sessions past their absolute or idle lifetime.
        m.create_index(index("sso_sessions_live_expiry", "sso_sessions", &["realm", "ended_at", "expires_at"])).await?;
        m.create_index(index("sso_sessions_live_idle", "sso_sessions", &["realm", "ended_at", "last_seen_at"])).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [("sso_sessions_live_expiry", "sso_sessions"), ("sso_sessions_live_idle", "sso_sessions")]
        {
            m.drop_index(Index::drop().name(name).table(Alias::new(table)).if_exists().to_owned()).await?;
        }
        for t in ["logout_attempts", "logout_deliveries"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
