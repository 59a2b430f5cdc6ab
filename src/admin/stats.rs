//! The numbers a city reports: accounts, live sessions, sign-ins per day per
//! portal, tokens per day per grant. Counted by the database, never by
//! loading rows into memory.
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use serde_json::{Value, json};

use super::Problem;
use crate::state::AppState;
use crate::store::entities::audit_event;
use crate::store::{now, sessions, users};

/// Per day (UTC) and key, from audit entries of `kinds` that succeeded.
async fn per_day(
    state: &AppState,
    realm: &str,
    kind_prefix: &str,
    key: &str,
    since: i64,
) -> Result<Vec<Value>, Problem> {
    let day = "at / 86400";
    let key_col = match key {
        "client" => audit_event::Column::ClientId,
        _ => audit_event::Column::Kind,
    };
    let rows: Vec<(i64, Option<String>, i64)> = audit_event::Entity::find()
        .select_only()
        .column_as(Expr::cust(day), "day")
        .column_as(key_col, "k")
        .column_as(audit_event::Column::Id.count(), "n")
        .filter(audit_event::Column::Realm.eq(realm))
        .filter(audit_event::Column::Kind.starts_with(kind_prefix))
        .filter(audit_event::Column::Outcome.eq("success"))
        .filter(audit_event::Column::At.gte(since))
        .group_by(Expr::cust(day))
        .group_by(key_col)
        .into_tuple()
        .all(&state.db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(d, k, n)| {
            let date = chrono::DateTime::from_timestamp(d * 86_400, 0).map(|t| t.format("%Y-%m-%d").to_string());
            json!({ "day": date, key: k, "count": n })
        })
        .collect())
}

pub async fn realm_statistics(state: &AppState, realm: &str, days: i64) -> Result<Value, Problem> {
    let t = now();
    let since = (t / 86_400 - days.clamp(1, 366) + 1) * 86_400;
    let accounts = users::count(&state.db, realm).await?;
    let live = sessions::count_live(&state.db, realm, t).await?;
    Ok(json!({
        "realm": realm,
        "accounts": { "registered": accounts, "by_level": { "L2": accounts } },
        "sso_sessions_active": live,
        "signins_per_day": per_day(state, realm, "signin.", "client", since).await?,
        "tokens_per_day": per_day(state, realm, "token.issued", "client", since).await?,
    }))
}
