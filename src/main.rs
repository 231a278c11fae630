use clap::Parser;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    lowrouter::telemetry::init();
    match lowrouter::cli::run(lowrouter::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
