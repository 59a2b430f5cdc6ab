//! The core provider: realms, clients, signing keys, users and their
//! identifiers, SSO sessions, grants, refresh tokens and the audit log.
//!
//! Times are Unix seconds (`big_integer`) so SQLite and PostgreSQL agree;
//! structured settings are JSON text, validated by the application.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn index(name: &str, table: &str, cols: &[&str], unique: bool) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(Alias::new(table)).if_not_exists();
    for c in cols {
        idx.col(Alias::new(*c));
    }
    if unique {
        idx.unique();
    }
    idx.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("meta")
                .if_not_exists()
                .col(string("key").primary_key())
                .col(blob("value"))
                .col(big_integer("updated_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("realms")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(text("settings"))
                .col(big_integer("generation"))
                .col(big_integer("created_at"))
                .col(big_integer("updated_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("clients")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("realm"))
                .col(string("client_id"))
                .col(text("settings"))
                .col(string_null("secret_hash"))
                .col(boolean("enabled"))
                .col(big_integer("created_at"))
                .col(big_integer("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("clients_realm_client", "clients", &["realm", "client_id"], true)).await?;

        m.create_table(
            Table::create()
                .table("signing_keys")
                .if_not_exists()
                .col(string("kid"))
                .col(string("realm"))
                .col(string("alg"))
                .col(blob("wrapped"))
                .col(text("public_jwk"))
                .col(big_integer("created_at"))
                .col(big_integer("activate_at"))
                .col(big_integer_null("retire_at"))
                .col(big_integer_null("expire_at"))
                .primary_key(Index::create().col("realm").col("kid"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("users")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("realm"))
                .col(string("status"))
                .col(string_null("password_hash"))
                .col(blob_null("profile_sealed"))
                .col(big_integer("created_at"))
                .col(big_integer("updated_at"))
                .col(big_integer_null("last_login_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("users_realm", "users", &["realm"], false)).await?;

        m.create_table(
            Table::create()
                .table("user_identifiers")
                .if_not_exists()
                .col(string("realm"))
                .col(string("kind"))
                .col(string("blind_index"))
                .col(string("user_id"))
                .col(blob("sealed"))
                .col(boolean("verified"))
                .col(big_integer("created_at"))
                .primary_key(Index::create().col("realm").col("kind").col("blind_index"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("user_identifiers_user", "user_identifiers", &["user_id"], false)).await?;

        m.create_table(
            Table::create()
                .table("sso_sessions")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("realm"))
                .col(string("user_id"))
                .col(string("token_hash"))
                .col(big_integer("auth_time"))
                .col(text("amr"))
                .col(string("acr"))
                .col(text("clients"))
                .col(big_integer("created_at"))
                .col(big_integer("last_seen_at"))
                .col(big_integer("expires_at"))
                .col(big_integer_null("ended_at"))
                .col(string_null("end_reason"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("sso_sessions_token", "sso_sessions", &["token_hash"], true)).await?;
        m.create_index(index("sso_sessions_user", "sso_sessions", &["realm", "user_id"], false)).await?;

        m.create_table(
            Table::create()
                .table("grants")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("realm"))
                .col(string("user_id"))
                .col(string("client_id"))
                .col(string("subject"))
                .col(text("scopes"))
                .col(big_integer("created_at"))
                .col(big_integer("updated_at"))
                .col(big_integer_null("revoked_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("grants_user_client", "grants", &["realm", "user_id", "client_id"], false)).await?;
        m.create_index(index("grants_subject", "grants", &["realm", "client_id", "subject"], false)).await?;

        m.create_table(
            Table::create()
                .table("refresh_tokens")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("realm"))
                .col(string("grant_id"))
                .col(string("family_id"))
                .col(string_null("session_id"))
                .col(string("token_hash"))
                .col(text("scope"))
                .col(text("context"))
                .col(boolean("offline"))
                .col(big_integer("created_at"))
                .col(big_integer("expires_at"))
                .col(big_integer_null("rotated_at"))
                .col(big_integer_null("revoked_at"))
                // The access token issued with it, denied if the family is revoked.
                .col(string_null("access_jti"))
                .col(big_integer_null("access_exp"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("refresh_tokens_hash", "refresh_tokens", &["token_hash"], true)).await?;
        m.create_index(index("refresh_tokens_grant", "refresh_tokens", &["grant_id"], false)).await?;
        m.create_index(index("refresh_tokens_family", "refresh_tokens", &["family_id"], false)).await?;

        m.create_table(
            Table::create()
                .table("audit_events")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string("realm"))
                .col(string("chain_id"))
                .col(big_integer("seq"))
                .col(string("prev_hash"))
                .col(string("hash"))
                .col(big_integer("at"))
                .col(string("kind"))
                .col(string("outcome"))
                .col(string_null("actor"))
                .col(string_null("client_id"))
                .col(string_null("ip"))
                .col(text("detail"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("audit_events_realm_at", "audit_events", &["realm", "at"], false)).await?;
        m.create_index(index("audit_events_chain", "audit_events", &["realm", "chain_id", "seq"], true)).await?;

        m.create_table(
            Table::create()
                .table("audit_checkpoints")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string("realm"))
                .col(big_integer("at"))
                .col(text("heads"))
                .col(text("signature"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("audit_checkpoints_realm", "audit_checkpoints", &["realm", "at"], false)).await?;

        m.create_table(
            Table::create()
                .table("admin_roles")
                .if_not_exists()
                .col(string("user_id"))
                .col(string("role"))
                .col(string("realm"))
                .col(big_integer("created_at"))
                .primary_key(Index::create().col("user_id").col("role").col("realm"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "admin_roles",
            "audit_checkpoints",
            "audit_events",
            "refresh_tokens",
            "grants",
            "sso_sessions",
            "user_identifiers",
            "users",
            "signing_keys",
            "clients",
            "realms",
            "meta",
        ] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
