//! The `timgate` command line: run the gateway (or the demo), the emulator alone, print a UserSig,
//! check a configuration, or print shell completions and the man page made from these
//! definitions. Configuration problems exit with code 64 and one line per problem.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use timgate::app::{App, Reloader, bind};
use timgate::config::{Config, LogFormat};
use timgate::emulator::{Emulator, EmulatorConfig};
use timgate::error::Error;
use timgate::signer::Signer;
use timgate::telemetry::LogLevel;

/// Exit code for a configuration the gateway cannot run with (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    version,
    about = "A gateway for the Tencent Cloud IM REST API: signs, validates, paces, retries."
)]
struct Cli {
    /// A TOML file laid over the built-in defaults (then TIMGATE__SECTION__KEY variables).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Run the gateway with a built-in Tencent emulator and sample credentials.
    #[arg(long)]
    demo: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Tencent emulator alone.
    Emulate(EmulateArgs),
    /// Print a UserSig for the configured identity, or for another user of the app.
    Usersig(UsersigArgs),
    /// Load and check the configuration; print what is wrong and exit non-zero.
    CheckConfig,
    /// Print a completion script for SHELL, e.g. `timgate completions bash >
    /// /usr/share/bash-completion/completions/timgate`.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `timgate man > /usr/local/share/man/man1/timgate.1`; with
    /// --dir, write it and one page per subcommand (timgate-emulate.1, ...) there instead.
    Man {
        /// The directory to write timgate.1 and the subcommands' pages to.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Prints what `completions` and `man` make from the definitions above, if one of them was asked
/// for. They need no configuration and no runtime.
fn print_docs(command: Option<&Command>) -> Option<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = match command? {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "timgate", &mut out);
            out.flush()
        }
        Command::Man { dir: None } => clap_mangen::Man::new(Cli::command())
            .render(&mut out)
            .and_then(|()| out.flush()),
        Command::Man { dir: Some(dir) } => clap_mangen::generate_to(Cli::command(), dir),
        _ => return None,
    };
    Some(match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("timgate: cannot write the pages: {e}");
            ExitCode::FAILURE
        }
    })
}

#[derive(clap::Args)]
struct UsersigArgs {
    /// The UserID to sign for, instead of `tencent.identifier` (the admin account): a client
    /// SDK's login, or a test user's.
    #[arg(long, value_name = "USERID")]
    identifier: Option<String>,
}

/// The emulator alone, configured by these flags only: `--config` is refused with it, since
/// nothing in a gateway's configuration describes the emulated app.
#[derive(clap::Args)]
struct EmulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The emulated app's SDKAppID.
    #[arg(long, default_value_t = timgate::emulator::DEMO_SDKAPPID)]
    sdkappid: u64,
    /// Its admin account.
    #[arg(long, default_value = timgate::emulator::DEMO_IDENTIFIER)]
    identifier: String,
    /// Its SecretKey.
    #[arg(long, env = "TIMGATE_EMULATOR_SECRET_KEY", default_value = timgate::emulator::DEMO_SECRET_KEY, hide_default_value = true)]
    secret_key: String,
    /// Answer 10010 for unknown groups instead of creating them.
    #[arg(long)]
    no_auto_create: bool,
    /// Latency added to every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of attribute writes answered 10002, from 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    fail_share: f64,
    /// Attribute writes per group per sliding second before 10049.
    #[arg(long, default_value_t = 5)]
    group_writes_per_second: u32,
    /// Calls per API per sliding second before 60007.
    #[arg(long, default_value_t = 200)]
    app_per_second: u32,
    /// Records of calls kept in memory at most (0 for long load runs; counters go on).
    #[arg(long, default_value_t = timgate::emulator::state::MAX_RECORDS)]
    max_records: usize,
}

