//! What a realm and its clients are: the settings declared in realm files
//! (`config/realms/*.toml`), stored as JSON in the database and edited by the
//! admin API. Defaults here are the defaults of a government IdP.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::keys::Alg;

/// Realm names appear in URLs and cookie names: lowercase letters, digits, `-`.
pub fn valid_realm_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealmSettings {
    pub display_name: String,
    pub display_name_en: String,
    pub tokens: TokenSettings,
    pub session: SessionSettings,
    pub keys: KeySettings,
    /// RFC 9068 `aud` when a request names no resource. Empty: the issuer.
    pub default_audience: String,
    /// Resource servers (RFC 8707) a client may ask tokens for.
    pub resources: Vec<Resource>,
    /// Which claims each scope releases.
    pub scopes: BTreeMap<String, ScopeSettings>,
    /// Identifiers a person may sign in with.
    pub login_identifiers: Vec<String>,
    pub audit: AuditSettings,
    pub accounts: AccountSettings,
    pub realname: RealNameSettings,
    pub backchannel: BackchannelSettings,
}

/// Back-channel logout (OpenID Connect Back-Channel Logout 1.0): how long
/// civid keeps trying to deliver a logout token to a portal that does not
/// answer, and how it spaces the tries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackchannelSettings {
    /// After this long (from the session's end) a portal that never took
    /// its logout token is given up on; the failure shows in the admin API.
    pub retry_window_secs: u64,
    /// The wait before the first retry; it doubles with each failure
    /// (with jitter), up to `retry_max_secs`.
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
}

impl Default for BackchannelSettings {
    fn default() -> Self {
        BackchannelSettings { retry_window_secs: 3600, retry_initial_secs: 2, retry_max_secs: 300 }
    }
}

/// Real-name verification (L3): where a name and an ID number are checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealNameSettings {
    /// `registry` (the imported population registry) or `http` (an external
    /// verification service, `verifier_url` in the node settings).
    pub verifier: String,
    /// `trust_framework` of `verified_claims` (OpenID Connect for Identity
    /// Assurance).
    pub trust_framework: String,
    /// Failed matches allowed per account and per ID number a day, so the
    /// form cannot probe the registry.
    pub failures_per_day: u32,
    /// Younger people cannot verify without a guardian (PIPL Art. 31).
    pub min_age: u32,
    /// How a person younger than `min_age` is verified: `service_hall`
    /// (refused online, sent to a service hall with a guardian) or
    /// `guardian` (after the registry matches, a guardian — an adult L3
    /// citizen of the realm — confirms online with a one-time code).
    pub minors: String,
}

impl Default for RealNameSettings {
    fn default() -> Self {
        RealNameSettings {
            verifier: "registry".into(),
            trust_framework: "cn_real_name".into(),
            failures_per_day: 5,
            min_age: 14,
            minors: "service_hall".into(),
        }
    }
}

/// What citizens may do with their accounts in this realm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountSettings {
    /// How people may sign in: `password`, `sms` (a one-time code, no
    /// password), `passkey`.
    pub sign_in_methods: Vec<String>,
    /// Whether a person may add a TOTP app (RFC 6238) as a second factor.
    pub totp: bool,
    /// How people may register themselves: `phone`, `email`. Empty: only
    /// operators create accounts.
    pub registration: Vec<String>,
    pub password: PasswordPolicy,
    /// After a person cancels their account (注销), their personal data is
    /// kept this many days, then deleted; the phone and email become free
    /// again only then.
    pub cancellation_retention_days: u64,
    /// The realm's logo on every page: a path on this server or a `data:` URI
    /// (the pages' CSP loads images from nowhere else). Empty: none.
    pub logo: String,
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            sign_in_methods: vec!["password".into(), "sms".into(), "passkey".into()],
            totp: true,
            registration: vec!["phone".into(), "email".into()],
            password: PasswordPolicy::default(),
            cancellation_retention_days: 30,
            logo: String::new(),
        }
    }
}

impl AccountSettings {
    pub fn allows(&self, method: &str) -> bool {
        self.sign_in_methods.iter().any(|m| m == method)
    }

    pub fn registers_by(&self, kind: &str) -> bool {
        self.registration.iter().any(|m| m == kind)
    }
}

