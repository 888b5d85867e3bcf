//! Kura as a service: `kura coordinator init | serve`, `kura signer run |
//! pending | approve | refuse`, `kura withdraw submit | status`.
//!
//! ```text
//! DIR/coordinator.json  listen address, network, requesters' cards
//! DIR/group.json        the group it coordinates
//! DIR/roster.json       the members' identity keys
//! DIR/tls-cert.der      its self-signed certificate (clients pin its fingerprint)
//! DIR/tls-key.age       the certificate's key, sealed with the operator's passphrase
//! DIR/coordinator.db    its state (SQLite)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use kura_service::api::{RoleName, StateName};
use kura_service::client::Client;
use kura_service::coordinator::CoordinatorEvent;
use kura_service::daemon::control::{self, ControlRequest};
use kura_service::daemon::{DaemonEvent, SignerDaemon};
use kura_service::server::{self, AppState};
use kura_service::{
    CertFingerprint, Coordinator, CoordinatorConfig, PostgresStore, SqliteStore, Store, TlsIdentity,
};
use serde::{Deserialize, Serialize};
use wallet_core::ceremony::{IdentityCard, Role};
use wallet_core::keystore::files;
use wallet_core::RequestDigest;

use crate::ctx::Ctx;
use crate::home::{self, Home};
use crate::network::NetworkArg;
use crate::secrets::SecretArgs;

/// DIR/coordinator.json.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CoordinatorFile {
    kura_coordinator: u32,
    listen: SocketAddr,
    network: NetworkArg,
    requesters: Vec<IdentityCard>,
}

const CONFIG: &str = "coordinator.json";
const CERT: &str = "tls-cert.der";
const KEY: &str = "tls-key.age";

#[derive(Debug, clap::Subcommand)]
pub enum CoordinatorCmd {
    /// Create a coordinator's state: its configuration, a TLS certificate (key sealed with the passphrase) and prints the fingerprint clients pin.
    ///
    /// Example: kura coordinator init --dir coord --group group.json --roster roster.json --requester ops/identity.json --listen 127.0.0.1:8443 --passphrase-file coord.pass
    Init(CoordinatorInitArgs),
    /// Serve the coordinator over HTTPS until interrupted; withdrawals in flight continue after a restart.
    ///
    /// Example: kura coordinator serve --dir coord --passphrase-file coord.pass
    Serve(ServeArgs),
    /// Serve a DKG ceremony's mailbox over HTTPS until interrupted (before any group, so before `init`).
    ///
    /// The participants run `kura dkg run --mailbox URL --mailbox-pin FP`; only their identity keys (the cards)
    /// may log in. Every message stays signed and sealed end to end: the mailbox learns nothing and can forge
    /// nothing. A new certificate each start: announce the fingerprint it prints. (`kura coordinator serve`
    /// serves its group's mailbox for refresh and repair itself.)
    ///
    /// Example: kura coordinator relay -t 2 --card alice/identity.json --card bob/identity.json --card carol/identity.json --ceremony $C --listen 127.0.0.1:8444
    Relay(RelayArgs),
}

impl CoordinatorCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            CoordinatorCmd::Init(a) => a.run(ctx),
            CoordinatorCmd::Serve(a) => a.run(ctx),
            CoordinatorCmd::Relay(a) => a.run(ctx),
        }
    }
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// The ceremony's threshold t.
    #[arg(long, short = 't')]
    threshold: u16,
    /// Every participant's identity card (repeat).
    #[arg(long = "card", value_name = "FILE", required = true)]
    cards: Vec<PathBuf>,
    /// The ceremony nonce (64 hex digits) the convener picked.
    #[arg(long, value_name = "HEX")]
    ceremony: String,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8444", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// A DNS name or IP address for the certificate; repeat (default: localhost and the listen address).
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
}

