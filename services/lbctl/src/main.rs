//! `lbctl`: runs the whole lbaas stack on one machine (`lbctl stack`) and talks to the tenant API
//! (`lbctl lb ...`, `lbctl member ...`).

mod client;
mod stack;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lbctl",
    about = "lbaas command line: run the stack, manage load balancers"
)]
struct Cli {
    /// The tenant API.
    #[arg(
        long,
        global = true,
        env = "LBAAS_API_URL",
        default_value = "http://127.0.0.1:9001"
    )]
    api: String,
    /// The project to act in (sent as x-project-id).
    #[arg(long, global = true, env = "LBAAS_PROJECT", default_value = "demo")]
    project: String,
    /// A bearer token (instead of --project).
    #[arg(long, global = true, env = "LBAAS_TOKEN")]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the api, scheduler and a local agent in one process, with SQLite under --data-dir.
    Stack(stack::StackArgs),
    /// Load balancers.
    #[command(subcommand, name = "lb")]
    LoadBalancer(client::LbCommand),
    /// Members of a pool.
    #[command(subcommand)]
    Member(client::MemberCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Stack(args) => stack::run(args).await,
        Command::LoadBalancer(command) => {
            let client =
                client::Client::connect(&cli.api, &cli.project, cli.token.as_deref()).await?;
            client.lb(command).await
        }
        Command::Member(command) => {
            let client =
                client::Client::connect(&cli.api, &cli.project, cli.token.as_deref()).await?;
            client.member(command).await
        }
    }
}
