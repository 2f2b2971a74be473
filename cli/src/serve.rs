//! `braid serve`: the configuration and the flags, then `braid_unifier::serve::Server` on the
//! data folder until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use anyhow::Context as _;
use braid_core::Config;
use braid_core::activate::ProfileApiConfig;
use braid_core::collect::WorkspaceConfig;
use braid_unifier::serve::{Options, Server};
use tokio::net::TcpListener;

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (default: ./braid.toml when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Data folder (default ./braid-data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// A write key to accept, for the workspace named by --workspace.
    #[arg(long)]
    write_key: Vec<String>,
    /// The workspace that --write-key keys send to.
    #[arg(long, default_value = "default")]
    workspace: String,
    /// Accept batches forwarded by a Braid edge on POST /v1/forward, signed with this secret
    /// (or set `BRAID_FORWARD_SECRET`, or `[collect] forward_secret`).
    #[arg(long)]
    forward_secret: Option<String>,
    /// Edge mode: forward accepted events, signed with the forward secret, to this ingest
    /// (`http://host:port/v1/forward`) instead of writing the local lake.
    #[arg(long)]
    upstream: Option<String>,
    /// The bearer token of the profile API, GET /v1/profiles/TYPE:VALUE (or set
    /// `BRAID_PROFILE_TOKEN`, or `[activate.profile_api] token`).
    #[arg(long)]
    profile_token: Option<String>,
    /// The admin token of the catalogue API, GET /v1/catalogue (or set `BRAID_CATALOGUE_TOKEN`,
    /// or `[catalogue.api] token`).
    #[arg(long)]
    catalogue_token: Option<String>,
    /// Enforce this tracking plan (JSON, as `braid catalogue plan` writes it; or
    /// `[catalogue] tracking_plan`).
    #[arg(long)]
    tracking_plan: Option<PathBuf>,
    /// Serve the browser SDK from this folder (`sdk-js/dist`) under /sdk.
    #[arg(long)]
    sdk: Option<PathBuf>,
}

/// The configuration: the file, then the flags; a demo workspace when none is configured.
fn configure(args: ServeArgs) -> anyhow::Result<Config> {
    let mut config = crate::config::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(data) = args.data {
        config.server.data = data;
    }
    if let Some(secret) = args.forward_secret {
        config.collect.forward_secret = Some(secret);
    }
    if let Some(upstream) = args.upstream {
        config.collect.upstream = Some(upstream);
    }
    if let Some(token) = args.profile_token {
        config.activate.profile_api = Some(ProfileApiConfig { token });
    }
    if let Some(token) = args.catalogue_token {
        config.catalogue.api = Some(braid_core::catalogue::CatalogueApiConfig { token });
    }
    if let Some(plan) = args.tracking_plan {
        config.catalogue.tracking_plan = Some(plan);
        config.catalogue.plan = None;
        crate::config::read_plan(&mut config)?;
    }
    if let Some(dir) = args.sdk {
        config.collect.sdk.dir = Some(dir);
    }
    if !args.write_key.is_empty() {
        match config
            .workspaces
            .iter_mut()
            .find(|w| w.name == args.workspace)
        {
            Some(workspace) => workspace.write_keys.extend(args.write_key),
            None => config.workspaces.push(WorkspaceConfig {
                name: args.workspace.clone(),
                write_keys: args.write_key,
                rate_limit: None,
                ..Default::default()
            }),
        }
    }
    if config.workspaces.is_empty() {
        let key = crate::config::demo_write_key(&config.server.data)?;
        config.workspaces.push(WorkspaceConfig {
            name: "demo".into(),
            write_keys: vec![key],
            rate_limit: None,
            ..Default::default()
        });
    }
    Ok(config.check()?)
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = configure(args)?;
    let server = Server::open(config, Options::default()).await?;
    for opened in server.opened() {
        if let Some(events) = opened.rebuilt {
            tracing::info!(
                workspace = opened.workspace,
                events,
                generation = opened.generation,
                "Profiles rebuilt from the lake."
            );
        }
    }
    let listen = server.config().server.listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    print_banner(server.config(), listener.local_addr()?);
    server.run(listener, shutdown_signal()).await?;
    Ok(())
}

fn print_banner(config: &Config, address: std::net::SocketAddr) {
    let data = config.server.data.display();
    println!("Braid is running.");
    println!("  listening on  http://{address}");
    for workspace in &config.workspaces {
        for key in &workspace.write_keys {
            println!("  write key     {key}  (workspace {:?})", workspace.name);
        }
    }
    match &config.collect.upstream {
        Some(upstream) => println!("  events        forwarded to {upstream} (edge mode)"),
        None => println!("  data          {data}/raw (events), {data}/failed (rejected events)"),
    }
    let api = if config.activate.profile_api.is_some() {
        format!("GET http://{address}/v1/profiles/TYPE:VALUE with the profile token")
    } else {
        "start with --profile-token T to read them over HTTP".to_owned()
    };
    println!("  profiles      {data}/profiles ({api})");
    let catalogue = if config.catalogue.api.is_some() {
        format!("GET http://{address}/v1/catalogue with the catalogue token, or braid catalogue")
    } else {
        "braid catalogue --data DIR (start with --catalogue-token T for GET /v1/catalogue)"
            .to_owned()
    };
    println!("  data map      {catalogue}");
    if let Some(dir) = &config.collect.sdk.dir {
        println!(
            "  browser SDK   http://{address}{}/braid.js  (paste {} into your pages)",
            config.collect.sdk.path,
            dir.join("snippet.min.js").display()
        );
    }
    if let Some(key) = config.workspaces.first().and_then(|w| w.write_keys.first()) {
        println!("Try it:");
        println!(
            "  curl -u '{key}:' -H 'content-type: application/json' http://{address}/v1/track \\\n    -d '{{\"event\": \"Tried Braid\", \"userId\": \"me\"}}'"
        );
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "Ctrl-C cannot be watched: stop with SIGTERM.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!(message = "Shutting down: finishing requests and flushing the lake.");
}