impl RelayArgs {
    fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let ceremony = super::dkg::ceremony(self.threshold, &self.cards, &self.ceremony)?;
        let mut names = self.names.clone();
        if names.is_empty() {
            names = vec!["localhost".into(), self.listen.ip().to_string()];
        }
        let tls = TlsIdentity::generate(&names, "kura ceremony mailbox")?;
        let relay = std::sync::Arc::new(kura_service::relay::Relay::new(
            tls.fingerprint(),
            vec![kura_service::relay::Scope::of_ceremony(&ceremony)],
        ));
        let listener = std::net::TcpListener::bind(self.listen)
            .with_context(|| format!("cannot listen on {}", self.listen))?;
        let local = listener.local_addr()?;
        ctx.note(&format!(
            "mailbox of ceremony {} serving https://{local} (certificate {}); stop with Ctrl-C",
            ceremony.fingerprint(),
            tls.fingerprint()
        ));
        // The pin on stdout, alone, for scripts: $(kura coordinator relay …) would
        // never return, so it is the first line a caller reads.
        let pin = tls.fingerprint().to_string();
        if ctx.json {
            crate::ctx::print_line(&crate::ctx::json_inert(
                &serde_json::json!({"event": "relay-serving", "listen": local.to_string(), "certificate": pin}).to_string(),
            ))?;
        } else {
            crate::ctx::print_line(&pin)?;
        }
        runtime()?.block_on(server::serve_router(
            server::relay_router(relay),
            &tls,
            listener,
            interrupted(),
        ))?;
        ctx.done(
            "relay-stopped",
            serde_json::json!({"listen": local.to_string()}),
            "mailbox stopped",
        )
    }
}

#[derive(Debug, Args)]
pub struct CoordinatorInitArgs {
    /// The coordinator's directory (created; must not exist yet).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The group it coordinates.
    #[arg(long, value_name = "FILE")]
    group: PathBuf,
    /// The group's roster (the members' identity keys).
    #[arg(long, value_name = "FILE")]
    roster: PathBuf,
    /// A requester's identity card; repeat for each requester it accepts requests from.
    #[arg(long = "requester", value_name = "CARD", required = true)]
    requesters: Vec<PathBuf>,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// A DNS name or IP address for the certificate; repeat (default: localhost and the listen address).
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// The group wallet's Bitcoin network.
    #[arg(long, value_enum, default_value_t = crate::network::DEFAULT)]
    network: NetworkArg,
    #[command(flatten)]
    secrets: SecretArgs,
}

/// What `kura coordinator init` makes.
pub struct NewCoordinator<'a> {
    pub dir: &'a Path,
    pub group: &'a Path,
    pub roster: &'a Path,
    pub requesters: &'a [PathBuf],
    pub listen: SocketAddr,
    pub names: Vec<String>,
    pub network: NetworkArg,
}

impl NewCoordinator<'_> {
    /// Creates the coordinator's directory; returns the certificate's
    /// fingerprint.
    pub fn create(&self, passphrase: &secrecy::SecretString) -> anyhow::Result<CertFingerprint> {
        if self.dir.join(CONFIG).exists() {
            bail!(
                "{} is already a coordinator's directory",
                self.dir.display()
            );
        }
        let group = home::read_group(self.group)?;
        // Checked now so that serve cannot fail on it later.
        home::read_roster(self.roster, &group)?;
        let mut requesters = Vec::new();
        for path in self.requesters {
            let card = home::read_card(path)?;
            if card.role != Role::Requester {
                bail!(
                    "{} is the card of a {}, not of a requester",
                    path.display(),
                    card.role
                );
            }
            requesters.push(card);
        }
        let mut names = self.names.clone();
        if names.is_empty() {
            names = vec!["localhost".into(), self.listen.ip().to_string()];
        }
        let tls =
            TlsIdentity::generate(&names, &format!("kura coordinator {}", group.id().short()))?;
        let sealed = tls.seal(passphrase)?;
        files::create_private_dir(self.dir)?;
        let config = CoordinatorFile {
            kura_coordinator: 1,
            listen: self.listen,
            network: self.network,
            requesters,
        };
        home::write_all_new(&[
            (&self.dir.join("group.json"), &home::read(self.group)?),
            (&self.dir.join("roster.json"), &home::read(self.roster)?),
            (&self.dir.join(CERT), tls.certificate()),
            (&self.dir.join(KEY), &sealed),
            (&self.dir.join(CONFIG), &serde_json::to_vec_pretty(&config)?),
        ])?;
        Ok(tls.fingerprint())
    }
}

