//! What a registry import changed that matters to accounts, applied to them.
//!
//! An import records each change — a person newly `deceased`, a known
//! enterprise whose legal representative changed (`rep_changed`), one newly
//! revoked or cancelled (`closed`) — in `registry_changes`, in the
//! transaction of the batch that made it, so a change is never lost however
//! the import ends (killed, a database error, `--on-error abort`). Pending
//! changes are applied here: by `civid registry import` before it starts
//! (earlier runs' leftovers) and after it ends, by `civid registry
//! apply-changes`, and by every `civid serve` node every
//! `registry_apply_secs`.
//!
//! Exactly once: each effect (a demotion, an ended claim with its revoked
//! delegations) commits together with its audit entry and only if the state
//! it starts from still holds, so applying a change again — after a stopped
//! run, or on two nodes at once — neither demotes nor audits twice; sessions
//! end before (ending them again is harmless). A change is marked applied in
//! the transaction of its last effect, or, with nothing to do, with the
//! others of its page. Pending changes are read a page at a time, so memory
//! stays flat however many there are.
use crate::state::AppState;
use crate::store::registry::{self as rstore, CLOSED, ChangeRecord, DECEASED, REP_CHANGED};

/// Pending changes read at a time.
const PAGE: u64 = 500;

/// What applying changes did (one change, or a pass over all pending ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Changes this pass marked applied.
    pub changes: u64,
    pub accounts_demoted: u64,
    pub claims_ended: u64,
    pub delegations_revoked: u64,
    pub sessions_ended: u64,
    /// The change was marked applied with its last effect (one change).
    pub marked: bool,
}

impl Effects {
    fn add(&mut self, o: Effects) {
        self.accounts_demoted += o.accounts_demoted;
        self.claims_ended += o.claims_ended;
        self.delegations_revoked += o.delegations_revoked;
        self.sessions_ended += o.sessions_ended;
    }
}

impl std::fmt::Display for Effects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} changes applied ({} accounts demoted to L2, {} enterprise claims ended, {} delegations revoked, \
             {} sessions ended)",
            self.changes, self.accounts_demoted, self.claims_ended, self.delegations_revoked, self.sessions_ended
        )
    }
}

/// Applies one change (not yet marking it, unless its last effect did).
async fn apply_one(state: &AppState, c: &ChangeRecord) -> crate::error::Result<Option<Effects>> {
    let fx = match c.kind.as_str() {
        DECEASED => crate::realname::registry_deceased_one(state, &c.blind_index, Some(c)).await?,
        REP_CHANGED | CLOSED => {
            crate::realname::enterprise::registry_changed_one(state, &c.blind_index, c.created_at, Some(c)).await?
        }
        _ => return Ok(None),
    };
    Ok(Some(fx))
}

/// Applies every change pending when it starts, oldest first, a page at a
/// time. Stops at the first error (what was applied stays applied; the rest
/// stays pending for the next pass) and says which change.
pub async fn apply_pending(state: &AppState) -> Result<Effects, String> {
    let dberr = |e: sea_orm::DbErr| format!("database: {e}");
    let mut total = Effects::default();
    let Some(upto) = rstore::changes_pending_last(&state.db).await.map_err(dberr)? else {
        return Ok(total);
    };
    let mut after = 0;
    loop {
        let page = rstore::changes_pending_page(&state.db, after, upto, PAGE).await.map_err(dberr)?;
        let Some(tail) = page.last() else { break };
        after = tail.id;
        // Changes with nothing to do (or done elsewhere meanwhile) are
        // marked together at the end of the page.
        let mut unmarked = Vec::new();
        let mut failed = None;
        for c in &page {
            match apply_one(state, c).await {
                Ok(Some(fx)) => {
                    total.add(fx);
                    if fx.marked {
                        total.changes += 1;
                    } else {
                        unmarked.push(c.id);
                    }
                }
                Ok(None) => tracing::warn!(
                    change = c.id,
                    kind = c.kind.as_str(),
                    "registry change of an unknown kind left pending"
                ),
                Err(e) => {
                    failed = Some(format!("registry change {} ({}, import {}): {e}", c.id, c.kind, c.import_id));
                    break;
                }
            }
        }
        total.changes +=
            rstore::changes_mark_applied(&state.db, &unmarked, crate::store::now()).await.map_err(dberr)?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(total)
}
