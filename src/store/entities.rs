//! sea-orm entities, one per table of `migrations/`. Only `store/` uses them;
//! the rest of civid sees domain types.
macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}
        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod meta {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "meta")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: Vec<u8>,
        pub updated_at: i64,
    }
    no_relations!();
}

pub mod realm {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "realms")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub settings: String,
        pub generation: i64,
        pub created_at: i64,
        pub updated_at: i64,
    }
    no_relations!();
}

pub mod client {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "clients")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub realm: String,
        pub client_id: String,
        pub settings: String,
        pub secret_hash: Option<String>,
        pub enabled: bool,
        pub created_at: i64,
        pub updated_at: i64,
    }
    no_relations!();
}

pub mod signing_key {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "signing_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub realm: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub kid: String,
        pub alg: String,
        pub wrapped: Vec<u8>,
        pub public_jwk: String,
        pub created_at: i64,
        pub activate_at: i64,
        pub retire_at: Option<i64>,
        pub expire_at: Option<i64>,
    }
    no_relations!();
}

pub mod user {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub realm: String,
        pub status: String,
        pub password_hash: Option<String>,
        pub profile_sealed: Option<Vec<u8>>,
        pub created_at: i64,
        pub updated_at: i64,
        pub last_login_at: Option<i64>,
        /// A cancelled account's personal data is deleted after this time.
        pub purge_after: Option<i64>,
    }
    no_relations!();
}

pub mod user_identifier {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_identifiers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub realm: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub blind_index: String,
        pub user_id: String,
        pub sealed: Vec<u8>,
        pub verified: bool,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod sso_session {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sso_sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub realm: String,
        pub user_id: String,
        pub token_hash: String,
        pub auth_time: i64,
        pub amr: String,
        pub acr: String,
        pub clients: String,
        pub created_at: i64,
        pub last_seen_at: i64,
        pub expires_at: i64,
        pub ended_at: Option<i64>,
        pub end_reason: Option<String>,
        /// Where and on what it started, for the person's session list.
        pub ip: Option<String>,
        pub user_agent: Option<String>,
        /// Whom the person acts as (chosen at sign-in): `self`, or the blind
        /// index of an enterprise's credit code; None until chosen.
        pub acting: Option<String>,
    }
    no_relations!();
}

pub mod grant {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "grants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub realm: String,
        pub user_id: String,
        pub client_id: String,
        pub subject: String,
        pub scopes: String,
        pub created_at: i64,
        pub updated_at: i64,
        pub revoked_at: Option<i64>,
    }
    no_relations!();
}

pub mod refresh_token {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub realm: String,
        pub grant_id: String,
        pub family_id: String,
        pub session_id: Option<String>,
        pub token_hash: String,
        pub scope: String,
        pub context: String,
        pub offline: bool,
        pub created_at: i64,
        pub expires_at: i64,
        pub rotated_at: Option<i64>,
        pub revoked_at: Option<i64>,
        pub access_jti: Option<String>,
        pub access_exp: Option<i64>,
    }
    no_relations!();
}

pub mod audit_event {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub realm: String,
        pub chain_id: String,
        pub seq: i64,
        pub prev_hash: String,
        pub hash: String,
        pub at: i64,
        pub kind: String,
        pub outcome: String,
        pub actor: Option<String>,
        pub client_id: Option<String>,
        pub ip: Option<String>,
        pub detail: String,
    }
    no_relations!();
}

pub mod audit_checkpoint {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_checkpoints")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub realm: String,
        pub at: i64,
        pub heads: String,
        pub signature: String,
    }
    no_relations!();
}

pub mod admin_role {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "admin_roles")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub role: String,
        /// The realm the role applies to, or `*` for every realm.
        #[sea_orm(primary_key, auto_increment = false)]
        pub realm: String,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod credential {
    use sea_orm::entity::prelude::*;
    /// A passkey or a TOTP secret of a person.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "credentials")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub realm: String,
        pub user_id: String,
        pub kind: String,
        pub name: String,
        pub lookup: Option<String>,
        pub sealed: Vec<u8>,
        pub created_at: i64,
        pub last_used_at: Option<i64>,
    }
    no_relations!();
}