/// Rules a new password must meet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub max_length: usize,
    /// Lowest zxcvbn score (0–4) accepted; 1 or more refuses the most common
    /// passwords and simple variations of them.
    pub min_score: u8,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy { min_length: 8, max_length: 128, min_score: 2 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Audit entries are kept this many days (at least 183: the
    /// Cybersecurity Law requires six months of logs).
    pub retention_days: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { retention_days: 3 * 365 }
    }
}

impl Default for RealmSettings {
    fn default() -> Self {
        let mut scopes = BTreeMap::new();
        let mut scope = |name: &str, claims: &[&str]| {
            scopes.insert(name.to_string(), ScopeSettings { claims: claims.iter().map(|c| c.to_string()).collect() });
        };
        scope("openid", &[]);
        scope("profile", &["name", "preferred_username", "updated_at"]);
        scope("email", &["email", "email_verified"]);
        scope("phone", &["phone_number", "phone_number_verified"]);
        scope("offline_access", &[]);
        scope("realname", &["name", "birthdate", "gender", "id_number"]);
        scope("enterprise", &["org_uscc", "org_name", "org_role"]);
        RealmSettings {
            display_name: String::new(),
            display_name_en: String::new(),
            tokens: TokenSettings::default(),
            session: SessionSettings::default(),
            keys: KeySettings::default(),
            default_audience: String::new(),
            resources: Vec::new(),
            scopes,
            login_identifiers: vec!["phone".into(), "email".into(), "username".into()],
            audit: AuditSettings::default(),
            accounts: AccountSettings::default(),
            realname: RealNameSettings::default(),
            backchannel: BackchannelSettings::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettings {
    pub code_ttl_secs: u64,
    pub id_token_ttl_secs: u64,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub offline_token_ttl_secs: u64,
    /// Default signature of ID tokens; a client may choose another.
    pub id_token_alg: Alg,
    /// Signature of JWT access tokens (RFC 9068); a resource may choose another.
    pub access_token_alg: Alg,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            code_ttl_secs: 60,
            id_token_ttl_secs: 600,
            access_token_ttl_secs: 600,
            refresh_token_ttl_secs: 8 * 3600,
            offline_token_ttl_secs: 30 * 24 * 3600,
            id_token_alg: Alg::RS256,
            access_token_alg: Alg::ES256,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// A session unused this long ends.
    pub idle_secs: u64,
    /// A session ends this long after sign-in, used or not.
    pub absolute_secs: u64,
    /// RP-Initiated Logout with an `id_token_hint` of the browser's own
    /// session: ask the person to confirm anyway (without such a hint they
    /// are always asked).
    pub confirm_logout: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings { idle_secs: 2 * 3600, absolute_secs: 12 * 3600, confirm_logout: false }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeySettings {
    /// How long a new key is published in the JWKS before it signs anything,
    /// so relying parties that cache the JWKS know it in time.
    pub rotation_lead_secs: u64,
    /// Extra time a retired key stays published after the last token it
    /// signed expired (clock skew, caches).
    pub retire_margin_secs: u64,
}

impl Default for KeySettings {
    fn default() -> Self {
        KeySettings { rotation_lead_secs: 3600, retire_margin_secs: 300 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub uri: String,
    #[serde(default)]
    pub access_token_alg: Option<Alg>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopeSettings {
    pub claims: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
}

impl AuthMethod {
    pub const ALL: [&'static str; 4] = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<AuthMethod> {
        match s {
            "client_secret_basic" => Some(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(AuthMethod::ClientSecretPost),
            "private_key_jwt" => Some(AuthMethod::PrivateKeyJwt),
            "none" => Some(AuthMethod::None),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectType {
    Pairwise,
    Public,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientSettings {
    pub name: String,
    pub name_en: String,
    pub client_uri: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: AuthMethod,
    /// SHA-256 (hex) of the client secret, for clients declared in files.
    /// Clients added with `civid client add` keep their secret out of files.
    pub secret_sha256: Option<String>,
    /// Public keys for `private_key_jwt`, inline…
    pub jwks: Option<serde_json::Value>,
    /// …or fetched from the client.
    pub jwks_uri: Option<String>,
    /// Older clients may put the token endpoint URL in `aud` of their
    /// assertions; new ones must use the issuer (RFC 7523bis).
    pub allow_token_endpoint_audience: bool,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    /// Skips the consent page (portals the city itself runs).
    pub first_party: bool,
    /// Only a confidential legacy client may be exempted; its use is audited.
    pub pkce_exempt: bool,
    pub subject_type: SubjectType,
    /// Pairwise `sub` is stable per sector; by default the redirect URIs' host.
    pub sector_identifier: String,
    pub id_token_signed_response_alg: Option<Alg>,
    /// How strongly a person must have authenticated for this portal
    /// (step-up): `any`, `mfa` (a second factor or a passkey), `passkey`.
    pub require_authn: RequireAuthn,
    /// Whether the portal may see the full ID number (scope `realname`);
    /// others get it masked (`3702**********1234`).
    pub release_id_number: bool,
    /// Where a citizen who does not reach the identity level the portal
    /// asked for (`acr_values`) is sent instead of the portal's redirect URI
    /// with `unmet_authentication_requirements` (for example the portal's
    /// page explaining the other ways to get the service).
    pub acr_fallback_uri: Option<String>,
    /// Front-Channel Logout 1.0: the portal's page that the logout page
    /// loads in a hidden iframe (https, or http on loopback).
    pub frontchannel_logout_uri: Option<String>,
    /// Whether that page gets `iss` and `sid` (the spec's default: no).
    pub frontchannel_logout_session_required: bool,
    /// Where civid POSTs a logout token when a session the portal took part
    /// in ends (OpenID Connect Back-Channel Logout 1.0): https, or http on
    /// loopback for development.
    pub backchannel_logout_uri: Option<String>,
    /// Whether the portal needs `sid` in logout tokens (civid always sends it).
    pub backchannel_logout_session_required: bool,
    pub enabled: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequireAuthn {
    #[default]
    Any,
    Mfa,
    Passkey,
}

impl RequireAuthn {
    /// Whether a session authenticated with these `amr` values suffices.
    pub fn met_by(self, amr: &[String]) -> bool {
        let has = |m: &str| amr.iter().any(|a| a == m);
        match self {
            RequireAuthn::Any => true,
            RequireAuthn::Mfa => has("mfa") || has("hwk") || has("swk"),
            RequireAuthn::Passkey => has("hwk") || has("swk"),
        }
    }
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            name: String::new(),
            name_en: String::new(),
            client_uri: String::new(),
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
            secret_sha256: None,
            jwks: None,
            jwks_uri: None,
            allow_token_endpoint_audience: false,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            scopes: vec!["openid".into(), "profile".into(), "email".into(), "phone".into(), "offline_access".into()],
            first_party: false,
            pkce_exempt: false,
            subject_type: SubjectType::Pairwise,
            sector_identifier: String::new(),
            id_token_signed_response_alg: None,
            require_authn: RequireAuthn::Any,
            release_id_number: false,
            acr_fallback_uri: None,
            frontchannel_logout_uri: None,
            frontchannel_logout_session_required: false,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: true,
            enabled: true,
        }
    }
}

impl ClientSettings {
    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == AuthMethod::None
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// The sector of pairwise subjects: explicit, else the host shared by the
    /// redirect URIs (OIDC Core 8.1), else the client id.
    pub fn sector(&self, client_id: &str) -> String {
        if !self.sector_identifier.is_empty() {
            return self.sector_identifier.clone();
        }
        let hosts: Vec<String> = self
            .redirect_uris
            .iter()
            .filter_map(|u| url::Url::parse(u).ok())
            .map(|u| u.host_str().map(str::to_string).unwrap_or_else(|| u.scheme().to_string()))
            .collect();
        match hosts.first() {
            Some(h) if hosts.iter().all(|x| x == h) => h.clone(),
            _ => format!("client:{client_id}"),
        }
    }

    /// Checks what serde cannot: returns the first problem in words.
    pub fn validate(&self) -> Result<(), String> {
        for uri in &self.redirect_uris {
            validate_redirect_uri(uri, self.is_public())?;
        }
        for uri in &self.post_logout_redirect_uris {
            validate_redirect_uri(uri, self.is_public())?;
        }
        if let Some(uri) = &self.acr_fallback_uri {
            validate_redirect_uri(uri, self.is_public())?;
        }
        if let Some(uri) = &self.frontchannel_logout_uri {
            validate_web_uri("front-channel logout URI", uri)?;
        }
        if let Some(uri) = &self.backchannel_logout_uri {
            validate_backchannel_logout_uri(uri)?;
        }
        for g in &self.grant_types {
            if !["authorization_code", "refresh_token", "client_credentials"].contains(&g.as_str()) {
                return Err(format!(
                    "grant type {g:?} is not supported (authorization_code, refresh_token, client_credentials)"
                ));
            }
        }
        if self.allows_grant("authorization_code") && self.redirect_uris.is_empty() {
            return Err("a client with the authorization_code grant needs at least one redirect_uri".into());
        }
        if self.is_public() && self.allows_grant("client_credentials") {
            return Err("a public client cannot use client_credentials".into());
        }
        if self.is_public() && self.pkce_exempt {
            return Err("only a confidential client may be exempted from PKCE".into());
        }
        if self.token_endpoint_auth_method == AuthMethod::PrivateKeyJwt
            && self.jwks.is_none()
            && self.jwks_uri.is_none()
        {
            return Err("private_key_jwt needs jwks or jwks_uri".into());
        }
        if let Some(jwks) = &self.jwks
            && !jwks.get("keys").is_some_and(|k| k.is_array())
        {
            return Err("jwks must be a JSON Web Key Set: {\"keys\": [...]}".into());
        }
        if let Some(uri) = &self.jwks_uri {
            let u = url::Url::parse(uri).map_err(|e| format!("jwks_uri {uri:?}: {e}"))?;
            if u.scheme() != "https" && !is_loopback_host(&u) {
                return Err(format!("jwks_uri {uri:?} must use https"));
            }
        }
        if let Some(h) = &self.secret_sha256
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err("secret_sha256 must be 64 hexadecimal characters".into());
        }
        Ok(())
    }
}

pub fn is_loopback_host(u: &url::Url) -> bool {
    matches!(u.host_str(), Some("127.0.0.1") | Some("[::1]") | Some("localhost"))
}

/// Registration rules for redirect URIs (RFC 9700 2.1, RFC 8252 7): absolute,
/// no fragment; http only for loopback; custom schemes only for native
/// (public) clients.
/// A URI civid itself calls or loads (logout notifications): absolute,
/// https (http only on loopback), no fragment.
pub fn validate_web_uri(what: &str, uri: &str) -> Result<(), String> {
    let u = url::Url::parse(uri).map_err(|e| format!("{what} {uri:?} is not an absolute URI: {e}"))?;
    if u.fragment().is_some() {
        return Err(format!("{what} {uri:?} must not have a fragment"));
    }
    match u.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&u) => Ok(()),
        _ => Err(format!("{what} {uri:?} must use https (http only for loopback)")),
    }
}

pub fn validate_redirect_uri(uri: &str, public: bool) -> Result<(), String> {
    let u = url::Url::parse(uri).map_err(|e| format!("redirect URI {uri:?} is not an absolute URI: {e}"))?;
    if u.fragment().is_some() {
        return Err(format!("redirect URI {uri:?} must not have a fragment"));
    }
    match u.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&u) => Ok(()),
        "http" => Err(format!("redirect URI {uri:?} must use https (http only for loopback)")),
        s if public && s.contains('.') => Ok(()),
        _ => Err(format!(
            "redirect URI {uri:?}: a private-use scheme is allowed only for a public native client and must be a reversed domain name such as com.example.app"
        )),
    }
}

/// Registration rules for `backchannel_logout_uri` (Back-Channel Logout 1.0
/// 2.2): an absolute URL without a fragment; https, or http only on
/// loopback (development, tests), like redirect URIs.
pub fn validate_backchannel_logout_uri(uri: &str) -> Result<(), String> {
    let u = url::Url::parse(uri).map_err(|e| format!("backchannel_logout_uri {uri:?} is not an absolute URL: {e}"))?;
    if u.fragment().is_some() {
        return Err(format!("backchannel_logout_uri {uri:?} must not have a fragment"));
    }
    match u.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&u) => Ok(()),
        _ => Err(format!("backchannel_logout_uri {uri:?} must use https (http only for loopback)")),
    }
}
