//! Wiring: settings -> store, catalogue, upstreams, usage writer -> the HTTP server.
//! `Application::build` binds (port 0 in tests) and reports the port it got.

use std::fs::File;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_session::config::{PersistentSession, TtlExtensionPolicy};
use actix_session::SessionMiddleware;
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::catalogue::Catalogue;
use crate::client::TrustedProxies;
use crate::config::Settings;
use crate::domain::event_id::EventIds;
use crate::domain::time_util;
use crate::gateway::ledger::Ledger;
use crate::gateway::rate_limit::RateLimits;
use crate::gateway::upstream::{Timeouts, Upstreams};
use crate::gateway::usage_writer::UsageWriter;
use crate::mail::Mailer;
use crate::password_hashing::HashPool;
use crate::state::AppState;
use crate::store::sessions::DbSessionStore;
use crate::store::Store;
use crate::web::form::FormKey;
use crate::web::throttle::{LoginThrottle, SignupThrottle};

mod retention;
use retention::Retention;
pub use retention::{purge_usage, Purged};

pub struct Application {
    port: u16,
    server: Server,
    /// The metrics listener (`metrics_bind`) and its port.
    metrics: Option<(Server, u16)>,
    usage: UsageWriter,
    /// Stops the alert tasks once the server has stopped.
    alerts_stop: tokio::sync::watch::Sender<bool>,
    shutdown_timeout: Duration,
    /// SQLite only: held for the life of the process (see [`lock_sqlite`]).
    _lock: Option<File>,
}

