//! Prometheus metrics, served on the admin listener. No global registry: one [`Metrics`] per process, passed
//! to whoever counts. Labels are bounded sets (route names from the policy, reason codes from the code), never
//! user input.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::token::BearerValidator;

/// Labels of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route name, or `-` when none matched.
    pub route: Arc<str>,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Reason code.
    pub reason: &'static str,
    /// HTTP status class and code, e.g. `200`.
    pub status: u16,
}

/// Labels with an outcome and a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `success` or `failure`.
    pub outcome: &'static str,
    /// Reason code (`ok` on success).
    pub reason: &'static str,
}

/// Labels carrying a route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route name.
    pub route: Arc<str>,
}

/// Every metric Postern exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `postern_requests_total{route,decision,reason,status}`
    pub requests: Family<RequestLabels, Counter>,
    /// `postern_request_duration_seconds{route}`
    pub latency: Family<RouteLabels, Histogram>,
    /// `postern_in_flight_requests`
    pub in_flight: Gauge,
    /// `postern_sign_ins_total{outcome,reason}`
    pub sign_ins: Family<OutcomeLabels, Counter>,
    /// `postern_session_refreshes_total{outcome,reason}`
    pub refreshes: Family<OutcomeLabels, Counter>,
    /// `postern_bearer_tokens_total{outcome,reason}`
    pub bearer: Family<OutcomeLabels, Counter>,
    /// `postern_upstream_errors_total{route}`… by reason, with the route.
    pub upstream_errors: Family<RequestLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("postern");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests by route, decision, reason and status", requests.clone());
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
        });
        registry.register(
            "request_duration_seconds",
            "Time from request to response headers, by route",
            latency.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("in_flight_requests", "Requests being handled now", in_flight.clone());
        let sign_ins = Family::<OutcomeLabels, Counter>::default();
        registry.register("sign_ins", "Completed and failed sign-ins, by reason", sign_ins.clone());
        let refreshes = Family::<OutcomeLabels, Counter>::default();
        registry.register("session_refreshes", "Token refreshes of sessions, by outcome", refreshes.clone());
        let bearer = Family::<OutcomeLabels, Counter>::default();
        registry.register("bearer_tokens", "Bearer tokens presented, by outcome and reason", bearer.clone());
        let upstream_errors = Family::<RequestLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures (connect, timeout, bad response), by route and reason",
            upstream_errors.clone(),
        );
        Metrics { registry, requests, latency, in_flight, sign_ins, refreshes, bearer, upstream_errors }
    }

    /// Adds the bearer validator's cache and verification counters.
    pub fn watch_bearer(&mut self, validator: Arc<BearerValidator>) {
        self.registry.register_collector(Box::new(BearerCollector(validator)));
    }

    /// Publishes a networked store's error counts and call latency.
    pub fn watch_store(&mut self, store: crate::store::StoreMetrics) {
        self.registry.register("store_errors", "Failed calls to the store, by operation", store.errors);
        self.registry.register("store_call_duration_seconds", "Time per call to the store", store.latency);
    }

    /// Publishes the Microsoft Graph group-lookup counters.
    pub fn watch_graph(&mut self, graph: Arc<crate::graph::GraphGroups>) {
        self.registry.register_collector(Box::new(GraphCollector(graph)));
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[derive(Debug)]
struct BearerCollector(Arc<BearerValidator>);

impl Collector for BearerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.0.stats;
        let counters = [
            (
                "bearer_signature_verifications",
                "Bearer tokens whose signature was checked (cache misses)",
                stats.verifications.load(Ordering::Relaxed),
            ),
            (
                "bearer_cache_hits",
                "Bearer tokens answered from the verified-token cache",
                stats.cache_hits.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let metric =
                encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)?;
        }
        // Issuers come from the configuration, never from a request, so the label set stays bounded.
        let key_sets = self.0.loaded_key_sets();
        let mut family = encoder.encode_descriptor(
            "key_fetches",
            "Fetches of an issuer's signing keys (JWKS), by outcome; a failed fetch keeps the last good keys",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (issuer, keys) in &key_sets {
            for (outcome, value) in [
                ("success", keys.stats.fetches.load(Ordering::Relaxed)),
                ("failure", keys.stats.failures.load(Ordering::Relaxed)),
            ] {
                let labels = [("issuer", issuer.as_str()), ("outcome", outcome)];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct GraphCollector(Arc<crate::graph::GraphGroups>);

impl Collector for GraphCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.0.stats;
        let counters = [
            (
                "graph_group_lookups",
                "Group lookups sent to Microsoft Graph after an Entra group overage (cache misses)",
                stats.lookups.load(Ordering::Relaxed),
            ),
            (
                "graph_group_lookup_failures",
                "Group lookups that failed (group rules then fail closed)",
                stats.failures.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let metric =
                encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)?;
        }
        Ok(())
    }
}