impl CoordinatorInitArgs {
    fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let fingerprint = NewCoordinator {
            dir: &self.dir,
            group: &self.group,
            roster: &self.roster,
            requesters: &self.requesters,
            listen: self.listen,
            names: self.names.clone(),
            network: self.network,
        }
        .create(&self.secrets.passphrase()?)?
        .to_string();
        ctx.note(&format!(
            "coordinator in {}; clients pin its certificate with --coordinator-pin",
            self.dir.display()
        ));
        ctx.done(
            "coordinator-init",
            serde_json::json!({"dir": self.dir.display().to_string(), "fingerprint": fingerprint, "listen": self.listen.to_string()}),
            &fingerprint,
        )
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The coordinator's directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Listen here instead of the configured address.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Keep the coordinator's state in this PostgreSQL database
    /// (`postgres://…` or `host=… dbname=…`) instead of the directory's
    /// SQLite file; several coordinators may share one.
    /// It must not hold a password (argv is readable by every local user):
    /// give that with --database-password-env.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// The environment variable holding the database password, if it needs one.
    #[arg(long, value_name = "NAME", requires = "database")]
    database_password_env: Option<String>,
    /// How long a signing session waits for its members' shares before
    /// another opens with the next responsive members.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    session_deadline_ms: u64,
    #[command(flatten)]
    secrets: SecretArgs,
}