const SESSION_SECRET: &str = "session_key";
/// The key of audit events' public ids (`domain::event_id`), in `app_secrets`.
const EVENT_ID_SECRET: &str = "event_id_key";

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.check()?;
        for w in settings.warnings() {
            tracing::warn!("{w}");
        }
        let mailer = mailer(&settings)?;
        let catalogue = Catalogue::load(settings.catalogue_path.as_deref())
            .context("loading the model catalogue")?;
        let lock = if settings.is_postgres() {
            None
        } else {
            Some(lock_sqlite(&settings.database_url)?)
        };
        let store = Store::connect(&settings.database_url)
            .await
            .context("opening the database")?;
        let session_key = session_key(&settings, &store).await?;
        // Before anything records: the recorder must be in place to count it.
        let metrics = match &settings.metrics_bind {
            Some(bind) => Some(crate::metrics::serve(bind, crate::metrics::install()?)?),
            None => None,
        };
        let sweep_age = settings.upstream_timeout + Duration::from_secs(60);
        let ledger = Ledger::for_store(&store);
        release_left_holds(&store, &ledger, sweep_age).await?;
        spawn_housekeeping(
            store.clone(),
            &ledger,
            sweep_age,
            Retention {
                audit_days: settings.audit_retention_days,
                usage_days: settings.usage_retention_days,
            },
        );
        let (state, alerts_stop) = app_state(
            &settings,
            store.clone(),
            ledger,
            catalogue,
            mailer,
            &session_key,
        )
        .await?;

        let listener = TcpListener::bind(&settings.bind)
            .with_context(|| format!("binding {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let usage = state.usage.clone();
        let server = http_server(
            &settings,
            listener,
            web::Data::new(state),
            store,
            session_key,
        )?;
        tracing::info!(port, "listening");
        if let Some((_, metrics_port)) = &metrics {
            tracing::info!(port = metrics_port, "serving metrics");
        }
        Ok(Application {
            port,
            server,
            metrics,
            usage,
            alerts_stop,
            shutdown_timeout: settings.shutdown_timeout,
            _lock: lock,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server as SIGTERM would (tests restart a server on the same database).
    pub fn stop_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// The metrics listener's port, when `metrics_bind` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(_, port)| *port)
    }

    /// Serves until SIGTERM or Ctrl-C (graceful: see `shutdown_timeout`), then makes every
    /// answered request's usage durable in the database before returning.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let _lock = self._lock;
        let metrics = self.metrics.map(|(server, _)| {
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        let served = self.server.await;
        tracing::info!("stopped accepting; in-flight requests are done; flushing usage");
        if self.usage.drain(self.shutdown_timeout).await {
            tracing::info!("usage flushed; exiting");
        } else {
            tracing::warn!(
                "usage not fully flushed in time; journaled entries are applied at the next start"
            );
        }
        let _ = self.alerts_stop.send(true);
        if let Some(handle) = metrics {
            handle.stop(true).await;
        }
        served
    }
}

/// One process serves an SQLite file: reservations live in it, and a second server would
/// contend for its single writer. The CLI's admin commands do not take this lock, except
/// `journal set-aside`, which must not move the journal of a running server.
pub(crate) fn lock_sqlite(url: &str) -> anyhow::Result<File> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    let lock_path = format!("{path}.lock");
    let file = crate::store::create_private(std::path::Path::new(&lock_path))
        .with_context(|| format!("creating {lock_path}"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(_) => anyhow::bail!(
            "another lowrouter process is serving {path} (lock {lock_path}); use PostgreSQL to run several"
        ),
    }
}

/// The mail transport, when `smtp_url` and `mail_from` are both set (checked now: a typo in
/// either fails the start, not the first sign-up).
fn mailer(settings: &Settings) -> anyhow::Result<Option<Arc<Mailer>>> {
    match (&settings.smtp_url, &settings.mail_from) {
        (Some(url), Some(from)) => Ok(Some(Arc::new(Mailer::new(url, from)?))),
        (None, None) => Ok(None),
        _ => {
            tracing::warn!("smtp_url and mail_from go together; without both, no mail is sent");
            Ok(None)
        }
    }
}

/// The session signing key: configured, or generated once and kept in the database so that
/// restarts (and other processes on the same database) keep sessions valid.
async fn session_key(settings: &Settings, store: &Store) -> anyhow::Result<Key> {
    if let Some(secret) = &settings.session_secret {
        anyhow::ensure!(
            secret.expose().len() >= 32,
            "the session secret must be at least 32 bytes"
        );
        return Ok(Key::derive_from(secret.expose().as_bytes()));
    }
    let mut bytes = [0u8; 64];
    rand::RngExt::fill(
        &mut rand::rand_core::UnwrapErr(rand::rngs::SysRng),
        &mut bytes[..],
    );
    let (stored, created) = store
        .get_or_init_secret(SESSION_SECRET, &hex::encode(bytes))
        .await?;
    if created {
        tracing::info!("generated a session secret and stored it in the database (table app_secrets, name session_key)");
    } else {
        tracing::info!("using the session secret stored in the database (table app_secrets)");
    }
    let raw = hex::decode(stored).context("stored session secret is not hex")?;
    Ok(Key::from(&raw))
}

/// The SQLite WAL checkpointer; PostgreSQL's return of idle leased slices. Every 10 s:
/// release the holds of processes that died (PostgreSQL). Every minute: holds past the
/// longest possible request, expired sessions, verification links a week past their
/// expiry, idempotency keys past their 24 hours, and (PostgreSQL) rate limit minutes that
/// are over. Every hour (and at start): PostgreSQL's usage day partitions a week ahead,
/// audit events past `audit_retention_days`, and raw usage rows past
/// `usage_retention_days` ([`purge_usage`], on a task of its own).
fn spawn_housekeeping(store: Store, ledger: &Ledger, sweep_age: Duration, retention: Retention) {
    let retention_ms = i64::from(retention.audit_days) * 86_400_000;
    let usage_retention_ms = i64::from(retention.usage_days) * 86_400_000;
    let purging = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    store.start_checkpointer();
    let pg = match ledger {
        Ledger::Shared(pg) => {
            pg.spawn_lease_returns();
            Some(pg.clone())
        }
        Ledger::InMemory { .. } => None,
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        for round in 1u64.. {
            if round % 360 == 1 {
                // PostgreSQL: the usage day partitions of the week ahead.
                let today = time_util::day_number(time_util::now_ms());
                match store.ensure_usage_partitions(today).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(created = n, "usage day partitions created ahead"),
                    Err(e) => {
                        tracing::warn!(error = %e, "usage day partitions could not be created")
                    }
                }
                let cutoff = time_util::now_ms() - retention_ms;
                match store.purge_audit_before(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "audit events past retention deleted"),
                    Err(e) => tracing::warn!(error = %e, "audit retention failed"),
                }
                // One run at a time: a run still going an hour later is left to finish.
                if usage_retention_ms > 0
                    && !purging.swap(true, std::sync::atomic::Ordering::AcqRel)
                {
                    let (store, purging) = (store.clone(), purging.clone());
                    let cutoff = time_util::now_ms() - usage_retention_ms;
                    tokio::spawn(async move {
                        if let Err(e) = purge_usage(&store, cutoff).await {
                            tracing::warn!(error = %e, "usage retention failed; retried next hour");
                        }
                        purging.store(false, std::sync::atomic::Ordering::Release);
                    });
                }
            }
            tick.tick().await;
            if let Some(pg) = &pg {
                if let Err(e) = pg.sweep_dead_instances().await {
                    tracing::warn!(error = %e, "sweep of dead processes' reservations failed");
                }
            }
            if round % 6 != 0 {
                continue;
            }
            let cutoff = time_util::now_ms() - sweep_age.as_millis() as i64;
            if let Err(e) = store.sweep_reservations(cutoff).await {
                tracing::warn!(error = %e, "reservation sweep failed");
            }
            if let Err(e) = store.purge_expired_sessions().await {
                tracing::warn!(error = %e, "session purge failed");
            }
            if let Err(e) = store
                .purge_old_verification_tokens(time_util::now_ms())
                .await
            {
                tracing::warn!(error = %e, "verification link purge failed");
            }
            if let Err(e) = store.sweep_idempotency_keys().await {
                tracing::warn!(error = %e, "idempotency key sweep failed");
            }
            if let Some(pg) = &pg {
                let minute = time_util::now_ms().div_euclid(60_000);
                if let Err(e) = pg.sweep_rate_minutes(minute - 1).await {
                    tracing::warn!(error = %e, "rate limit minutes sweep failed");
                }
            }
        }
    });
}

