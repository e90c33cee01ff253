//! `loophole-conductor`: `serve` a set to a band, or `ctl` a running conductor. Thin: parses
//! the command line (clap) and calls the library ([`loophole_conductor::serve::Server`],
//! [`loophole_conductor::ctl`]). Bad input exits 2 with a clear line.
//!
//! Thread: the main thread (the server and the client run their own).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use loophole_conductor::join::{JoinCode, role_name};
use loophole_conductor::serve::{DEFAULT_LISTEN, ServeOptions, Server, write_codes};
use loophole_conductor::set::SetSource;
use loophole_conductor::{ctl, join};
use loophole_net_proto::v1::Role;

/// Loophole's conductor: one log of presses, every laptop on the same beat.
#[derive(Parser)]
#[command(name = "loophole-conductor", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a set to a band; prints `join code: CODE`.
    Serve(ServeArgs),
    /// Press or ask a running conductor: scene.trigger SCENE [--quantise Q], clip.trigger CLIP,
    /// stop [TRACK], tempo BPM, status [--json], log [--since SEQ].
    Ctl(CtlArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// The session file (TOML) to serve.
    #[arg(required_unless_present = "demo", conflicts_with = "demo")]
    set: Option<PathBuf>,
    /// Serve the built-in demo set.
    #[arg(long)]
    demo: bool,
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Address to put in the join code (behind a port forward or NAT).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// State directory: certificate, secrets, the log (the same one gives the same join code).
    #[arg(long, default_value = "conductor-state")]
    state: PathBuf,
    /// Also write the join codes (labelled by role) to this file.
    #[arg(long)]
    join_code_file: Option<PathBuf>,
    /// A JSON-lines log of what happens (entries, joins, refusals, executions).
    #[arg(long)]
    log: Option<PathBuf>,
}

#[derive(Args)]
struct CtlArgs {
    /// The join code (performer or admin to press; any to ask).
    #[arg(long)]
    join: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Ctl(args) => run_ctl(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let set = match (args.demo, args.set) {
        (true, _) => SetSource::Demo,
        (false, Some(path)) => SetSource::File(path),
        (false, None) => {
            eprintln!("error: give a session file (SET.toml) or --demo");
            return Ok(ExitCode::from(2));
        }
    };
    let mut options = ServeOptions::new(set);
    options.listen = args.listen;
    options.advertise = args.advertise;
    options.state_dir = args.state.clone();
    options.log_file = args.log;
    let server = Server::start(options)?;
    let codes: Vec<(Role, JoinCode)> =
        [Role::Performer, Role::Observer, Role::Admin].iter().map(|r| (*r, server.join_code(*r).clone())).collect();
    println!("join code: {}", server.join_code(Role::Performer));
    println!(
        "listening on {} (the join code says {}); observer and admin codes in {}",
        server.local_addr(),
        server.join_code(Role::Performer).address,
        args.state.join("join-codes.txt").display()
    );
    if let Some(file) = &args.join_code_file {
        write_codes(file, &codes)?;
    }
    eprintln!(
        "trigger with: loophole-conductor ctl --join {} scene.trigger SCENE   ({} role)",
        server.join_code(Role::Admin),
        role_name(Role::Admin)
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            let _ = rt.block_on(tokio::signal::ctrl_c());
            let _ = tx.send(());
        }
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(()) => {
                eprintln!("stopping");
                server.shutdown()?;
                return Ok(ExitCode::SUCCESS);
            }
            Err(_) if !server.is_running() => {
                server.wait()?;
                return Ok(ExitCode::from(1));
            }
            Err(_) => {}
        }
    }
}

fn run_ctl(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let code = match join::JoinCode::parse(&args.join) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: --join: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let command = match ctl::parse(&args.command) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut out = std::io::stdout();
    let code = ctl::run(&code, command, &mut out)?;
    Ok(ExitCode::from(code as u8))
}