/// One line about what the coordinator did: text, and its JSON form.
fn show_coordinator(event: &CoordinatorEvent) -> (String, serde_json::Value) {
    let keys = |members: &[wallet_core::IdentityPublicKey]| {
        members.iter().map(|m| m.to_string()).collect::<Vec<_>>()
    };
    match event {
        CoordinatorEvent::SessionOpened {
            id,
            session,
            members,
        } => (
            format!(
                "{id}: session {session} opened with {}",
                keys(members).join(", ")
            ),
            serde_json::json!({"event": "session-opened", "id": id.to_string(), "session": session, "members": keys(members)}),
        ),
        CoordinatorEvent::SetAside {
            id,
            session,
            member,
            reason,
            detail,
        } => (
            format!(
                "{id}: session {session}: member {member} set aside ({}): {detail}",
                reason.as_str()
            ),
            serde_json::json!({"event": "set-aside", "id": id.to_string(), "session": session, "member": member.to_string(), "reason": reason.as_str(), "detail": detail}),
        ),
        CoordinatorEvent::Finalized { id, session } => (
            format!("{id}: finalized by session {session}"),
            serde_json::json!({"event": "finalized", "id": id.to_string(), "session": session}),
        ),
        CoordinatorEvent::Refused { id, reason } => (
            format!("{id}: refused: {reason}"),
            serde_json::json!({"event": "refused", "id": id.to_string(), "reason": reason}),
        ),
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

impl ServeArgs {
    fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        files::check_private(&self.dir)?;
        let config: CoordinatorFile = serde_json::from_slice(&home::read(&self.dir.join(CONFIG))?)
            .with_context(|| {
                format!(
                    "{} is not a coordinator configuration",
                    self.dir.join(CONFIG).display()
                )
            })?;
        if config.kura_coordinator != 1 {
            bail!(
                "{}: unsupported version {}",
                CONFIG,
                config.kura_coordinator
            );
        }
        let group = home::read_group(&self.dir.join("group.json"))?;
        let roster = home::read_roster(&self.dir.join("roster.json"), &group)?;
        let certificate = home::read(&self.dir.join(CERT))?;
        let sealed = home::read(&self.dir.join(KEY))?;
        let tls = TlsIdentity::unseal(certificate, &sealed, &self.secrets.passphrase()?)?;
        let coordinator_config = CoordinatorConfig {
            group,
            roster,
            requesters: config.requesters.iter().map(|c| c.key).collect(),
            network: config.network.into(),
            fingerprint: tls.fingerprint(),
        };
        let listen = self.listen.unwrap_or(config.listen);
        match &self.database {
            None => {
                let store = SqliteStore::open(self.dir.join("coordinator.db"))?;
                self.serve(
                    ctx,
                    Coordinator::new(coordinator_config, store),
                    &tls,
                    listen,
                )
            }
            Some(url) => {
                let mut pg: kura_service::pg::PgConfig = url
                    .parse()
                    .context("--database is not a PostgreSQL connection string")?;
                if pg.get_password().is_some() {
                    bail!(
                        "--database must not hold a password: give it with --database-password-env"
                    );
                }
                if let Some(name) = &self.database_password_env {
                    let password = std::env::var(name)
                        .with_context(|| format!("the environment variable {name} is not set"))?;
                    pg.password(password);
                }
                let store = PostgresStore::connect_config(
                    pg,
                    std::sync::Arc::new(kura_service::coordinator::system_clock),
                )
                .context("cannot use the PostgreSQL database")?;
                self.serve(
                    ctx,
                    Coordinator::new(coordinator_config, store),
                    &tls,
                    listen,
                )
            }
        }
    }

    fn serve<S: Store + Send + Sync + 'static>(
        &self,
        ctx: &Ctx,
        coordinator: Coordinator<S>,
        tls: &TlsIdentity,
        listen: SocketAddr,
    ) -> anyhow::Result<()> {
        let coordinator = coordinator
            .with_session_deadline(std::time::Duration::from_millis(self.session_deadline_ms))
            .with_log({
                let json = ctx.json;
                move |event| {
                    let (text, value) = show_coordinator(event);
                    let line = if json {
                        crate::ctx::json_inert(&value.to_string())
                    } else {
                        wallet_core::display::terminal_safe(&text)
                    };
                    let _ = crate::ctx::print_line(&line);
                }
            });
        let listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("cannot listen on {listen}"))?;
        let local = listener.local_addr()?;
        ctx.note(&format!(
            "serving https://{local} (certificate {}); stop with Ctrl-C",
            tls.fingerprint()
        ));
        let state = AppState::new(coordinator);
        runtime()?.block_on(server::serve(state, tls, listener, interrupted()))?;
        ctx.done(
            "coordinator-stopped",
            serde_json::json!({"listen": local.to_string()}),
            "coordinator stopped",
        )
    }
}

/// Where a client finds the coordinator.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// The coordinator's URL (https://HOST:PORT). Repeat it for coordinators sharing one database (and one
    /// certificate): the next is used when the one in use cannot be reached.
    #[arg(long = "coordinator", value_name = "URL", required = true)]
    urls: Vec<String>,
    /// The coordinator's certificate fingerprint (sha256:…), as `kura coordinator init` printed it.
    #[arg(long = "coordinator-pin", value_name = "FINGERPRINT")]
    pin: CertFingerprint,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The signer's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    #[command(flatten)]
    coordinator: CoordinatorArgs,
    #[command(flatten)]
    secrets: SecretArgs,
}

fn run_dir(home: &Path) -> PathBuf {
    home.join("run")
}