/// With SQLite this process is the only one serving the file (its lock), so every hold left
/// in the table belongs to a process that died: all are released. With PostgreSQL other
/// processes may be mid-request: only holds older than `sweep_age`, and those of processes
/// whose liveness lock is free, go.
async fn release_left_holds(
    store: &Store,
    ledger: &Ledger,
    sweep_age: Duration,
) -> anyhow::Result<()> {
    let (cutoff, dead) = match ledger {
        Ledger::InMemory { .. } => (time_util::now_ms() + 1, 0),
        Ledger::Shared(pg) => (
            time_util::now_ms() - sweep_age.as_millis() as i64,
            pg.sweep_dead_instances().await?,
        ),
    };
    let released = store.sweep_reservations(cutoff).await? + dead;
    if released > 0 {
        tracing::info!(released, "released reservations left by a previous process");
    }
    Ok(())
}

/// Everything the handlers share, with the background tasks it starts (upstream clients,
/// alerts, the usage writer); also the alerts' stop switch.
async fn app_state(
    settings: &Settings,
    store: Store,
    ledger: Ledger,
    catalogue: Catalogue,
    mailer: Option<Arc<Mailer>>,
    session_key: &Key,
) -> anyhow::Result<(AppState, tokio::sync::watch::Sender<bool>)> {
    let upstreams = Upstreams::new(
        &catalogue,
        Timeouts {
            connect: settings.upstream_connect_timeout,
            first_byte: settings.upstream_first_byte_timeout,
            idle: settings.upstream_idle_timeout,
            total: settings.upstream_timeout,
        },
        settings.upstream_max_body_bytes,
    )?;
    let dummy_hash =
        actix_web::rt::task::spawn_blocking(crate::password_hashing::dummy_hash).await?;
    let feed = Arc::new(crate::alerts::Feed::default());
    let (alerts_stop, stop) = tokio::sync::watch::channel(false);
    let outbox = crate::alerts::spawn(
        store.clone(),
        feed.clone(),
        crate::alerts::AlertConfig {
            allow_private_targets: settings.webhook_allow_private_targets,
            retry_base: settings.webhook_retry_base,
            poll: settings.alert_poll,
            rotate_after_days: settings.rotate_after_days,
        },
        mailer.clone(),
        stop,
    );
    let event_ids = Arc::new(EventIds::new(
        store.deployment_key16(EVENT_ID_SECRET).await?,
    ));
    let state = AppState {
        outbox,
        alerts: feed.clone(),
        usage: UsageWriter::start(&ledger, feed)
            .await
            .context("starting the usage writer")?,
        ledger,
        refusals: Arc::default(),
        rate_limits: Arc::new(RateLimits::new(match store.backend() {
            crate::store::Backend::Postgres(pg) => Some(pg),
            crate::store::Backend::Sqlite(_) => None,
        })),
        store,
        catalogue: Arc::new(catalogue),
        throttle: Arc::new(LoginThrottle::new(
            settings.login_max_failures,
            settings.login_window,
        )),
        signups: Arc::new(SignupThrottle::new(settings.signup_max_per_hour)),
        hasher: Arc::new(HashPool::new(
            settings.password_hash_workers,
            settings.password_hash_queue,
        )),
        proxies: Arc::new(TrustedProxies::new(
            settings.trusted_proxies.clone(),
            settings.trusted_proxy_header,
        )),
        leak_keys: Arc::new(
            crate::gateway::leaks::LeakKeys::parse(&settings.leak_report_public_keys)
                .map_err(anyhow::Error::msg)?,
        ),
        upstreams: Arc::new(upstreams),
        dummy_hash: Arc::new(dummy_hash),
        form_key: Arc::new(FormKey::derive(session_key)),
        event_ids,
        session_key: session_key.clone(),
        settings: Arc::new(settings.clone()),
        mailer,
    };

    Ok((state, alerts_stop))
}

