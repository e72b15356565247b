//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` does it: the leader renews
//! the Lease every retry period; a candidate takes it over only when its holder has not renewed it for the lease
//! duration (measured on the candidate's own clock, from when it last saw the Lease change); a leader that cannot
//! renew within the renew deadline stops leading. Writes go with the Lease's `resourceVersion`, so of two
//! candidates only one wins.
//!
//! main → **leader election (this file)** → controller: reconcilers (only while leading).
//!
//! The leader stops leading before anyone else may take over: the renew deadline is shorter than the lease
//! duration. On a graceful stop it releases the Lease (no holder), so a standby takes over at its next try.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The timing of an election (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a candidate waits, from the last change of the Lease it saw, before taking it over.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading.
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// Checks what client-go checks: lease duration > renew deadline > retry period > 0.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration <= self.renew_deadline {
            return Err("--leader-elect-lease-duration must be greater than --leader-elect-renew-deadline".into());
        }
        if self.renew_deadline <= self.retry_period {
            return Err("--leader-elect-renew-deadline must be greater than --leader-elect-retry-period".into());
        }
        if self.retry_period.is_zero() {
            return Err("--leader-elect-retry-period must be positive".into());
        }
        Ok(())
    }
}

/// What a candidate saw of the Lease last, and when it saw it change.
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    at: Instant,
}

/// One candidate for the Lease `name` in its namespace.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Option<Observed>,
}

impl Elector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, timing: Timing) -> Self {
        Self { api, name: name.to_owned(), identity: identity.to_owned(), timing, observed: None }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Campaigns and leads until `stop`: `leading` says whether this candidate leads now. At `stop`, a leader
    /// releases the Lease.
    pub async fn run(mut self, leading: watch::Sender<bool>, stop: CancellationToken) {
        let mut last_renew: Option<Instant> = None;
        loop {
            let attempt = tokio::time::timeout(self.timing.renew_deadline, self.try_acquire_or_renew());
            let held = tokio::select! {
                _ = stop.cancelled() => break,
                result = attempt => match result {
                    Ok(Ok(held)) => held,
                    Ok(Err(e)) => {
                        tracing::warn!(lease = %self.name, error = %e, "could not acquire or renew the lease");
                        false
                    }
                    Err(_) => {
                        tracing::warn!(lease = %self.name, "no answer about the lease in time");
                        false
                    }
                },
            };
            let was_leading = *leading.borrow();
            if held {
                last_renew = Some(Instant::now());
                if !was_leading {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired the lease: leading");
                    leading.send_replace(true);
                }
            } else if was_leading && last_renew.is_none_or(|t| t.elapsed() >= self.timing.renew_deadline) {
                tracing::warn!(
                    lease = %self.name,
                    identity = %self.identity,
                    "could not renew the lease within {:?}: no longer leading",
                    self.timing.renew_deadline
                );
                leading.send_replace(false);
                last_renew = None;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(self.timing.retry_period) => {}
            }
        }
        if *leading.borrow() {
            leading.send_replace(false);
            self.release().await;
        }
    }

    /// One try: whether this candidate holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration_seconds = i32::try_from(self.timing.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let changed = match &self.observed {
            None => true,
            Some(o) => o.holder != holder || o.renew_time != spec.renew_time,
        };
        if changed {
            self.observed =
                Some(Observed { holder: holder.clone(), renew_time: spec.renew_time.clone(), at: Instant::now() });
        }
        let ours = holder.as_deref() == Some(self.identity.as_str());
        if let Some(holder) = &holder
            && !ours
        {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.timing.lease_duration, Duration::from_secs);
            let seen = self.observed.as_ref().map_or_else(Instant::now, |o| o.at);
            if seen.elapsed() < duration {
                tracing::debug!(lease = %self.name, %holder, "the lease is held");
                return Ok(false);
            }
            tracing::info!(lease = %self.name, %holder, "the lease expired: taking it over");
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(duration_seconds),
            acquire_time: if ours { spec.acquire_time.clone() } else { Some(now.clone()) },
            renew_time: Some(now),
            lease_transitions: Some(if ours { transitions } else { transitions.saturating_add(1) }),
            ..spec
        });
        // `replace` sends the resourceVersion read: a concurrent writer makes this a 409.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(written) => {
                let spec = written.spec.unwrap_or_default();
                self.observed =
                    Some(Observed { holder: spec.holder_identity, renew_time: spec.renew_time, at: Instant::now() });
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (no holder), so that a standby need not wait for it to expire.
    async fn release(&mut self) {
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else { return Ok(()) };
            let mut spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            lease.spec = Some(spec);
            self.api.replace(&self.name, &PostParams::default(), &lease).await.map(|_| ())
        };
        match tokio::time::timeout(self.timing.retry_period, result).await {
            Ok(Ok(())) => tracing::info!(lease = %self.name, "released the lease"),
            Ok(Err(e)) => tracing::warn!(lease = %self.name, error = %e, "could not release the lease"),
            Err(_) => tracing::warn!(lease = %self.name, "could not release the lease in time"),
        }
    }
}

/// This replica's identity: `$POD_NAME` (from the Downward API), else the host name; with the process id, so two
/// controllers on one host differ.
pub fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()))
        .unwrap_or_else(|| "backup-controller".into());
    format!("{host}_{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_is_checked_as_client_go_does() {
        assert!(Timing::default().validate().is_ok());
        let secs = Duration::from_secs;
        let t = |l, r, p| Timing { lease_duration: secs(l), renew_deadline: secs(r), retry_period: secs(p) };
        assert!(t(10, 10, 2).validate().is_err());
        assert!(t(15, 2, 2).validate().is_err());
        assert!(t(15, 10, 0).validate().is_err());
        assert!(t(4, 3, 1).validate().is_ok());
    }
}
