//! The `PostgreSQL` destination: tables kept equal to the profiles
//! (`braid_core::activate::postgres` has the tables, their statements and the rows). One
//! connection per destination, opened on first use and again after it fails; the tables are
//! created or brought up to date on each new connection (under an advisory lock); each request
//! is one transaction.
//!
//! TLS as the URL's `sslmode` asks (`prefer` when it says nothing), verified against the
//! system's roots (rustls, already built for the HTTPS client).

use std::str::FromStr as _;
use std::time::Duration;

use braid_core::activate::destination::Destination;
use braid_core::activate::postgres::Tables;
use serde_json::Value;
use tokio_postgres::error::SqlState;

use super::{Answer, Delivery, Sink, Wants};

/// A `PostgreSQL` destination.
pub struct Postgres {
    destination: Destination,
    tables: Tables,
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    client: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

/// A destination whose URL cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("destination {key}: url: {problem}")]
pub struct UrlError {
    key: String,
    problem: String,
}

impl Postgres {
    /// The destination's connection settings, read from its URL (and its secret as the
    /// password).
    ///
    /// # Errors
    ///
    /// A URL the client cannot read, or TLS that cannot be set up.
    pub fn new(destination: Destination) -> Result<Postgres, UrlError> {
        let fail = |problem: String| UrlError {
            key: destination.key().to_owned(),
            problem,
        };
        let mut config = tokio_postgres::Config::from_str(&destination.config.url)
            .map_err(|e| fail(e.to_string()))?;
        if !destination.config.secret.is_empty() {
            config.password(destination.config.secret.as_bytes());
        }
        let timeout = Duration::from_secs(destination.config.timeout_seconds);
        config.connect_timeout(timeout);
        config.application_name("braid");
        // A statement that hangs (a lock held elsewhere) ends, and the batch is retried.
        config.options(format!("-c statement_timeout={}", timeout.as_millis()));
        let tls = {
            use rustls_platform_verifier::ConfigVerifierExt as _;
            let client = rustls::ClientConfig::with_platform_verifier()
                .map_err(|e| fail(format!("TLS: {e}")))?;
            tokio_postgres_rustls::MakeRustlsConnect::new(client)
        };
        Ok(Postgres {
            tables: Tables::of(&destination.config),
            destination,
            config,
            tls,
            client: tokio::sync::Mutex::new(None),
        })
    }

    /// A connection with the tables migrated: the one open, or a new one.
    async fn connected<'s>(
        &self,
        slot: &'s mut Option<tokio_postgres::Client>,
    ) -> Result<&'s mut tokio_postgres::Client, tokio_postgres::Error> {
        if let Some(client) = slot.take().filter(|c| !c.is_closed()) {
            return Ok(slot.insert(client));
        }
        let (mut client, connection) = self.config.connect(self.tls.clone()).await?;
        let key = self.destination.key().to_owned();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(destination = key, %error, "the database connection ended");
            }
        });
        let migrate = client.transaction().await?;
        migrate
            .execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&self.tables.lock_key()],
            )
            .await?;
        for statement in self.tables.migrations() {
            migrate.batch_execute(&statement).await?;
        }
        migrate.commit().await?;
        Ok(slot.insert(client))
    }

    /// Writes the rows of a batch in one transaction.
    async fn write(
        &self,
        client: &mut tokio_postgres::Client,
        delivery: &Delivery<'_>,
    ) -> Result<(), tokio_postgres::Error> {
        let profiles = self.destination.latest(delivery.messages, delivery.views);
        let rows = self.tables.rows(&profiles, delivery.sync);
        let workspace = &self.destination.workspace;
        let transaction = client.transaction().await?;
        let list = |rows: Vec<Value>| Value::Array(rows);
        if !rows.gone.is_empty() {
            transaction
                .execute(
                    &self.tables.delete_profiles(),
                    &[workspace, &list(rows.gone)],
                )
                .await?;
        }
        transaction
            .execute(
                &self.tables.delete_members(),
                &[workspace, &list(rows.touched)],
            )
            .await?;
        if !rows.profiles.is_empty() {
            transaction
                .execute(
                    &self.tables.upsert_profiles(),
                    &[workspace, &list(rows.profiles)],
                )
                .await?;
        }
        if !rows.members.is_empty() {
            transaction
                .execute(
                    &self.tables.insert_members(),
                    &[workspace, &list(rows.members)],
                )
                .await?;
        }
        transaction.commit().await
    }

    /// Does `job` on the connection (opened first when there is none), its failure as an
    /// answer.
    async fn run(&self, job: Job<'_>) -> Answer {
        let mut slot = self.client.lock().await;
        // The server ends a statement at the timeout; a connection that stops answering
        // altogether (a network gone quiet, a handshake that never ends) is given up here,
        // twice the timeout on.
        let limit = Duration::from_secs(self.destination.config.timeout_seconds * 2);
        let work = async {
            let client = self.connected(&mut slot).await?;
            match job {
                Job::Write(delivery) => self.write(client, delivery).await,
                Job::Finish(sync) => self.finish(client, sync).await,
            }
        };
        match tokio::time::timeout(limit, work).await {
            Ok(Ok(())) => Answer::ok(),
            Ok(Err(error)) => {
                if slot.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
                    *slot = None;
                }
                answer(&error)
            }
            Err(_) => {
                *slot = None;
                Answer {
                    error: format!(
                        "the database did not answer in {} s; the connection is opened again",
                        limit.as_secs()
                    ),
                    ..Answer::default()
                }
            }
        }
    }

    /// Deletes the rows written before full copy `sync`.
    async fn finish(
        &self,
        client: &mut tokio_postgres::Client,
        sync: u64,
    ) -> Result<(), tokio_postgres::Error> {
        let sync = i64::try_from(sync).unwrap_or(i64::MAX);
        let transaction = client.transaction().await?;
        for statement in self.tables.delete_older() {
            transaction
                .execute(&statement, &[&self.destination.workspace, &sync])
                .await?;
        }
        transaction.commit().await
    }
}

/// What is done on the connection.
enum Job<'a> {
    /// A request's rows.
    Write(&'a Delivery<'a>),
    /// The end of a full copy.
    Finish(u64),
}

/// A failure as the deliverer reads it: a row the database refuses (SQLSTATE class 22, data,
/// or 23, a constraint) is not retried (`422`); anything else (no connection, a timeout, a
/// permission an operator can grant) is.
fn answer(error: &tokio_postgres::Error) -> Answer {
    let code = error.code();
    let refused = code.is_some_and(|c| {
        let class = c.code().get(..2).unwrap_or_default();
        class == "22" || class == "23"
    });
    let described = match error.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => error.to_string(),
    };
    Answer {
        status: refused.then_some(422),
        retry_after: None,
        error: if code == Some(&SqlState::QUERY_CANCELED) {
            format!("the transaction took longer than its timeout: {described}")
        } else {
            described
        },
    }
}

impl Sink for Postgres {
    fn wants(&self) -> Wants {
        Wants::Whole
    }

    fn copies(&self) -> bool {
        true
    }

    async fn deliver(&self, delivery: Delivery<'_>) -> Answer {
        self.run(Job::Write(&delivery)).await
    }

    async fn finish_copy(&self, sync: u64) -> Answer {
        self.run(Job::Finish(sync)).await
    }
}
