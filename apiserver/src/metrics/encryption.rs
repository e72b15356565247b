//! `apiserver_storage_transformation_operations_total`, as upstream counts it: every value the encryption
//! providers read (`from_storage`) or wrote (`to_storage`), by the provider's prefix (`k8s:enc:aesgcm:v1:`, or
//! `identity`) and by the outcome as a gRPC code name (`OK`, or `Unknown` for a value that did not decrypt).
//! The counts are atomics on the providers (`backup_storage::encryption::Counts`), read at each scrape.
//!
//! backend → encryption providers → **these counters** → `/metrics`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use backup_storage::encryption::Transformer;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransformationLabels {
    transformation_type: &'static str,
    transformer_prefix: String,
    status: &'static str,
}

/// The providers of every encrypted resource, once the backend is open.
#[derive(Debug, Default, Clone)]
pub struct TransformationCollector(pub Arc<OnceLock<Vec<Arc<Transformer>>>>);

impl Collector for TransformationCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(transformers) = self.0.get().filter(|t| !t.is_empty()) else { return Ok(()) };
        let mut metric = encoder.encode_descriptor(
            "apiserver_storage_transformation_operations",
            "Total number of transformations.",
            None,
            MetricType::Counter,
        )?;
        for transformer in transformers {
            for provider in transformer.providers() {
                let c = &provider.counts;
                let counts = [
                    ("from_storage", "OK", &c.from_storage_ok),
                    ("from_storage", "Unknown", &c.from_storage_failed),
                    ("to_storage", "OK", &c.to_storage_ok),
                    ("to_storage", "Unknown", &c.to_storage_failed),
                ];
                for (transformation_type, status, count) in counts {
                    let value = count.load(Ordering::Relaxed);
                    if value == 0 {
                        continue;
                    }
                    let labels =
                        TransformationLabels { transformation_type, transformer_prefix: provider.label(), status };
                    ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}
