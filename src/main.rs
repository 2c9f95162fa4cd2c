use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
    };
    let json = kiln::ops::logs::json_requested(std::env::var("KILN_LOG_FORMAT").ok().as_deref());
    kiln::ops::logs::set_json(json == Ok(true));
    match json {
        Ok(true) => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter())
            .with_writer(kiln::ops::logs::ReplicaStderr)
            .init(),
        Ok(false) => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .init(),
        Err(e) => {
            eprintln!("kiln: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    match kiln::cli::run(kiln::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            kiln::ops::logs::notice(&format!("{e:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}
