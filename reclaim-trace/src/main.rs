use clap::Parser as _;
use reclaim_trace::{
    cli::{self, Cli, Command},
    cmd, error,
    workload::generator::{ChildSpec, run_child},
};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            let line = cli::one_line_error(&e.render().to_string());
            eprintln!("reclaim-trace: error: {line}");
            std::process::exit(2);
        }
    };
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_millis()
        .init();
    let result = match cli.command {
        // The workload child runs no async code and must not start a runtime.
        Command::WorkloadChild { spec } => serde_json::from_str::<ChildSpec>(&spec)
            .map_err(anyhow::Error::from)
            .and_then(|s| run_child(&s)),
        // Neither touches the kernel: no runtime either.
        Command::Completions { shell } => cmd::dist::completions(shell, &mut std::io::stdout()),
        Command::Man { dir } => cmd::dist::man_pages(&dir),
        command => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(dispatch(command))),
    };
    if let Err(e) = result {
        eprintln!("reclaim-trace: error: {e:#}");
        std::process::exit(error::exit_code(&e));
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Summary(a) => cmd::summary::run(a).await,
        Command::Top(a) => cmd::top::run(a).await,
        Command::Doctor(a) => cmd::doctor::run(a.json, a.probe.probe_mode),
        Command::Record(a) => cmd::record::run(a).await,
        Command::Report(a) => cmd::report::run(a),
        Command::Compare(a) => cmd::compare::run(a),
        Command::Serve(a) => cmd::serve::run(a).await,
        Command::Workload(a) => cmd::workload::run(a).await,
        Command::BenchFloor(a) => cmd::floor::run(a.probe.probe_mode, a.bpf_stats).await,
        Command::WorkloadChild { .. } | Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
}
