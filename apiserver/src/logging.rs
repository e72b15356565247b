//! The log: text or JSON lines on stderr, at a verbosity set at start by upstream's `--v` (klog's levels: 0–2
//! `info`, 3–4 `debug` — a line per request —, 5 and more `trace`; `RUST_LOG`, when set, wins) and changed at run
//! time by `PUT /debug/flags/v` with the new level as the body, as upstream's debug flags endpoint.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::options::LogFormat;

/// Sets the process's log filter; registered by [`init`] (absent when the embedding program set up logging).
type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

static SET_FILTER: OnceLock<SetFilter> = OnceLock::new();

/// The filter for klog verbosity `v`.
pub fn filter_for(v: u32) -> EnvFilter {
    EnvFilter::new(match v {
        0..=2 => "info",
        3..=4 => "debug",
        _ => "trace",
    })
}

/// Install the process's subscriber: `format` on stderr (colours only on a terminal), filtered by `RUST_LOG` or
/// else `--v`, and changeable by [`set_verbosity`].
pub fn init(format: LogFormat, v: u32) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| filter_for(v));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal())
    });
    let json =
        (format == LogFormat::Json).then(|| tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr));
    tracing_subscriber::registry().with(filter).with(text).with(json).init();
    let _ = SET_FILTER.set(Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string())));
}

/// `PUT /debug/flags/v`: the new verbosity from `body` (a decimal level, as klog's `Level.Set` takes it); the
/// answer's text, or why not (a 400's).
pub fn set_verbosity(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the level must be a number".to_string())?.trim();
    let v: u32 = text.parse().map_err(|_| format!("strconv.ParseInt: parsing {text:?}: invalid syntax"))?;
    let set = SET_FILTER.get().ok_or("this process's log is not set up by backup-apiserver")?;
    set(filter_for(v))?;
    tracing::info!(v, "log verbosity changed");
    Ok(format!("successfully set klog.logging.verbosity to {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(filter_for(0).to_string(), "info");
        assert_eq!(filter_for(2).to_string(), "info");
        assert_eq!(filter_for(4).to_string(), "debug");
        assert_eq!(filter_for(9).to_string(), "trace");
        assert!(set_verbosity(b"x").unwrap_err().contains("invalid syntax"));
        assert!(set_verbosity(b"-1").unwrap_err().contains("invalid syntax"));
    }
}
