//! `braid`: Braid on one machine — the command line over the libraries. Each command is its own
//! file and only wires: it reads the configuration and the flags, calls the library, and prints.
//!
//! - `braid serve` (`serve.rs`): the embedded default, `braid_unifier::serve` on a data folder;
//! - `braid profiles rebuild|export` (`profiles.rs`), `braid compact` (`compact.rs`);
//! - `braid resolve` and `braid import` (`resolve.rs`, `import.rs`): CRM-like records;
//! - `braid bench` (`bench.rs`): throughput on this machine.

/// mimalloc instead of the system allocator: the pipeline makes a few short-lived allocations
/// per event, and glibc's allocator costs several percent of its time (see `braid bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod bench_activate;
mod bench_segment;
mod catalogue;
mod compact;
mod config;
mod destinations;
mod import;
mod profiles;
mod replay;
mod resolve;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "braid",
    version,
    about = "Braid, an open-source customer data platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Braid on one machine: every HTTP route, the lake and the profiles on a local folder.
    Serve(serve::ServeArgs),
    /// Measure ingestion and unification throughput on this machine.
    Bench(bench::BenchArgs),
    /// Merge the small objects of closed hours in the local lake (as the compact function does
    /// in the cloud).
    Compact(compact::CompactArgs),
    /// The data map: every source, event and property that arrived, with quality flags.
    Catalogue(catalogue::CatalogueArgs),
    /// Land the events a tracking plan blocked (failed/) that the plan in force allows, once.
    Replay(replay::ReplayArgs),
    /// Profiles: rebuild them from the lake, or export them.
    #[command(subcommand)]
    Profiles(profiles::ProfilesCommand),
    /// Destinations: how their deliveries go.
    #[command(subcommand)]
    Destinations(destinations::DestinationsCommand),
    /// Find the records of one person among CRM-like CSV records (fuzzy matching).
    Resolve(resolve::ResolveArgs),
    /// Import CRM-like CSV records into profiles: matched as `braid resolve` does, then sent as
    /// identify calls to a Braid endpoint.
    Import(import::ImportArgs),
}

fn main() -> anyhow::Result<()> {
    own_files_only();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BRAID_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Bench(args) => runtime.block_on(bench::run(&args)),
        Command::Compact(args) => runtime.block_on(compact::run(&args)),
        Command::Catalogue(args) => runtime.block_on(catalogue::run(args)),
        Command::Replay(args) => runtime.block_on(replay::run(&args)),
        Command::Profiles(command) => runtime.block_on(profiles::run(command)),
        Command::Destinations(command) => runtime.block_on(destinations::run(command)),
        Command::Resolve(args) => resolve::run(&args),
        Command::Import(args) => runtime.block_on(import::run(&args)),
    }
}

/// Every file and folder braid creates — the data folder, the lake, the profile stores, the
/// demo write key, exports — is its user's only (0600 and 0700, whatever the shell's umask):
/// they hold personal data and secrets.
fn own_files_only() {
    #[cfg(unix)]
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}