fn show(event: &DaemonEvent) -> (String, serde_json::Value) {
    let id = |id: &RequestDigest| id.to_string();
    match event {
        DaemonEvent::Connected { cursor } => (
            format!("connected; reading work after #{cursor}"),
            serde_json::json!({"event": "connected", "cursor": cursor}),
        ),
        DaemonEvent::Unreachable { reason } => (
            format!("coordinator unreachable, retrying: {reason}"),
            serde_json::json!({"event": "unreachable", "reason": reason}),
        ),
        DaemonEvent::AutoApproved { id: w } => (
            format!("{}: approved under [auto_approve]", id(w)),
            serde_json::json!({"event": "auto-approved", "id": id(w)}),
        ),
        DaemonEvent::Approved { id: w } => (
            format!("{}: approved by the operator", id(w)),
            serde_json::json!({"event": "approved", "id": id(w)}),
        ),
        DaemonEvent::Waiting { id: w } => (
            format!(
                "{}: allowed by the policy, waits for `kura signer approve`",
                id(w)
            ),
            serde_json::json!({"event": "waiting", "id": id(w)}),
        ),
        DaemonEvent::Signed { id: w, session } => (
            format!("{}: shares released for session {session}", id(w)),
            serde_json::json!({"event": "signed", "id": id(w), "session": session}),
        ),
        DaemonEvent::Refused {
            id: w,
            kind,
            reason,
        } => (
            format!("{}: refused ({kind}): {reason}", id(w)),
            serde_json::json!({"event": "refused", "id": id(w), "kind": kind, "reason": reason}),
        ),
        DaemonEvent::Ended { id: w, how } => (
            format!("{}: {how}", id(w)),
            serde_json::json!({"event": "ended", "id": id(w), "how": how}),
        ),
    }
}

impl RunArgs {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let run = run_dir(&self.home);
        files::create_private_dir(&run)?;
        // One daemon per home: a second one would answer the same work
        // with the same keystore.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(run.join("daemon.lock"))
            .context("cannot open the daemon's lock file")?;
        if lock.try_lock().is_err() {
            bail!("a signer daemon already runs on {}", self.home.display());
        }
        let opened = super::sign::open_signer(&self.home, &self.secrets)?;
        let signer = opened.into_signer();
        let client = Client::with_failover(
            &self.coordinator.url_list(),
            self.coordinator.pin,
            *signer.group().id(),
            RoleName::Signer,
            signer.keystore().clone(),
        )?;
        let json = ctx.json;
        let daemon = SignerDaemon::new(signer, client, &run, move |event| {
            let (text, value) = show(event);
            if json {
                let _ = crate::ctx::print_line(&crate::ctx::json_inert(&value.to_string()));
            } else {
                let _ = crate::ctx::print_line(&wallet_core::display::terminal_safe(&text));
            }
        })?;
        // Fault injection for the crash tests, in debug builds only (as
        // KURA_NOW): the process aborts at the named checkpoint, as a
        // kill -9 there would stop it.
        if cfg!(debug_assertions) {
            if let Ok(name) = std::env::var("KURA_TEST_CRASH_AT") {
                daemon.set_checkpoint_hook(move |point| {
                    if point.as_str() == name {
                        std::process::abort();
                    }
                });
            }
        }
        ctx.note(&format!(
            "signer daemon on {}; `kura signer pending --home {}` lists what waits for you; stop with Ctrl-C",
            self.home.display(),
            self.home.display()
        ));
        runtime()?.block_on(async move {
            let control = tokio::spawn(daemon.clone().serve_control());
            let work = tokio::spawn(daemon.run());
            tokio::select! {
                _ = interrupted() => Ok(()),
                r = control => match r {
                    Ok(Err(e)) => Err(anyhow::Error::new(e)),
                    _ => Ok(()),
                },
                _ = work => Ok(()),
            }
        })?;
        drop(lock);
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct PendingArgs {
    /// The signer's home (its daemon must be running).
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
}

impl PendingArgs {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let pending = pending(&self.home)?;
        let text = if pending.is_empty() {
            "nothing waits for you".to_owned()
        } else {
            pending
                .iter()
                .map(|p| format!("{}\n{}\n", p.id, p.review))
                .collect::<Vec<_>>()
                .join("\n")
        };
        ctx.done("signer-pending", serde_json::to_value(&pending)?, &text)
    }
}

fn pending(home: &Path) -> anyhow::Result<Vec<control::PendingEntry>> {
    let answer = call(
        home,
        &ControlRequest::Pending {
            v: control::CONTROL_VERSION,
        },
    )?;
    Ok(answer.pending.unwrap_or_default())
}

fn call(home: &Path, request: &ControlRequest) -> anyhow::Result<control::ControlResponse> {
    let run = run_dir(home);
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(control::call(&run, request))?;
    if !answer.ok {
        return Err(crate::error::refused(format!(
            "the daemon refused: {}",
            answer.message.unwrap_or_default()
        )));
    }
    Ok(answer)
}

