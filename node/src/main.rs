//! The `registry` binary: parse the command line, load the config, run.

use clap::Parser;
use node::cli::{Cli, ClusterCommand, Command};
use std::collections::HashMap;
use std::process::ExitCode;

// jemalloc with two arenas and quick purging (settings in .cargo/config.toml):
// glibc's malloc gives each of our ~30 threads its own arena and kept the
// peak RSS 20 % above the reference registry's; see docs/performance.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // One crypto provider for every rustls user in the process (the TLS
    // listener, and the object-store clients), chosen here rather than
    // left to whichever crate's features won.
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("registry: a rustls crypto provider was installed before main");
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config.as_deref()),
        Command::Cluster(command) => cluster(command),
        Command::Readonly { mode, target } => {
            admin_call(|env| Box::pin(node::admin::read_only(mode, target, env)))
        }
        Command::Gc { dry_run, target } => {
            admin_call(|env| Box::pin(node::admin::collect(dry_run, target, env)))
        }
    }
}

fn serve(config_file: Option<&std::path::Path>) -> ExitCode {
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = match node::load(config_file, &env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("registry: {e}");
            return ExitCode::from(2);
        }
    };
    node::logging::init(&config.log_level, &config.log);
    let bind = |addr: std::net::SocketAddr| {
        std::net::TcpListener::bind(addr)
            .map_err(|e| tracing::error!(%addr, error = %e, "cannot listen"))
    };
    let Ok(api) = bind(config.listen) else {
        return ExitCode::FAILURE;
    };
    let debug = match config.debug_listen.map(bind).transpose() {
        Ok(debug) => debug,
        Err(()) => return ExitCode::FAILURE,
    };
    let internal = match config.internal_listen.map(bind).transpose() {
        Ok(internal) => internal,
        Err(()) => return ExitCode::FAILURE,
    };
    let listeners = node::Listeners {
        api,
        debug,
        internal,
    };
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    });
    let result = system.block_on(async move {
        let node = node::Node::start(config, listeners, true).await?;
        node.run().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cluster(command: ClusterCommand) -> ExitCode {
    admin_call(|env| Box::pin(node::admin::run(command, env)))
}

type AdminFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + 'a>>;

/// Runs an operator's command and prints its answer (or its error, exit 1).
fn admin_call(
    call: impl for<'a> FnOnce(&'a HashMap<String, String>) -> AdminFuture<'a>,
) -> ExitCode {
    let env: HashMap<String, String> = std::env::vars().collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(call(&env)) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("registry: {e}");
            ExitCode::FAILURE
        }
    }
}
