//! `kubectl-tsdb`, the kubectl plugin (`kubectl tsdb ...` once on PATH): flags and output around
//! [`backup_controller::plugin`], with kubectl's conventions (`--kubeconfig`, `--context`, `-n`, `-o`, errors as
//! `Error from server (Reason): message` and exit status 1).

use std::path::PathBuf;
use std::process::ExitCode;

use backup_apis::backup::TimeseriesDBBackup;
use backup_apis::database::DatabaseType;
use backup_apis::restore::TimeseriesDBRestore;
use backup_controller::destination::locations::Locations;
use backup_controller::plugin::{self, Output, RestoreRequest};
use clap::{Parser, Subcommand};
use kube::Api;

/// Per request and per piece of an answer, when `verify` reads from object storage.
const VERIFY_HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Time-series database backups: run one now, restore one, see them all.
#[derive(Debug, Parser)]
#[command(name = "kubectl-tsdb", version)]
struct Cli {
    /// Path to the kubeconfig file; default: $KUBECONFIG or ~/.kube/config.
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use; default: its current context.
    #[arg(long, global = true)]
    context: Option<String>,
    /// Namespace; default: the kubeconfig context's.
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Backups: `backup now NAME` runs a backup of NAME now (scheduled or not; a running one starts over).
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
        /// Name of the TimeseriesDBRestore; default: BACKUP-restore- and a suffix the server makes unique.
        #[arg(long)]
        name: Option<String>,
        /// Find the backup among the files BACKUP left in this location (of the controller's locations file),
        /// not in the TimeseriesDBBackup's status: when the object is gone, e.g. in a cluster rebuilt after a
        /// loss. Needs --type.
        #[arg(long)]
        location: Option<String>,
        /// With --location: BACKUP's spec.destination.path; default: BACKUP.
        #[arg(long, requires = "location")]
        path: Option<String>,
    },
    /// Reads the latest (or --id) backup of BACKUP back from its location: the header, the SHA-256, every record
    /// decoded (and decrypted). Needs the controller's locations file (and the keys and credentials it names).
    Verify {
        /// The TimeseriesDBBackup whose backup to verify.
        backup: String,
        /// Which backup (status.backups[].id); default: the latest successful one.
        #[arg(long)]
        id: Option<String>,
        /// The controller's locations file (as its --locations).
        #[arg(long, env = "BACKUP_LOCATIONS", required_unless_present = "backup_dir")]
        locations: Option<PathBuf>,
        /// The controller's --backup-dir (the location named default).
        #[arg(long, env = "BACKUP_DIR")]
        backup_dir: Option<PathBuf>,
        /// Find the backup among the files BACKUP left in this location, not in its status (the object may be
        /// gone, e.g. in a cluster rebuilt after a loss).
        #[arg(long = "location")]
        in_location: Option<String>,
        /// With --location: BACKUP's spec.destination.path; default: BACKUP.
        #[arg(long, requires = "in_location")]
        path: Option<String>,
    },
    /// The backups: last run, size, next run.
    Status {
        /// All namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Output format: wide (the table with URL and message), json or yaml (the objects).
        #[arg(short, long, value_parser = plugin::parse_output)]
        output: Option<Output>,
    },
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Runs a backup now.
    Now { name: String },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", plugin::describe_error(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (client, default_ns) =
        backup_controller::client::connect_to(cli.kubeconfig.as_deref(), cli.context.as_deref()).await?;
    let ns = cli.namespace.unwrap_or(default_ns);
    let backups: Api<TimeseriesDBBackup> = Api::namespaced(client.clone(), &ns);
    match cli.command {
        Command::Backup { command: BackupCommand::Now { name } } => {
            plugin::backup_now(&backups, &name).await?;
            println!("timeseriesdbbackup.backup.extend-k8s.io/{name} backup requested");
        }
        Command::Restore { backup, to, r#type, database, id, name, location, path } => {
            let restores: Api<TimeseriesDBRestore> = Api::namespaced(client, &ns);
            let req = RestoreRequest { backup, to, r#type, database, id, name, location, path };
            let name = plugin::restore(&backups, &restores, req).await?;
            println!("timeseriesdbrestore.backup.extend-k8s.io/{name} created");
        }
        Command::Verify { backup, id, locations, backup_dir, in_location, path } => {
            let connector = backup_controller::http::transport::Connector::new(VERIFY_HTTP_TIMEOUT)?;
            let mut found = match &locations {
                Some(file) => Locations::load(file, connector.default_transport(), VERIFY_HTTP_TIMEOUT)?,
                None => Locations::default(),
            };
            if let Some(dir) = &backup_dir {
                found = found.with_default_local(dir);
            }
            let in_location = in_location.map(|location| plugin::InLocation { location, path });
            println!("{}", plugin::verify(&backups, &backup, id.as_deref(), &found, in_location).await?);
        }
        Command::Status { all_namespaces, output } => {
            let api = if all_namespaces { Api::all(client) } else { backups };
            print!("{}", plugin::status(&api, all_namespaces, output.unwrap_or_default()).await?);
        }
    }
    Ok(())
}