/// The HTTP server: middleware in order (body guard, request id and span, sessions, security
/// headers) around the health, gateway and dashboard routes.
fn http_server(
    settings: &Settings,
    listener: TcpListener,
    data: web::Data<AppState>,
    store: Store,
    session_key: Key,
) -> anyhow::Result<Server> {
    let session_store = DbSessionStore {
        store,
        max_age: settings.session_max_age,
    };
    let idle = actix_web::cookie::time::Duration::seconds(settings.session_idle.as_secs() as i64);
    let secure = settings.cookie_secure();
    let bodies = crate::transport::BodyGuard::new(settings.body_read_timeout);
    let cors_origins = settings.cors_allowed_origins.clone();
    Ok(HttpServer::new(move || {
        let bodies = bodies.clone();
        let cors_origins = cors_origins.clone();
        let sessions = SessionMiddleware::builder(session_store.clone(), session_key.clone())
            .cookie_name(crate::web::SESSION_COOKIE.into())
            .cookie_secure(secure)
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .session_lifecycle(
                PersistentSession::default()
                    .session_ttl(idle)
                    .session_ttl_extension_policy(TtlExtensionPolicy::OnEveryRequest),
            )
            .build();
        App::new()
            .wrap(actix_web::middleware::from_fn(move |req, next| {
                crate::transport::guard_bodies(bodies.clone(), req, next)
            }))
            // Outermost: every request gets its id and span before anything else runs.
            .wrap(actix_web::middleware::from_fn(crate::telemetry::observe))
            .app_data(data.clone())
            // Dashboard forms; the gateway reads its bodies itself, up to `max_body_bytes`.
            .app_data(web::PayloadConfig::new(crate::web::FORM_BODY_LIMIT))
            .configure(crate::health::routes)
            .configure(|cfg| crate::gateway::routes(cfg, &cors_origins))
            .service(
                web::scope("")
                    // Inside the sessions: a signed-in 404 is re-rendered in the layout.
                    .wrap(actix_web::middleware::from_fn(
                        crate::web::not_found_with_layout,
                    ))
                    .wrap(sessions)
                    .wrap(crate::web::headers::security_headers())
                    .wrap(actix_web::middleware::from_fn(
                        crate::web::headers::head_as_get,
                    ))
                    .configure(crate::web::routes)
                    .default_service(web::to(|| async {
                        Err::<actix_web::HttpResponse, _>(crate::web::error::WebError::NotFound)
                    })),
            )
    })
    // Streams are written as many small chunks: without TCP_NODELAY, Nagle's algorithm
    // holds each one until the client's (delayed, ~40 ms) ACK of the previous.
    .on_connect(|conn, _| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .listen(listener)?
    .backlog(2048)
    // SIGTERM or Ctrl-C: stop accepting, let in-flight requests and streams finish
    // within this bound, then `run_until_stopped` drains the usage writer.
    .shutdown_timeout(settings.shutdown_timeout.as_secs())
    .run())
}
