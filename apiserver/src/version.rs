//! The server's version, for `--version` and `/version`.

use serde_json::{Value, json};

/// The crate version.
pub const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from (set by build.rs), or "unknown".
pub const GIT_COMMIT: &str = match option_env!("BACKUP_APISERVER_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};
/// What `--version` prints.
pub const VERSION_LINE: &str = const_format_version();

const fn const_format_version() -> &'static str {
    match option_env!("BACKUP_APISERVER_VERSION_LINE") {
        Some(v) => v,
        None => env!("CARGO_PKG_VERSION"),
    }
}

/// The `/version` document (`version.Info`).
pub fn info() -> Value {
    let mut parts = CRATE_VERSION.split('.');
    let major = parts.next().unwrap_or("0");
    let minor = parts.next().unwrap_or("0");
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": format!("v{CRATE_VERSION}"),
        "gitCommit": GIT_COMMIT,
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}
