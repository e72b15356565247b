//! `kubectl-tsdb`, the kubectl plugin (`kubectl tsdb ...` once on PATH): flags and output around
//! [`backup_controller::plugin`].

use std::path::PathBuf;

use backup_apis::backup::TimeseriesDBBackup;
use backup_apis::database::DatabaseType;
use backup_apis::restore::TimeseriesDBRestore;
use backup_controller::plugin::{self, RestoreRequest};
use clap::{Parser, Subcommand};
use kube::Api;

/// Time-series database backups: run one now, restore one, see them all.
#[derive(Debug, Parser)]
#[command(name = "kubectl-tsdb", version)]
struct Cli {
    /// Kubeconfig to use; default: $KUBECONFIG or ~/.kube/config.
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// Namespace; default: the kubeconfig context's.
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Backups: `backup now NAME` runs a backup of NAME now (scheduled or not).
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Restores the latest (or --id) backup of BACKUP into the database at --to.
    Restore {
        /// The TimeseriesDBBackup to restore from.
        backup: String,
        /// URL of the database to write into.
        #[arg(long)]
        to: String,
        /// Prometheus, VictoriaMetrics or InfluxDB; default: the backed-up database's type.
        #[arg(long = "type", value_parser = plugin::parse_type)]
        r#type: Option<DatabaseType>,
        /// InfluxDB database to write into; default: the backed-up one.
        #[arg(long)]
        database: Option<String>,
        /// Which backup (status.backups[].id); default: the latest successful one.
        #[arg(long)]
        id: Option<String>,
        /// Name of the TimeseriesDBRestore; default: BACKUP-restore-TIME.
        #[arg(long)]
        name: Option<String>,
    },
    /// A table of the backups: last run, size, next run.
    Status {
        /// All namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Runs a backup now.
    Now { name: String },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let (client, default_ns) = backup_controller::client::connect(cli.kubeconfig.as_deref()).await?;
    let ns = cli.namespace.unwrap_or(default_ns);
    let backups: Api<TimeseriesDBBackup> = Api::namespaced(client.clone(), &ns);
    match cli.command {
        Command::Backup { command: BackupCommand::Now { name } } => {
            plugin::backup_now(&backups, &name).await?;
            println!("timeseriesdbbackup.backup.extend-k8s.io/{name} backup requested");
        }
        Command::Restore { backup, to, r#type, database, id, name } => {
            let restores: Api<TimeseriesDBRestore> = Api::namespaced(client, &ns);
            let req = RestoreRequest { backup, to, r#type, database, id, name };
            let name = plugin::restore(&backups, &restores, req).await?;
            println!("timeseriesdbrestore.backup.extend-k8s.io/{name} created");
        }
        Command::Status { all_namespaces } => {
            let api = if all_namespaces { Api::all(client) } else { backups };
            print!("{}", plugin::status(&api, all_namespaces).await?);
        }
    }
    Ok(())
}
