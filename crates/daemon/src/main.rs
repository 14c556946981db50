//! `cdcd`: MySQL/MariaDB change data capture. This binary is the edge: command line, configuration,
//! wiring and error reporting (one clear line per failure, exit code 1).

mod athena;
mod check;
mod checkpoint;
mod config;
mod kinesis_output;
mod metrics;
mod notify;
mod pipeline;
mod run;
mod sink;
mod sink_types;
mod tail;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Rows are allocated on the decoding thread and freed on the output thread; glibc's allocator
/// spends a third of `cdcd tail`'s time on that hand-over, mimalloc almost none.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (libmimalloc-sys names only some options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Memory settings that must be made before the allocator initialises, before `main`.
///
/// - mimalloc returns freed memory to the kernel after a delay, and the next flush's buffers then
///   fault in freshly zeroed pages: up to 90,000 page faults and a fifth of `cdcd run`'s CPU time
///   on a 1,000,000-row catch-up. Keep it; the next flush reuses it. (mimalloc reads
///   `MIMALLOC_PURGE_DELAY` when it initialises, so setting that from `main` does nothing; a user
///   who sets it keeps their value.)
/// - Transparent huge pages: every fault in a huge page zeroes 2 MiB, and on a busy host the
///   kernel compacts memory to find one while the allocation waits. With them, the same catch-up
///   spent 0.8-1.3 s of system time against 0.4-0.6 s without (the advice Redis and MongoDB give
///   for the same reason).
#[used]
#[link_section = ".init_array"]
static TUNE_MEMORY: extern "C" fn() = tune_memory;

extern "C" fn tune_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option, on the only thread there is yet.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    // SAFETY: a process-wide flag; failure (an old kernel) leaves the default, which is fine.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[derive(Parser)]
#[command(
    name = "cdcd",
    version,
    about = "Change data capture from the MySQL/MariaDB binlog"
)]
struct Cli {
    /// Configuration file (defaults are compiled in; see config.toml).
    #[arg(long, global = true, env = "CDCD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Follow the source into the lake (masked, Hive-partitioned Parquet in S3 or a directory),
    /// resuming from the checkpoint.
    Run(run::RunArgs),
    /// Read a Kinesis stream (written by `cdcd run` or AWS DMS) into the lake, masked.
    Sink(sink::SinkArgs),
    /// Print the Athena DDL for the lake's tables.
    AthenaDdl(athena::AthenaArgs),
    /// Print every row change as one JSON object per line.
    Tail(tail::TailArgs),
    /// Check that the source server is ready for change data capture.
    Check(check::CheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The log format is configuration; a config that does not load is reported by the command.
    let json = config::Config::load(cli.config.as_deref()).is_ok_and(|c| c.log.format == "json");
    let filter = tracing_subscriber::EnvFilter::try_from_env("CDCD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cdcd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(cli.config.as_deref(), args).await,
            Command::Sink(args) => sink::run(cli.config.as_deref(), args).await,
            Command::AthenaDdl(args) => athena::run(cli.config.as_deref(), args).await,
            Command::Tail(args) => tail::run(cli.config.as_deref(), args).await,
            Command::Check(args) => check::run(cli.config.as_deref(), args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cdcd: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// One line: the error and its causes, separated by `: `.
fn chain(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ").replace('\n', " ")
}