pub mod registry_person {
    use sea_orm::entity::prelude::*;
    /// A row of the population registry (自然人基础数据库), sealed.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "registry_persons")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id_index: String,
        pub id_sealed: Vec<u8>,
        pub name_sealed: Vec<u8>,
        pub status: String,
        pub updated_at: i64,
        pub import_id: String,
    }
    no_relations!();
}

pub mod registry_enterprise {
    use sea_orm::entity::prelude::*;
    /// A row of the legal-person registry (法人基础数据库), sealed.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "registry_enterprises")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub uscc_index: String,
        pub uscc_sealed: Vec<u8>,
        pub name_sealed: Vec<u8>,
        pub rep_index: String,
        pub rep_name_sealed: Vec<u8>,
        pub status: String,
        pub updated_at: i64,
        pub import_id: String,
    }
    no_relations!();
}

pub mod registry_import {
    use sea_orm::entity::prelude::*;
    /// One run of `civid registry import`, resumable.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "registry_imports")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub kind: String,
        pub file_sha256: String,
        pub file_name: String,
        pub status: String,
        pub lines_done: i64,
        pub rows_written: i64,
        pub rows_bad: i64,
        pub started_at: i64,
        pub finished_at: Option<i64>,
        /// Changes that matter to accounts, counted over the whole import
        /// (every run of it): persons newly deceased, enterprises with a new
        /// legal representative, enterprises newly revoked or cancelled.
        pub deceased: i64,
        pub rep_changed: i64,
        pub closed: i64,
    }
    no_relations!();
}

pub mod registry_change {
    use sea_orm::entity::prelude::*;
    /// A change of a registry that matters to accounts, recorded with the
    /// import batch that made it; pending until its consequences are applied.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "registry_changes")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub import_id: String,
        /// `deceased`, `rep_changed` or `closed`.
        pub kind: String,
        /// Blind index of the person's ID number or the enterprise's credit code.
        pub blind_index: String,
        pub created_at: i64,
        pub applied_at: Option<i64>,
    }
    no_relations!();
}

pub mod identity_proof {
    use sea_orm::entity::prelude::*;
    /// What an account proved about its holder in a realm (L3 and up).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_proofs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub realm: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        pub id_index: String,
        pub id_sealed: Vec<u8>,
        pub name_sealed: Vec<u8>,
        pub level: String,
        pub method: String,
        pub evidence: String,
        pub verified_at: i64,
        pub consent_at: i64,
    }
    no_relations!();
}

pub mod enterprise {
    use sea_orm::entity::prelude::*;
    /// An enterprise claimed in a realm by its legal representative.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "enterprises")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub realm: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub uscc_index: String,
        pub uscc_sealed: Vec<u8>,
        pub name_sealed: Vec<u8>,
        pub rep_user_id: String,
        pub claimed_at: i64,
    }
    no_relations!();
}

pub mod delegation {
    use sea_orm::entity::prelude::*;
    /// An agent (经办人) acting for an enterprise, appointed by its representative.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "delegations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub realm: String,
        pub uscc_index: String,
        pub user_id: String,
        pub role: String,
        pub expires_at: i64,
        pub created_by: String,
        pub created_at: i64,
        pub revoked_at: Option<i64>,
    }
    no_relations!();
}

pub mod guardian {
    use sea_orm::entity::prelude::*;
    /// A guardian who confirmed a minor's verification online.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "guardians")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub realm: String,
        pub minor_user_id: String,
        pub guardian_user_id: String,
        pub relationship: String,
        pub consent_at: i64,
        pub confirmed_at: i64,
    }
    no_relations!();
}
