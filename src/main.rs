//! The `civid` command: `serve`, `migrate`, `realm apply`, `keys`, `user`,
//! `client`, `admin`, `audit`, `registry`. Every command reads the same settings as the server and works
//! on the same database, before or while the server runs.
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use civid::account::identifiers::Identifier;
use civid::account::users::{self, NewUser, Profile};
use civid::config::Settings;
use civid::crypto::keys::Alg;
use civid::crypto::random;
use civid::realm::cache::format_secret_hash;
use civid::realm::model::{AuthMethod, ClientSettings, RealmSettings};
use civid::server::{self, StartOptions};
use civid::{realm, secrets, store};

#[derive(Parser)]
#[command(name = "civid", version, about = "Unified identity provider (OpenID Connect) for a city's online services")]
struct Cli {
    /// Settings file (default: config/civid.toml when present). Every key
    /// can also be set as CIVID_<KEY>.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Do not run database migrations at start.
        #[arg(long)]
        no_migrate: bool,
        /// Do not apply the realm files at start.
        #[arg(long)]
        no_apply: bool,
    },
    /// Run database migrations.
    Migrate,
    /// Realms declared as files.
    Realm {
        #[command(subcommand)]
        command: RealmCmd,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCmd,
    },
    /// People.
    User {
        #[command(subcommand)]
        command: UserCmd,
    },
    /// Relying portals.
    Client {
        #[command(subcommand)]
        command: ClientCmd,
    },
    /// Administrators.
    Admin {
        #[command(subcommand)]
        command: AdminCmd,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// The population and legal-person registries (real-name checks).
    Registry {
        #[command(subcommand)]
        command: RegistryCmd,
    },
}

