use clap::Parser;
use clemhost::cli::{Cli, Command};
use clemhost::commands;
use tracing_subscriber::EnvFilter;

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Logs go to stderr: stdout carries the commands' output (tables, JSON, prompts).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Restores the default SIGPIPE action, so that `clemhost ... | head` ends
/// quietly like other Unix tools instead of panicking on a closed pipe.
#[cfg(unix)]
fn reset_sigpipe() {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    // SAFETY: setting a signal's action to its default has no preconditions;
    // it runs before any other thread exists.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}

#[cfg(not(unix))]
fn reset_sigpipe() {}

/// Chat templates are code from others: every rendering in this process and
/// in the plugins it loads goes to a child process, this executable run as
/// `clemhost __template-worker`, with a memory cap and a deadline (see
/// `clemhost_local_common::template_sandbox`). Returns the exit code when
/// this process is such a worker.
fn template_worker() -> Option<std::process::ExitCode> {
    use clemhost_local_common::template_sandbox::{run_worker, WORKER_ARG, WORKER_ENV};
    if std::env::args_os().nth(1).is_some_and(|a| a == WORKER_ARG) {
        return Some(match run_worker() {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(_) => std::process::ExitCode::FAILURE,
        });
    }
    // `/proc/self/exe` is this very program even when the file was replaced
    // (a rebuild during a long run).
    let me = std::path::Path::new("/proc/self/exe");
    let exe = if me.exists() {
        Some(me.to_path_buf())
    } else {
        std::env::current_exe().ok()
    };
    if let Some(exe) = exe {
        // Set before any other thread exists (the plugins read it).
        std::env::set_var(WORKER_ENV, exe);
    }
    None
}

fn main() -> std::process::ExitCode {
    reset_sigpipe();
    if let Some(exit) = template_worker() {
        return exit;
    }
    let cli = Cli::parse();
    init_logging(cli.global.verbose, cli.global.quiet);
    let g = &cli.global;
    let outcome = match &cli.command {
        Command::Plugins(c) => commands::plugins::run(g, c),
        Command::Models(c) => commands::models::run(g, c),
        Command::Keys(c) => commands::keys::run(g, c),
        Command::Games(c) => commands::games::run(g, c),
        Command::Run(a) => commands::run::run(g, a),
        Command::Score(a) => commands::score::run(g, a),
        Command::Eval(a) => commands::eval::run(g, a),
        Command::Transcribe(a) => commands::transcribe::run(g, a),
        Command::Template(c) => commands::template::run(g, c),
        Command::CheckHf(a) => commands::check_hf::run(g, a),
        Command::Doctor(a) => commands::doctor::run(g, a),
        #[cfg(feature = "serve")]
        Command::Serve(a) => commands::serve::run(g, a),
        Command::Probe { file } => commands::plugins::probe(file),
    };
    let exit = match outcome {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!(
                "error: {}",
                clemhost::error::escape_for_terminal(&e.message)
            );
            e.exit
        }
    };
    std::process::ExitCode::from(exit as u8)
}
