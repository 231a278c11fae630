//! The command line: `serve` (default), `migrate`, `user create`, `credits grant`,
//! `management-key create`, `journal inspect | set-aside` (`cli::journal`), `usage purge`
//! (`cli::usage`).

mod journal;
mod usage;

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::domain::{Credits, Email, Password};
use crate::startup::Application;
use crate::store::{Store, StoreError};

#[derive(Parser)]
#[command(
    name = "lowrouter",
    version,
    about = "LowRouter Keys: API-key dashboard and OpenAI-compatible gateway"
)]
pub struct Cli {
    /// Configuration file (default: ./lowrouter.toml if present). LOWROUTER_* variables override it.
    #[arg(long, global = true, env = "LOWROUTER_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the dashboard and gateway (the default).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage credit balances.
    Credits {
        #[command(subcommand)]
        command: CreditsCommand,
    },
    /// Manage management keys (for the management API).
    #[command(name = "management-key")]
    ManagementKey {
        #[command(subcommand)]
        command: ManagementKeyCommand,
    },
    /// Read or set aside the usage journal (SQLite), e.g. when the server refuses to start
    /// because of a record it cannot read.
    Journal {
        #[command(subcommand)]
        command: journal::JournalCommand,
    },
    /// Request-level usage rows: remove those before a date (retention, now).
    Usage {
        #[command(subcommand)]
        command: usage::UsageCommand,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an account. The password is read from stdin, or prompted for on a terminal.
    Create {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
pub enum ManagementKeyCommand {
    /// Create a management key for an account and print it once (to bootstrap automation).
    Create {
        #[arg(long)]
        email: String,
        /// List and read only; no changes.
        #[arg(long)]
        read_only: bool,
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum CreditsCommand {
    /// Add credits to a workspace, e.g. `--amount 25.00`: by its id (`--workspace`, shown
    /// on the Members page) or its founding owner's email (`--email`, their own workspace).
    Grant {
        #[arg(
            long,
            required_unless_present = "workspace",
            conflicts_with = "workspace"
        )]
        email: Option<String>,
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long)]
        amount: String,
    },
}

/// Runs one subcommand. Long on purpose: one arm per subcommand, each a few lines of
/// parsing and one store call, read top to bottom like `lowrouter --help`.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(settings).await?;
            println!(
                "LowRouter Keys is running on http://127.0.0.1:{}/ (Ctrl-C to stop)",
                app.port()
            );
            app.run_until_stopped().await?;
        }
        Command::Migrate => {
            Store::connect(&settings.database_url).await?;
            println!("database is up to date");
        }
        Command::User {
            command: UserCommand::Create { email },
        } => {
            let email = Email::parse(&email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
            let password = Password::parse(read_password()?, Some(&email))
                .map_err(|e| anyhow::anyhow!("password: {e}"))?;
            let store = Store::connect(&settings.database_url).await?;
            let hash = crate::password_hashing::hash_blocking(password).await?;
            match store
                .create_account(&email, &hash, settings.signup_grant)
                .await
            {
                Ok(_) => println!(
                    "created {} with {} credits",
                    email.as_str(),
                    settings.signup_grant
                ),
                Err(StoreError::Conflict) => {
                    bail!("an account with email {} already exists", email.as_str())
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::Credits {
            command:
                CreditsCommand::Grant {
                    email,
                    workspace,
                    amount,
                },
        } => {
            use crate::store::accounts::GrantTo;
            let to = match (email, workspace) {
                (Some(e), _) => {
                    GrantTo::Email(Email::parse(&e).map_err(|e| anyhow::anyhow!("--email: {e}"))?)
                }
                (None, Some(w)) => GrantTo::Workspace(
                    crate::domain::team::WorkspaceId::parse(&w)
                        .ok_or_else(|| anyhow::anyhow!("--workspace: not a workspace id"))?,
                ),
                (None, None) => bail!("--email or --workspace is required"),
            };
            let amount = Credits::parse(&amount).map_err(|e| anyhow::anyhow!("--amount: {e}"))?;
            if amount == Credits::ZERO {
                bail!("--amount: must be above zero");
            }
            let store = Store::connect(&settings.database_url).await?;
            let whom = match &to {
                GrantTo::Email(e) => e.as_str().to_owned(),
                GrantTo::Workspace(w) => format!("workspace {}", w.0),
            };
            let actor = crate::domain::audit::Actor::cli();
            match store.grant_credits(&to, amount, &actor).await {
                Ok(balance) => {
                    println!("granted {amount} credits to {whom}; balance is now {balance}")
                }
                Err(StoreError::NotFound) => bail!("no account or workspace for {whom}"),
                Err(e) => return Err(e.into()),
            }
        }
        Command::ManagementKey {
            command:
                ManagementKeyCommand::Create {
                    email,
                    read_only,
                    name,
                },
        } => create_management_key(&settings, &email, read_only, &name).await?,
        Command::Journal { command } => journal::run(&settings, command)?,
        Command::Usage { command } => usage::run(&settings, command).await?,
    }
    Ok(())
}

/// Prints the new key's token alone on stdout (for `$(…)`), what it is on stderr.
async fn create_management_key(
    settings: &Settings,
    email: &str,
    read_only: bool,
    name: &str,
) -> anyhow::Result<()> {
    use crate::store::management_keys::{Access, CreatedVia, NewManagementKey};
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let name =
        crate::domain::key_form::parse_name(name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let store = Store::connect(&settings.database_url).await?;
    let Some(account) = store.account_by_email(&email).await? else {
        bail!("no account with email {}", email.as_str());
    };
    let new = NewManagementKey {
        name,
        access: if read_only {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        },
        expires_at: None,
    };
    let token = crate::domain::ManagementToken::generate();
    let row = store
        .create_management_key(
            account.id,
            CreatedVia::Cli,
            &new,
            &token,
            &crate::domain::audit::Actor::cli(),
        )
        .await?;
    eprintln!(
        "created {} management key “{}” ({}) for {}; it is shown only once:",
        if read_only { "read-only" } else { "read-write" },
        row.name,
        row.public_id,
        email.as_str()
    );
    println!("{}", token.expose());
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("Password (at least 10 characters): ")?;
        let again = rpassword::prompt_password("Repeat password: ")?;
        if p != again {
            bail!("the passwords differ");
        }
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