/// A pending withdrawal, named by its whole id: a prefix could be matched
/// by another request made to share it, one the person never read.
fn resolve(id: &str) -> anyhow::Result<RequestDigest> {
    id.parse::<RequestDigest>().map_err(|_| {
        anyhow::anyhow!(
            "a withdrawal id is its 64 lowercase hex digits, as `kura signer pending` shows it (a prefix is not accepted: another request could be made to share it)"
        )
    })
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The signer's home (its daemon must be running).
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The withdrawal's whole id (the request digest `kura signer pending` shows).
    id: String,
}

#[derive(Debug, Args)]
pub struct RefuseArgs {
    #[command(flatten)]
    which: DecideArgs,
    /// Why (recorded in the audit log).
    #[arg(long)]
    reason: String,
}

impl DecideArgs {
    pub fn approve(self, ctx: &Ctx) -> anyhow::Result<()> {
        let id = resolve(&self.id)?;
        call(
            &self.home,
            &ControlRequest::Approve {
                v: control::CONTROL_VERSION,
                id,
            },
        )?;
        ctx.done(
            "signer-approve",
            serde_json::json!({"id": id.to_string()}),
            &format!("approved {id}"),
        )
    }
}

impl RefuseArgs {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let id = resolve(&self.which.id)?;
        wallet_core::display::check_memo(&self.reason)?;
        call(
            &self.which.home,
            &ControlRequest::Refuse {
                v: control::CONTROL_VERSION,
                id,
                reason: self.reason.clone(),
            },
        )?;
        ctx.done(
            "signer-refuse",
            serde_json::json!({"id": id.to_string()}),
            &format!("refused {id}"),
        )
    }
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    request: super::sign::RequestSpec,
    #[command(flatten)]
    coordinator: CoordinatorArgs,
    /// Also keep the signed request here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

impl CoordinatorArgs {
    fn url_list(&self) -> Vec<&str> {
        self.urls.iter().map(String::as_str).collect()
    }
}

fn requester_client(
    home: &Home,
    group: &wallet_core::PublicGroup<wallet_core::Secp256k1Tr>,
    coordinator: &CoordinatorArgs,
) -> anyhow::Result<Client> {
    Ok(Client::with_failover(
        &coordinator.url_list(),
        coordinator.pin,
        *group.id(),
        RoleName::Requester,
        home.keystore.clone(),
    )?)
}

impl SubmitArgs {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let signed = self.request.sign()?;
        if let Some(out) = &self.out {
            home::write_new(out, &signed.document)?;
        }
        let client = requester_client(&signed.home, &signed.group, &self.coordinator)?;
        let submitted = runtime()?.block_on(client.submit(signed.document))?;
        let id = submitted.id.to_string();
        ctx.note(&format!(
            "submitted request {}; follow it with `kura withdraw status {id} --wait`",
            signed.request_id
        ));
        ctx.done(
            "withdraw-submit",
            serde_json::json!({"id": id, "request_id": signed.request_id, "duplicate": submitted.duplicate}),
            &id,
        )
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The requester's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The group file.
    #[arg(long, value_name = "FILE")]
    group: PathBuf,
    /// The withdrawal's id, as `kura withdraw submit` printed it.
    id: RequestDigest,
    #[command(flatten)]
    coordinator: CoordinatorArgs,
    /// Wait until it is finalized or refused (at most --timeout).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    timeout: u64,
    /// Where to write the final PSBT (binary) once finalized.
    #[arg(long, value_name = "FILE")]
    psbt_out: Option<PathBuf>,
    /// Where to write the final transaction (hex) once finalized.
    #[arg(long, value_name = "FILE")]
    tx_out: Option<PathBuf>,
    #[command(flatten)]
    secrets: SecretArgs,
}

