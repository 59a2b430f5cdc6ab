//! Verifying a realm's audit log: every chain links entry to entry with
//! intact hashes and no gaps, every checkpoint is signed by the realm's
//! audit key, and every head a checkpoint pins is still there. The first
//! problem found is named by entry id.
use std::collections::BTreeMap;

use serde_json::Value;

use super::checkpoint::{self, Head};
use crate::crypto::jws;
use crate::crypto::seal::Kek;
use crate::store::Db;
use crate::store::audit::{self as table, EntryRecord, EventRow};

#[derive(Debug, Default)]
pub struct Report {
    pub chains: usize,
    pub entries: u64,
    pub checkpoints: usize,
}

const PAGE: u64 = 1000;

fn recompute(e: &EntryRecord) -> String {
    super::entry_hash(&EventRow {
        realm: e.realm.clone(),
        chain_id: e.chain_id.clone(),
        seq: e.seq,
        prev_hash: e.prev_hash.clone(),
        hash: String::new(),
        at: e.at,
        kind: e.kind.clone(),
        outcome: e.outcome.clone(),
        actor: e.actor.clone(),
        client_id: e.client_id.clone(),
        ip: e.ip.clone(),
        detail: e.detail.clone(),
    })
}

pub async fn verify(db: &Db, kek: &Kek, realm: &str) -> Result<Report, String> {
    let mut report = Report::default();
    // Checkpoints first: they anchor chains whose beginning was retired.
    let records = table::checkpoints(db, realm).await.map_err(|e| e.to_string())?;
    let key = checkpoint::audit_key(db, kek, realm, false).await?;
    let mut pinned: Vec<(i64, BTreeMap<String, Head>)> = Vec::new();
    for cp in &records {
        let key = key.as_ref().ok_or_else(|| format!("checkpoint {} exists but the realm has no audit key", cp.id))?;
        let jwt = jws::verify(&cp.signature, std::slice::from_ref(key.public_jwk()), &["ES256"])
            .map_err(|_| format!("checkpoint {}: the signature does not verify", cp.id))?;
        let heads: BTreeMap<String, Head> =
            serde_json::from_value(jwt.claims.get("heads").cloned().unwrap_or(Value::Null))
                .map_err(|_| format!("checkpoint {}: unreadable", cp.id))?;
        let stored: BTreeMap<String, Head> = serde_json::from_str(&cp.heads).unwrap_or_default();
        if stored != heads || jwt.claims.get("realm").and_then(Value::as_str) != Some(realm) {
            return Err(format!("checkpoint {}: its stored heads differ from what was signed", cp.id));
        }
        pinned.push((cp.id, heads));
    }
    report.checkpoints = pinned.len();

    let chains = table::chain_heads(db, realm).await.map_err(|e| e.to_string())?;
    let mut last_seq: BTreeMap<String, (i64, i64)> = BTreeMap::new(); // chain -> (first seq, last seq)
    for (chain, _) in &chains {
        let mut prev: Option<EntryRecord> = None;
        let mut after = 0;
        let mut first_seq = 0;
        loop {
            let page = table::chain_page(db, realm, chain, after, PAGE).await.map_err(|e| e.to_string())?;
            if page.is_empty() {
                break;
            }
            for e in page {
                match &prev {
                    None => {
                        first_seq = e.seq;
                        if e.seq == 1 {
                            if !e.prev_hash.is_empty() {
                                return Err(format!(
                                    "entry {}: the first entry of chain {chain} links to a predecessor",
                                    e.id
                                ));
                            }
                        } else {
                            let anchored = pinned.iter().any(|(_, h)| {
                                h.get(chain).is_some_and(|h| h.seq == e.seq - 1 && h.hash == e.prev_hash)
                            });
                            if !anchored {
                                return Err(format!(
                                    "entry {}: the entries of chain {chain} before seq {} are missing",
                                    e.id, e.seq
                                ));
                            }
                        }
                    }
                    Some(p) => {
                        if e.seq != p.seq + 1 {
                            return Err(format!(
                                "entry {}: entries of chain {chain} between seq {} and {} are missing (deleted after entry {})",
                                e.id, p.seq, e.seq, p.id
                            ));
                        }
                        if e.prev_hash != p.hash {
                            return Err(format!(
                                "entry {}: does not follow entry {} (inserted or reordered)",
                                e.id, p.id
                            ));
                        }
                    }
                }
                if recompute(&e) != e.hash {
                    return Err(format!("entry {}: its content was changed", e.id));
                }
                after = e.seq;
                report.entries += 1;
                prev = Some(e);
            }
        }
        last_seq.insert(chain.clone(), (first_seq, after));
    }
    report.chains = chains.len();

    // Retention may have removed whole chains that the oldest checkpoint
    // (the anchor) pins and that did not grow after it.
    let anchor = pinned.first().map(|(_, h)| h.clone()).unwrap_or_default();
    for (id, heads) in &pinned {
        for (chain, head) in heads {
            match last_seq.get(chain) {
                None if anchor.get(chain).is_some_and(|a| a.seq == head.seq) => {}
                None => {
                    return Err(format!("checkpoint {id}: chain {chain} (up to seq {}) has been removed", head.seq));
                }
                Some((_, last)) if head.seq > *last => {
                    return Err(format!(
                        "checkpoint {id}: chain {chain} was cut off: it ends at seq {last}, the checkpoint saw seq {}",
                        head.seq
                    ));
                }
                Some((first, _)) if head.seq < *first => {} // retired by retention
                Some(_) => {
                    let e = table::entry(db, realm, chain, head.seq).await.map_err(|e| e.to_string())?;
                    if e.as_ref().is_none_or(|e| e.hash != head.hash) {
                        let id_of = e.map(|e| e.id.to_string()).unwrap_or_else(|| "?".into());
                        return Err(format!("entry {id_of}: differs from what checkpoint {id} signed"));
                    }
                }
            }
        }
    }
    Ok(report)
}

/// Retention: deletes entries written before `before` (Unix seconds) up to
/// the newest checkpoint older than that, which stays as the anchor.
/// Refuses to prune a log that does not verify.
pub async fn prune(db: &Db, kek: &Kek, realm: &str, before: i64) -> Result<u64, String> {
    verify(db, kek, realm).await?;
    let records = table::checkpoints(db, realm).await.map_err(|e| e.to_string())?;
    let Some(anchor) = records.iter().rev().find(|c| c.at < before) else {
        return Ok(0);
    };
    let heads: BTreeMap<String, Head> = serde_json::from_str(&anchor.heads).map_err(|e| e.to_string())?;
    let mut removed = 0;
    for (chain, head) in heads {
        removed += table::prune_chain(db, realm, &chain, head.seq).await.map_err(|e| e.to_string())?;
    }
    table::prune_checkpoints(db, realm, anchor.id).await.map_err(|e| e.to_string())?;
    Ok(removed)
}