#[derive(Subcommand)]
enum RegistryCmd {
    /// Import a registry file (CSV, UTF-8, with a header line).
    ///
    /// person: columns id_number, name, status (alive | deceased).
    /// enterprise: columns uscc, name, legal_rep_id_number, legal_rep_name,
    /// status (active | revoked | cancelled).
    /// Columns are found by header name; other columns are ignored. Numbers
    /// are checked (GB 11643 / GB 32100), names and numbers stored sealed;
    /// a number imported again updates its row in place. A bad row is
    /// reported as FILE:LINE on standard error.
    ///
    /// What matters to accounts (a person newly deceased, an enterprise
    /// with a new legal representative, newly revoked or cancelled) is
    /// recorded with the batch that changed it and applied after the run:
    /// accounts demoted to L2, claims ended, delegations revoked, sessions
    /// ended, each audited, exactly once. Changes an earlier run left
    /// pending (it was killed or failed) are applied before this one starts;
    /// see also `civid registry apply-changes`.
    #[command(verbatim_doc_comment)]
    Import {
        /// person or enterprise.
        #[arg(long)]
        kind: String,
        /// The CSV file (read, never copied).
        file: PathBuf,
        /// skip (report bad rows and go on) or abort (stop at the first).
        #[arg(long, default_value = "skip")]
        on_error: String,
        /// Continue the last unfinished import of this kind after its last
        /// committed batch (the same file: its SHA-256 is compared).
        #[arg(long)]
        resume: bool,
        /// Rows per transaction.
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        /// Write what matters to accounts (newly deceased persons, changed
        /// legal representatives, closed enterprises) as JSON lines of
        /// blind indexes to this file: the whole import's (every run of
        /// it), each with whether it has been applied.
        #[arg(long)]
        changes: Option<PathBuf>,
    },
    /// Apply the pending registry changes to accounts now.
    ///
    /// Imports record what matters to accounts with each batch; a run that
    /// was killed or failed leaves them pending. This applies every pending
    /// change (demotion to L2, ended enterprise claims, revoked delegations,
    /// ended sessions, each audited) exactly once: applying again, or on
    /// several nodes at once, does nothing twice. `civid serve` does the
    /// same every `registry_apply_secs` (default 60; 0: never).
    ApplyChanges,
    /// Write a synthetic registry file (valid numbers, common names) for
    /// tests and benchmarks.
    Synth {
        /// person or enterprise.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        count: u64,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The same seed gives the same file.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Create the first administrator in the admin realm (once).
    Bootstrap {
        #[arg(long)]
        username: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give an administrator a role in a realm (or `*`).
    Grant {
        #[arg(long)]
        username: String,
        /// realm-admin, helpdesk, auditor, pii-reader
        #[arg(long)]
        role: String,
        #[arg(long)]
        realm: String,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check every chain and signed checkpoint; name the first broken entry.
    Verify {
        #[arg(long)]
        realm: String,
    },
    /// Sign a checkpoint of the chain heads now (nodes do it every minute).
    Checkpoint {
        #[arg(long)]
        realm: String,
    },
    /// Write entries as JSON lines to standard output, newest first.
    Export {
        #[arg(long)]
        realm: String,
        /// Only entries at or after this Unix time.
        #[arg(long)]
        since: Option<i64>,
    },
    /// Delete entries older than the realm's retention, up to a checkpoint.
    Prune {
        #[arg(long)]
        realm: String,
    },
}

#[derive(Subcommand)]
enum RealmCmd {
    /// Show the difference between realm files and the database, and apply it.
    Apply {
        /// A directory of realm files, or one file.
        path: PathBuf,
        /// Only show what would change.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Publish new keys now; they sign after the realm's lead time.
    Rotate {
        #[arg(long)]
        realm: String,
        /// Algorithms to rotate (default: all).
        #[arg(long = "alg")]
        algs: Vec<String>,
        /// Seconds before the new keys sign (default: the realm's setting).
        #[arg(long)]
        lead: Option<u64>,
    },
    /// List a realm's keys.
    List {
        #[arg(long)]
        realm: String,
    },
    /// Re-wrap the data key, every signing key and every audit key with the
    /// current KEK (`kek` / `kek_file`); blobs open with it or with
    /// `kek_previous` / `kek_previous_file`. One transaction; nothing changes
    /// if any blob opens with neither. Sealed values stay as they are (they
    /// are under the data key, which does not change).
    RotateKek,
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a person who signs in with any of the identifiers given.
    Add {
        #[arg(long)]
        realm: String,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        username: Option<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Find a person by phone, email or username (masked output).
    Search {
        #[arg(long)]
        realm: String,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        username: Option<String>,
    },
    /// Disable an account and end its sessions.
    Disable {
        #[arg(long)]
        realm: String,
        /// The person's id.
        id: String,
    },
    /// Enable an account.
    Enable {
        #[arg(long)]
        realm: String,
        id: String,
    },
    /// End every session of a person.
    EndSessions {
        #[arg(long)]
        realm: String,
        id: String,
    },
    /// Set a one-time password (printed once) and end the person's sessions.
    ResetPassword {
        #[arg(long)]
        realm: String,
        id: String,
    },
    /// Remove the person's passkeys and authenticator apps (a lost phone)
    /// and end their sessions.
    ResetFactors {
        #[arg(long)]
        realm: String,
        id: String,
    },
}

#[derive(Subcommand)]
enum ClientCmd {
    /// List a realm's clients.
    List {
        #[arg(long)]
        realm: String,
    },
    /// Give a client a new secret (printed once); the old one stops working.
    RotateSecret {
        #[arg(long)]
        realm: String,
        #[arg(long)]
        client_id: String,
    },
    /// Disable a client.
    Disable {
        #[arg(long)]
        realm: String,
        #[arg(long)]
        client_id: String,
    },
    /// Register a portal; prints its secret once.
    Add {
        #[arg(long)]
        realm: String,
        #[arg(long)]
        client_id: String,
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// A public client (native or browser app): no secret, PKCE only.
        #[arg(long)]
        public: bool,
        /// client_secret_basic (default), client_secret_post, private_key_jwt, none.
        #[arg(long)]
        auth_method: Option<String>,
        /// For private_key_jwt: the client's JWKS URI.
        #[arg(long)]
        jwks_uri: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Skip the consent page (portals the city itself runs).
        #[arg(long)]
        first_party: bool,
        /// Also allow client_credentials.
        #[arg(long)]
        client_credentials: bool,
    },
}

/// mimalloc: the request path allocates and frees many small objects on
/// the async and SQLite threads; glibc's malloc took ~20% of their CPU
/// during the sign-in load (docs/PERFORMANCE.md). It also returns large
/// freed blocks to the system by itself (glibc kept 19 MiB Argon2 buffers
/// resident in per-thread heaps unless its mmap threshold was pinned).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("civid: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&settings);
    match run(cli.command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("civid: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CIVID_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if settings.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// For commands that change what servers cache: connect, and afterwards
/// tell running nodes (through Redis when configured; otherwise they see
/// the change at their next poll).
struct Ops {
    settings: Settings,
    db: store::Db,
}

impl Ops {
    async fn open(settings: Settings) -> Result<Ops, String> {
        server::install_crypto_provider();
        let db = store::connect(&settings.database_url, 2)
            .await
            .map_err(|e| format!("database {}: {e}", server::redact(&settings.database_url)))?;
        let lock = store::start_lock(&settings.database_url)
            .await
            .map_err(|e| format!("database {}: {e}", server::redact(&settings.database_url)))?;
        let migrated = store::migrate(&db).await.map_err(|e| format!("migrations: {e}"));
        lock.release().await;
        migrated?;
        Ok(Ops { settings, db })
    }

    async fn secrets(&self) -> Result<secrets::Secrets, String> {
        secrets::load(&self.settings, &self.db).await.map(|(s, _)| s)
    }

    async fn announce(&self, realm: &str) {
        if matches!(self.settings.redis_target(), Ok(None)) {
            return;
        }
        match server::connect_ephemeral(&self.settings).await {
            Ok(e) => {
                if let Err(err) = e.publish_invalidation(realm).await {
                    eprintln!("note: could not notify running nodes ({err}); they will notice within seconds");
                }
            }
            Err(err) => eprintln!("note: {err}; running nodes will notice within seconds"),
        }
    }

    async fn realm_settings(&self, realm: &str) -> Result<RealmSettings, String> {
        let rec = store::realms::realm_get(&self.db, realm)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no realm {realm:?} (apply its realm file first)"))?;
        serde_json::from_str(&rec.settings).map_err(|e| format!("realm {realm}: {e}"))
    }
}

async fn rotate_kek(settings: Settings) -> Result<(), String> {
    use civid::admin::ADMIN_REALM;
    use civid::audit::{Event, append};
    let ops = Ops::open(settings).await?;
    let report = match secrets::rotate_kek(&ops.settings, &ops.db).await {
        Ok(r) => r,
        Err(e) => {
            append(
                &ops.db,
                Event::new(ADMIN_REALM, "keys.kek_rotated", "failure")
                    .actor("cli")
                    .detail(serde_json::json!({ "reason": e })),
            )
            .await;
            return Err(e);
        }
    };
    for what in &report.rewrapped {
        println!("re-wrapped {what}");
    }
    println!("{} key(s) re-wrapped with the current KEK, {} already under it", report.rewrapped.len(), report.current);
    println!("sealed values were not touched: they are under the data key, which did not change");
    if report.rewrapped.is_empty() {
        println!("nothing to do");
    } else {
        println!("once every node has the new KEK, drop kek_previous / kek_previous_file and restart them");
    }
    append(
        &ops.db,
        Event::new(ADMIN_REALM, "keys.kek_rotated", "success").actor("cli").detail(serde_json::json!({
            "rewrapped": report.rewrapped.len(),
            "already_current": report.current,
        })),
    )
    .await;
    Ok(())
}

async fn run(command: Command, settings: Settings) -> Result<(), String> {
    match command {
        Command::Serve { no_migrate, no_apply } => {
            let (migrate, apply) =
                (!no_migrate && settings.migrate_on_start, !no_apply && settings.apply_realms_on_start);
            serve(settings, migrate, apply).await
        }
        Command::Migrate => {
            Ops::open(settings).await?;
            println!("migrations are up to date");
            Ok(())
        }
        Command::Realm { command: RealmCmd::Apply { path, dry_run } } => {
            let ops = Ops::open(settings).await?;
            let decls = realm::file::load(&path)?;
            if !dry_run {
                // Keys are wrapped by the KEK: make sure it is the right one first.
                ops.secrets().await?;
            }
            // Not while a starting node applies its own realm files.
            let lock = store::start_lock(&ops.settings.database_url).await.map_err(|e| e.to_string())?;
            let applied = realm::apply::apply(&ops.db, &decls, dry_run).await;
            lock.release().await;
            let changes = applied?;
            if changes.is_empty() {
                println!("no changes");
            }
            for c in &changes {
                println!("{c}");
            }
            if !dry_run {
                let secrets = ops.secrets().await?;
                for d in &decls {
                    for k in realm::keys::ensure(&ops.db, &secrets.kek, &d.name).await? {
                        println!("realm {}: generated signing key {k}", d.name);
                    }
                    ops.announce(&d.name).await;
                }
            } else if !changes.is_empty() {
                println!("(dry run: nothing applied)");
            }
            Ok(())
        }
        Command::Keys { command: KeysCmd::Rotate { realm: name, algs, lead } } => {
            let ops = Ops::open(settings).await?;
            let rs = ops.realm_settings(&name).await?;
            let secrets = ops.secrets().await?;
            let algs: Vec<Alg> = if algs.is_empty() {
                realm::keys::ALGS.to_vec()
            } else {
                algs.iter()
                    .map(|a| a.parse::<Alg>().map_err(|_| format!("unknown algorithm {a:?} (RS256, ES256, EdDSA)")))
                    .collect::<Result<_, _>>()?
            };
            for line in realm::keys::rotate(&ops.db, &secrets.kek, &name, &rs, &algs, lead).await? {
                println!("{line}");
            }
            civid::audit::append(&ops.db, civid::audit::Event::new(&name, "keys.rotated", "success").actor("cli"))
                .await;
            ops.announce(&name).await;
            Ok(())
        }
        Command::Keys { command: KeysCmd::RotateKek } => rotate_kek(settings).await,
        Command::Audit { command } => audit_command(command, settings).await,
        Command::Registry { command } => registry_command(command, settings).await,
        Command::Admin { command } => admin_command(command, settings).await,
        Command::User { command: UserCmd::Add { realm, phone, email, username, name, password_stdin } } => {
            user_add(settings, realm, phone, email, username, name, password_stdin).await
        }
        Command::User { command } => user_command(command, settings).await,
        Command::Client { command: ClientCmd::List { realm } } => {
            let state = operator_state(settings).await?;
            let list = civid::admin::actions::client_list(&state, &realm).await.map_err(problem)?;
            for c in list.as_array().cloned().unwrap_or_default() {
                println!(
                    "{}  {}  {}",
                    c["client_id"].as_str().unwrap_or_default(),
                    if c["enabled"].as_bool().unwrap_or(false) { "enabled " } else { "disabled" },
                    c["settings"]["token_endpoint_auth_method"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Client { command: ClientCmd::RotateSecret { realm, client_id } } => {
            let state = operator_state(settings).await?;
            let secret = civid::admin::actions::client_rotate_secret(&state, &cli_actor(), &realm, &client_id)
                .await
                .map_err(problem)?;
            println!("new client secret (shown once, store it now): {secret}");
            Ok(())
        }
        Command::Client { command: ClientCmd::Disable { realm, client_id } } => {
            let state = operator_state(settings).await?;
            let (c, tag) = civid::admin::actions::client_view(&state, &realm, &client_id).await.map_err(problem)?;
            civid::admin::actions::client_update(
                &state,
                &cli_actor(),
                &realm,
                &client_id,
                c["settings"].clone(),
                false,
                Some(&tag),
            )
            .await
            .map_err(problem)?;
            println!("client {client_id} disabled");
            Ok(())
        }
        Command::Keys { command: KeysCmd::List { realm: name } } => {
            let ops = Ops::open(settings).await?;
            let t = store::now();
            for k in store::realms::keys_of(&ops.db, &name).await.map_err(|e| e.to_string())? {
                let status = match (k.retire_at, k.expire_at) {
                    _ if k.activate_at > t => "published, not yet signing",
                    (Some(r), _) if r <= t && k.expire_at.is_some_and(|e| e <= t) => "expired",
                    (Some(r), _) if r <= t => "retired, still published",
                    _ => "signing",
                };
                println!("{}  {:<6} {}  activates {}", k.kid, k.alg, status, realm::keys::fmt_time(k.activate_at));
            }
            Ok(())
        }

        Command::Client {
            command:
                ClientCmd::Add {
                    realm: name,
                    client_id,
                    redirect_uris,
                    public,
                    auth_method,
                    jwks_uri,
                    name: display,
                    first_party,
                    client_credentials,
                },
        } => {
            let ops = Ops::open(settings).await?;
            ops.realm_settings(&name).await?;
            let method = match (public, auth_method.as_deref()) {
                (true, None | Some("none")) => AuthMethod::None,
                (true, Some(m)) => return Err(format!("a public client authenticates with none, not {m}")),
                (false, None) => AuthMethod::ClientSecretBasic,
                (false, Some(m)) => AuthMethod::parse(m)
                    .ok_or_else(|| format!("unknown --auth-method {m:?} ({})", AuthMethod::ALL.join(", ")))?,
            };
            let mut cs = ClientSettings {
                name: display.unwrap_or_default(),
                redirect_uris,
                token_endpoint_auth_method: method,
                jwks_uri,
                first_party,
                ..Default::default()
            };
            if client_credentials {
                cs.grant_types.push("client_credentials".into());
            }
            cs.validate()?;
            if store::realms::client_get(&ops.db, &name, &client_id).await.map_err(|e| e.to_string())?.is_some() {
                return Err(format!("client {client_id:?} already exists in realm {name}"));
            }
            let secret = match method {
                AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost => {
                    Some(random::token(32).map_err(|e| e.to_string())?)
                }
                _ => None,
            };
            let hash = secret.as_ref().map(|s| format_secret_hash(&random::sha256(s.as_bytes())));
            let json = serde_json::to_string(&cs).map_err(|e| e.to_string())?;
            store::realms::client_insert(&ops.db, &name, &client_id, json, hash, true)
                .await
                .map_err(|e| e.to_string())?;
            civid::audit::append(
                &ops.db,
                civid::audit::Event::new(&name, "client.created", "success").actor("cli").client(&client_id),
            )
            .await;
            ops.announce(&name).await;
            println!("created client {client_id} in realm {name} ({})", method.as_str());
            if let Some(s) = secret {
                println!("client secret (shown once, store it now): {s}");
            }
            Ok(())
        }
    }
}

async fn serve(settings: Settings, migrate: bool, apply: bool) -> Result<(), String> {
    let started = std::time::Instant::now();
    let listen = settings.listen;
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let admin = match settings.admin_listen.trim() {
        "" => None,
        addr => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (admin_listen): {e}"))?,
        ),
    };
    let state = server::prepare(settings, StartOptions { migrate, apply_realms: apply, verbose: true }).await?;
    println!("civid listening on http://{listen} (public URL {})", state.settings.public_url);
    if let Some(a) = admin.as_ref().and_then(|l| l.local_addr().ok()) {
        println!("admin API and /metrics on http://{a}");
    }
    for name in {
        let mut n = state.realms.names();
        n.sort();
        n
    } {
        if let Some(r) = state.realms.get(&name) {
            println!("realm {name}: issuer {}", r.issuer);
            let mut clients: Vec<&String> = r.clients.keys().collect();
            clients.sort();
            for c in clients {
                println!("  client {c}");
            }
        }
    }
    println!("ready in {} ms", started.elapsed().as_millis());
    server::run(state, listener, admin, server::shutdown_signal()).await.map_err(|e| e.to_string())
}

async fn audit_command(command: AuditCmd, settings: Settings) -> Result<(), String> {
    use civid::audit;
    let ops = Ops::open(settings).await?;
    let secrets = ops.secrets().await?;
    match command {
        AuditCmd::Verify { realm } => {
            let r = audit::verify::verify(&ops.db, &secrets.kek, &realm).await?;
            println!(
                "audit log of realm {realm} verifies: {} entries in {} chains, {} signed checkpoints",
                r.entries, r.chains, r.checkpoints
            );
            Ok(())
        }
        AuditCmd::Checkpoint { realm } => {
            let wrote = audit::checkpoint::write(&ops.db, &secrets.kek, &realm).await?;
            println!("{}", if wrote { "checkpoint signed" } else { "nothing new since the last checkpoint" });
            Ok(())
        }
        AuditCmd::Export { realm, since } => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let mut before = None;
            loop {
                let q =
                    store::audit::Query { since, before_id: before, limit: 1000, ..store::audit::Query::realm(&realm) };
                let page = store::audit::search(&ops.db, &q).await.map_err(|e| e.to_string())?;
                let Some(last) = page.last() else { break };
                before = Some(last.id);
                for e in &page {
                    let line = serde_json::json!({
                        "id": e.id, "realm": e.realm, "chain": e.chain_id, "seq": e.seq, "prev_hash": e.prev_hash,
                        "hash": e.hash, "at": e.at, "kind": e.kind, "outcome": e.outcome, "actor": e.actor,
                        "client_id": e.client_id, "ip": e.ip,
                        "detail": serde_json::from_str::<serde_json::Value>(&e.detail).unwrap_or_default(),
                    });
                    writeln!(out, "{line}").map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        }
        AuditCmd::Prune { realm } => {
            let rs = ops.realm_settings(&realm).await?;
            let before = store::now() - (rs.audit.retention_days as i64) * 86_400;
            let n = audit::verify::prune(&ops.db, &secrets.kek, &realm, before).await?;
            println!("removed {n} entries older than {} days", rs.audit.retention_days);
            Ok(())
        }
    }
}

async fn admin_command(command: AdminCmd, settings: Settings) -> Result<(), String> {
    let ops = Ops::open(settings).await?;
    let secrets = ops.secrets().await?;
    match command {
        AdminCmd::Bootstrap { username, password_stdin } => {
            if !password_stdin {
                return Err("give the password on standard input with --password-stdin".into());
            }
            let pw = read_password()?;
            let id = civid::admin::actions::bootstrap(&ops.db, &secrets, &username, pw).await?;
            println!("created administrator {username} ({id}) with every role in every realm");
            println!(
                "next: sign in at {}/realms/admin/account and add an authenticator app or a passkey; \
                 the admin API asks for it",
                ops.settings.public_url.trim_end_matches('/')
            );
            Ok(())
        }
        AdminCmd::Grant { username, role, realm } => {
            let role = civid::admin::roles::Role::parse(&role)
                .ok_or_else(|| format!("unknown role {role:?} (realm-admin, helpdesk, auditor, pii-reader)"))?;
            let ident = Identifier::username(&username).ok_or("not a username")?;
            let user = store::users::find_by_identifier(
                &ops.db,
                civid::admin::ADMIN_REALM,
                "username",
                &ident.blind_index(&secrets.sealer),
            )
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no administrator {username}"))?;
            store::admins::grant(&ops.db, &user.id, role.as_str(), &realm).await.map_err(|e| e.to_string())?;
            civid::audit::append(
                &ops.db,
                civid::audit::Event::new(civid::admin::ADMIN_REALM, "admin.role.granted", "success")
                    .actor("cli")
                    .detail(serde_json::json!({ "user": user.id, "role": role.as_str(), "realm": realm })),
            )
            .await;
            println!("{username} is now {} in {realm}", role.as_str());
            Ok(())
        }
    }
}

fn read_password() -> Result<String, String> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).map_err(|e| format!("reading the password: {e}"))?;
    let pw = s.lines().next().unwrap_or_default().to_string();
    if pw.chars().count() < 8 {
        return Err("the password must have at least 8 characters".into());
    }
    Ok(pw)
}

async fn user_add(
    settings: Settings,
    name: String,
    phone: Option<String>,
    email: Option<String>,
    username: Option<String>,
    display: Option<String>,
    password_stdin: bool,
) -> Result<(), String> {
    let ops = Ops::open(settings).await?;
    ops.realm_settings(&name).await?;
    let secrets = ops.secrets().await?;
    let mut identifiers = Vec::new();
    if let Some(p) = phone {
        identifiers.push(
            Identifier::phone(&p)
                .ok_or_else(|| format!("--phone {p:?} is not a mainland mobile number (11 digits starting 13-19)"))?,
        );
    }
    if let Some(e) = email {
        identifiers.push(Identifier::email(&e).ok_or_else(|| format!("--email {e:?} is not an email address"))?);
    }
    if let Some(u) = username {
        identifiers.push(
            Identifier::username(&u)
                .ok_or_else(|| format!("--username {u:?}: 3-32 letters, digits, '.', '_' or '-'"))?,
        );
    }
    if identifiers.is_empty() {
        return Err("give at least one of --phone, --email, --username".into());
    }
    let password = if password_stdin { Some(read_password()?) } else { None };
    let id =
        users::create(&ops.db, &secrets, &name, NewUser { identifiers, password, profile: Profile { name: display } })
            .await
            .map_err(|e| e.to_string())?;
    civid::audit::append(
        &ops.db,
        civid::audit::Event::new(&name, "user.created", "success")
            .actor("cli")
            .detail(serde_json::json!({ "user": id })),
    )
    .await;
    println!("created user {id} in realm {name}");
    Ok(())
}

/// Operator commands that act like the admin API: a full node state (no
/// listeners), so changes are audited, announced and end sessions everywhere.
async fn operator_state(settings: Settings) -> Result<civid::state::SharedState, String> {
    server::prepare(settings, StartOptions { migrate: true, apply_realms: false, verbose: false }).await
}

fn cli_actor() -> civid::admin::actions::Actor<'static> {
    civid::admin::actions::Actor { id: "cli", ip: None }
}

fn problem(p: civid::admin::Problem) -> String {
    format!("{} ({})", p.detail, p.title)
}

async fn user_command(command: UserCmd, settings: Settings) -> Result<(), String> {
    use civid::admin::actions;
    let state = operator_state(settings).await?;
    let out = match command {
        UserCmd::Add { .. } => return Err("unreachable".into()),
        UserCmd::Search { realm, phone, email, username } => {
            let (kind, value) = match (phone, email, username) {
                (Some(p), None, None) => ("phone", p),
                (None, Some(e), None) => ("email", e),
                (None, None, Some(u)) => ("username", u),
                _ => return Err("search by exactly one of --phone, --email, --username".into()),
            };
            actions::user_search(&state, &realm, kind, &value).await
        }
        UserCmd::Disable { realm, id } => actions::user_set_enabled(&state, &cli_actor(), &realm, &id, false).await,
        UserCmd::Enable { realm, id } => actions::user_set_enabled(&state, &cli_actor(), &realm, &id, true).await,
        UserCmd::EndSessions { realm, id } => actions::user_end_sessions(&state, &cli_actor(), &realm, &id).await,
        UserCmd::ResetPassword { realm, id } => actions::user_reset_password(&state, &cli_actor(), &realm, &id).await,
        UserCmd::ResetFactors { realm, id } => actions::user_reset_factors(&state, &cli_actor(), &realm, &id).await,
    }
    .map_err(problem)?;
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

fn registry_kind(s: &str) -> Result<civid::registry::Kind, String> {
    civid::registry::Kind::parse(s).ok_or_else(|| format!("--kind {s:?}: person or enterprise"))
}

async fn registry_command(command: RegistryCmd, settings: Settings) -> Result<(), String> {
    use civid::registry::{self, ImportOptions, OnError};
    match command {
        RegistryCmd::Synth { kind, count, out, seed } => {
            let kind = registry_kind(&kind)?;
            tokio::task::spawn_blocking(move || match out {
                Some(path) => {
                    let f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                    registry::synth::write(kind, count, seed, f).map_err(|e| format!("{}: {e}", path.display()))
                }
                None => registry::synth::write(kind, count, seed, std::io::stdout().lock()),
            })
            .await
            .map_err(|e| e.to_string())?
        }
        RegistryCmd::Import { kind, file, on_error, resume, batch_size, changes } => {
            let kind = registry_kind(&kind)?;
            let on_error = match on_error.as_str() {
                "skip" => OnError::Skip,
                "abort" => OnError::Abort,
                other => return Err(format!("--on-error {other:?}: skip or abort")),
            };
            if !(1..=5000).contains(&batch_size) {
                return Err("--batch-size: 1 to 5000 rows".into());
            }
            let state = operator_state(settings.clone()).await?;
            // What an earlier run committed but did not apply (it was killed
            // or failed) is applied first, whatever import it belongs to.
            let before = registry::changes::apply_pending(&state)
                .await
                .map_err(|e| format!("applying pending registry changes: {e}"))?;
            if before.changes > 0 {
                println!("left pending by earlier runs: {before}");
            }
            let (secrets, _) = secrets::load(&settings, &state.db).await?;
            let sealer = std::sync::Arc::new(secrets.sealer);
            let opts =
                ImportOptions { kind, path: file, on_error, resume, batch_size, today: registry::today_in_china() };
            let out = match registry::import(&state.db, sealer, opts, |line| eprintln!("{line}")).await {
                Ok(out) => out,
                Err(e) => {
                    // The committed batches' changes are recorded: say so.
                    if let Ok(n @ 1..) = store::registry::changes_pending_count(&state.db).await {
                        eprintln!(
                            "{n} registry changes are recorded and pending; they are applied by the next import or \
                             --resume, by `civid registry apply-changes`, or by a running server"
                        );
                    }
                    return Err(e);
                }
            };
            if out.resumed_after > 0 {
                println!("import {}: resumed after line {}", out.import_id, out.resumed_after + 1);
            }
            // The whole import, every run of it (the counts are kept with
            // the checkpoint), then this run's share when it was resumed.
            let t = out.totals;
            let resumed = out.resumed_after > 0;
            if resumed {
                println!(
                    "import {}: {} rows written, {} bad rows in the whole import; this run: {} rows written, \
                     {:.1} s, {:.0} rows/s",
                    out.import_id,
                    t.rows_written,
                    t.rows_bad,
                    out.rows_written,
                    out.seconds,
                    out.rate()
                );
            } else {
                println!(
                    "import {}: {} rows written, {} bad rows, {:.1} s, {:.0} rows/s",
                    out.import_id,
                    t.rows_written,
                    t.rows_bad,
                    out.seconds,
                    out.rate()
                );
            }
            let this_run = |n: u64| if resumed { format!(" ({n} in this run)") } else { String::new() };
            match kind {
                registry::Kind::Person => {
                    println!("{} persons newly deceased{}", t.deceased, this_run(out.deceased))
                }
                registry::Kind::Enterprise => println!(
                    "{} enterprises with a new legal representative{}, {} newly revoked or cancelled{}",
                    t.rep_changed,
                    this_run(out.rep_changed),
                    t.closed,
                    this_run(out.closed)
                ),
            }
            // What the changes mean for accounts: demotions, ended claims,
            // delegations and sessions (on every node), each audited. A
            // running server may have applied some already.
            let after = registry::changes::apply_pending(&state).await.map_err(|e| {
                format!("applying registry changes: {e}; they stay pending: run `civid registry apply-changes`")
            })?;
            println!("after this run: {after}");
            let (recorded, pending) = store::registry::changes_count(&state.db, &out.import_id)
                .await
                .map_err(|e| format!("database: {e}"))?;
            println!(
                "import {}: {recorded} changes for accounts recorded (every run), {} applied, {pending} pending",
                out.import_id,
                recorded.saturating_sub(pending)
            );
            if let Some(path) = changes {
                write_changes(&state.db, &out.import_id, &path).await?;
            }
            match out.aborted {
                Some(what) => Err(format!(
                    "import {} stopped at {what}; the rows before it are committed, continue with --resume \
                     (and --on-error skip to pass the bad row)",
                    out.import_id
                )),
                None => Ok(()),
            }
        }
        RegistryCmd::ApplyChanges => {
            let state = operator_state(settings).await?;
            let done = registry::changes::apply_pending(&state).await?;
            println!("{done}");
            let pending =
                store::registry::changes_pending_count(&state.db).await.map_err(|e| format!("database: {e}"))?;
            if pending > 0 {
                println!("{pending} changes pending (recorded while this ran)");
            }
            Ok(())
        }
    }
}

/// Writes an import's changes (every run of it) as JSON lines of blind
/// indexes, a page at a time.
async fn write_changes(db: &store::Db, import_id: &str, path: &std::path::Path) -> Result<(), String> {
    use std::io::Write;
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let f = std::fs::File::create(path).map_err(fail)?;
    let mut w = std::io::BufWriter::new(f);
    let mut after = 0;
    loop {
        let page = store::registry::changes_of_import(db, import_id, after, 1000)
            .await
            .map_err(|e| format!("database: {e}"))?;
        let Some(tail) = page.last() else { break };
        after = tail.id;
        for c in &page {
            let line = serde_json::json!({
                "change": c.kind, "index": c.blind_index, "import": c.import_id, "applied": c.applied_at.is_some(),
            });
            writeln!(w, "{line}").map_err(fail)?;
        }
    }
    w.flush().map_err(fail)
}