impl StatusArgs {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let home = Home::open(&self.home, "requester", &self.secrets)?;
        let group = home::read_group(&self.group)?;
        let client = requester_client(&home, &group, &self.coordinator)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(self.timeout);
        let status = runtime()?.block_on(async {
            let mut cursor = 0;
            loop {
                let status = match client.status(&self.id).await {
                    Ok(s) => s,
                    // A coordinator restarting is waited for, as a daemon
                    // waits for it; anything else ends the wait.
                    Err(kura_service::ClientError::Connect { .. })
                        if self.wait && std::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                if !self.wait || status.state.is_final() {
                    return Ok::<_, anyhow::Error>(status);
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(crate::error::refused(format!(
                        "withdrawal {} is still {:?} after {} s",
                        self.id, status.state, self.timeout
                    )));
                }
                // Wakes on this requester's mailbox (finalized or refused).
                if let Ok(page) = client.work(cursor, left.min(Duration::from_secs(25))).await {
                    cursor = page.next;
                }
            }
        })?;
        if status.state == StateName::Finalized {
            let (psbt, tx) = checked_result(&status, &group)?;
            if let Some(out) = &self.psbt_out {
                home::write_new(out, &psbt)?;
            }
            if let Some(out) = &self.tx_out {
                home::write_new(out, format!("{tx}\n").as_bytes())?;
            }
        }
        let state = serde_json::to_value(status.state)?;
        let state_name = state.as_str().unwrap_or("unknown").to_owned();
        let mut text = format!("withdrawal {}: {state_name}", self.id);
        if let Some(reason) = &status.reason {
            text.push_str(&format!(
                " ({})",
                wallet_core::display::inert_bounded(reason, 400)
            ));
        }
        if status.state == StateName::Refused && self.wait {
            return Err(crate::error::refused(text));
        }
        ctx.done(
            "withdraw-status",
            serde_json::json!({
                "id": self.id.to_string(),
                "state": state_name,
                "approved_by": status.approved_by.len(),
                "sessions": status.sessions.len(),
                "tx": status.tx,
                "reason": status.reason,
            }),
            &text,
        )
    }
}

/// The final PSBT and transaction the coordinator reports, checked before
/// anything is written: the transaction is the PSBT's, every input spends the
/// group's own output, and Bitcoin Core's consensus code accepts every
/// input's signature against the outputs it spends.
fn checked_result(
    status: &kura_service::api::WithdrawalStatus,
    group: &wallet_core::PublicGroup<wallet_core::Secp256k1Tr>,
) -> anyhow::Result<(Vec<u8>, String)> {
    use wallet_core::bitcoin::base64::Engine;
    let bad = |why: &str| {
        crate::error::refused(format!("the coordinator's result is not acceptable: {why}"))
    };
    let psbt_b64 = status.psbt.as_deref().ok_or_else(|| bad("no PSBT"))?;
    let tx_hex = status.tx.as_deref().ok_or_else(|| bad("no transaction"))?;
    let psbt_bytes = wallet_core::bitcoin::base64::engine::general_purpose::STANDARD
        .decode(psbt_b64)
        .map_err(|_| bad("the PSBT is not base64"))?;
    let psbt = wallet_core::psbt::decode(&psbt_bytes).map_err(|_| bad("not a PSBT"))?;
    let tx_bytes = hex::decode(tx_hex).map_err(|_| bad("the transaction is not hex"))?;
    let tx: wallet_core::bitcoin::Transaction =
        wallet_core::bitcoin::consensus::deserialize(&tx_bytes)
            .map_err(|_| bad("not a transaction"))?;
    if tx.compute_txid() != psbt.unsigned_tx.compute_txid() {
        return Err(bad("the transaction is not the PSBT's"));
    }
    let own = group.taproot().script_pubkey();
    let spent = psbt
        .inputs
        .iter()
        .map(|i| {
            i.witness_utxo
                .clone()
                .filter(|o| o.script_pubkey == own)
                .ok_or_else(|| bad("an input does not spend the group's own output"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    crate::demo::consensus_verify(&tx, &spent).map_err(|e| bad(&e))?;
    Ok((psbt_bytes, tx_hex.to_owned()))
}
