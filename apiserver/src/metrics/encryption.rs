//! `apiserver_storage_transformation_operations_total`, as upstream counts it: every value the encryption
//! providers read (`from_storage`) or wrote (`to_storage`), by the provider's prefix (`k8s:enc:aesgcm:v1:`, or
//! `identity`) and by the outcome as a gRPC code name (`OK`, or `Unknown` for a value that did not decrypt).
//! The counts are atomics on the providers (`backup_storage::encryption::Counts`), read at each scrape and summed
//! over every configuration loaded (a reload brings new providers; the counters go on).
//! `apiserver_encryption_config_controller_automatic_reloads_total{status}` counts the reloads.
//!
//! backend → encryption providers → **these counters** → `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use backup_storage::encryption::{ResourceTransformer, Transformer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct TransformationLabels {
    transformation_type: &'static str,
    transformer_prefix: String,
    status: &'static str,
}

/// `status` of a reload of the configuration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    status: &'static str,
}

impl ReloadLabels {
    pub fn success() -> Self {
        Self { status: "success" }
    }

    pub fn failure() -> Self {
        Self { status: "failure" }
    }
}

/// The providers of every configuration loaded.
#[derive(Debug, Default, Clone)]
pub struct TransformationCollector(Arc<Mutex<Vec<Arc<Transformer>>>>);

impl TransformationCollector {
    /// Count these resources' providers too.
    pub fn add(&self, resources: &[ResourceTransformer]) {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.extend(resources.iter().map(|r| r.transformer.clone()));
    }
}

impl Collector for TransformationCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut sums = BTreeMap::<TransformationLabels, u64>::new();
        for transformer in self.0.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            for provider in transformer.providers() {
                let c = &provider.counts;
                let counts = [
                    ("from_storage", "OK", &c.from_storage_ok),
                    ("from_storage", "Unknown", &c.from_storage_failed),
                    ("to_storage", "OK", &c.to_storage_ok),
                    ("to_storage", "Unknown", &c.to_storage_failed),
                ];
                for (transformation_type, status, count) in counts {
                    let labels =
                        TransformationLabels { transformation_type, transformer_prefix: provider.label(), status };
                    *sums.entry(labels).or_default() += count.load(Ordering::Relaxed);
                }
            }
        }
        sums.retain(|_, n| *n > 0);
        if sums.is_empty() {
            return Ok(());
        }
        let mut metric = encoder.encode_descriptor(
            "apiserver_storage_transformation_operations",
            "Total number of transformations.",
            None,
            MetricType::Counter,
        )?;
        for (labels, value) in sums {
            ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