/// mimalloc rather than the system allocator: a gateway allocates and frees small buffers on
/// every request, where glibc's malloc cost about a tenth of the CPU; and after a queue of
/// 100,000 requests drains, mimalloc gives about two thirds of its memory back where glibc kept
/// all of it (README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(code) = print_docs(cli.command.as_ref()) {
        return code;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Config(e)) => {
            eprintln!("invalid configuration: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("timgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Refuses flag combinations that would otherwise be silently ignored, the way clap refuses
/// its own (a message and usage on stderr, exit code 2).
fn refuse_ignored_flags(cli: &Cli) {
    use clap::CommandFactory;
    let refuse = |message: String| {
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, message)
            .exit()
    };
    match &cli.command {
        Some(command) if cli.demo => refuse(format!(
            "--demo runs the gateway with its own emulator and takes no subcommand; run `timgate --demo` or `timgate {}` alone",
            command.name()
        )),
        Some(Command::Emulate(_)) if cli.config.is_some() => refuse(
            "emulate does not read --config: the emulator is configured by its own flags only (timgate emulate --help)".to_string(),
        ),
        _ => {}
    }
}

impl Command {
    /// The subcommand as typed.
    fn name(&self) -> &'static str {
        match self {
            Command::Emulate(_) => "emulate",
            Command::Usersig(_) => "usersig",
            Command::CheckConfig => "check-config",
            Command::Completions { .. } => "completions",
            Command::Man { .. } => "man",
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    refuse_ignored_flags(&cli);
    let file = cli.config.as_deref();
    match cli.command {
        None if cli.demo => timgate::demo::run(file, shutdown_signal()).await,
        None => {
            let config = Config::load(file)?;
            let log = timgate::telemetry::init(config.log.format, &config.log.level);
            let app = App::build(config).await?.with_log_level(log.clone());
            tokio::spawn(reload_on_hangup(
                app.reloader(),
                file.map(PathBuf::from),
                log,
            ));
            app.serve(shutdown_signal()).await
        }
        Some(Command::Emulate(args)) => emulate(args).await,
        Some(Command::Usersig(args)) => usersig(file, args),
        Some(Command::CheckConfig) => check_config(file),
        // Printed by print_docs before the runtime starts.
        Some(Command::Completions { .. } | Command::Man { .. }) => Ok(()),
    }
}

/// Prints a UserSig for the configured identity or `args.identifier`, and what it is for on
/// stderr (never the key).
fn usersig(file: Option<&std::path::Path>, args: UsersigArgs) -> Result<(), Error> {
    let config = Config::load(file)?;
    let mut tencent = config.tencent;
    if let Some(identifier) = args.identifier {
        timgate::tencent::catalogue::check_identifier(&identifier).map_err(|why| {
            Error::Config(timgate::config::ConfigError::one(format!(
                "--identifier: {why}"
            )))
        })?;
        tencent.identifier = identifier;
    }
    let signer = Signer::new(&tencent)?;
    println!("{}", signer.usersig());
    eprintln!(
        "sdkappid {} identifier {} expires at unix {}",
        tencent.sdkappid,
        tencent.identifier,
        signer.expires_at()
    );
    Ok(())
}

fn check_config(file: Option<&std::path::Path>) -> Result<(), Error> {
    match Config::load(file) {
        Ok(config) => {
            println!("configuration OK");
            for line in config.summary() {
                println!("{line}");
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("configuration has {} problem(s):", e.problems.len());
            for problem in &e.problems {
                eprintln!("  {problem}");
            }
            std::process::exit(EXIT_CONFIG.into());
        }
    }
}

async fn emulate(args: EmulateArgs) -> Result<(), Error> {
    timgate::telemetry::init(LogFormat::Text, "info");
    if !(0.0..=1.0).contains(&args.fail_share) {
        return Err(Error::Internal(
            "--fail-share must be between 0 and 1".into(),
        ));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(timgate::tls::load_server_config(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = bind(args.listen, "--listen").await?;
    let config = EmulatorConfig {
        sdkappid: args.sdkappid,
        identifier: args.identifier,
        secret_key: args.secret_key,
        auto_create: !args.no_auto_create,
        latency: Duration::from_millis(args.latency_ms),
        fail_share: args.fail_share,
        group_writes_per_second: args.group_writes_per_second,
        app_per_second: args.app_per_second,
        max_records: args.max_records,
    };
    let emulator = Emulator::spawn(config, listener, tls);
    println!("emulator listening on {scheme}://{}", emulator.addr);
    shutdown_signal().await;
    emulator.shutdown().await;
    Ok(())
}

/// On each SIGHUP, re-reads the configuration (the same file and environment as at start) and
/// applies it; a configuration with problems is refused and the running one stays in force. The
/// handler is installed when this is called, not when the future first runs: spawned, it could
/// run after "Serving." was logged, and a SIGHUP in between killed the process with the default
/// action (seen in `tests/secrets.rs` on a clean CI clone).
fn reload_on_hangup(
    reloader: Reloader,
    file: Option<PathBuf>,
    log: Option<LogLevel>,
) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    async move {
        #[cfg(unix)]
        {
            let Some(mut hangups) = hangups else {
                return;
            };
            while hangups.recv().await.is_some() {
                let config = match Config::load(file.as_deref()) {
                    Ok(config) => config,
                    Err(e) => {
                        tracing::error!(error = %e, "Configuration reload refused; the running configuration stays.");
                        reloader.refused(&e);
                        continue;
                    }
                };
                if let Some(Err(e)) = log.as_ref().map(|log| log.set(&config.log.level)) {
                    tracing::warn!(error = %e, "Log level not changed.");
                }
                let restart = reloader.apply(config);
                if restart.is_empty() {
                    tracing::info!("Configuration reloaded.");
                } else {
                    tracing::warn!(needs_restart = ?restart, "Configuration reloaded; these changes need a restart and were not applied.");
                }
            }
        }
        #[cfg(not(unix))]
        let _ = (reloader, file, log);
    }
}

/// Resolves on SIGTERM (Kubernetes) or SIGINT (Ctrl-C). The handlers are installed when this is
/// called, not when the future is first polled: a SIGTERM between the demo's printed curl and
/// its serving would otherwise kill the process with the default action (exit by signal, not 0).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (term, int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {},
                () = wait(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
