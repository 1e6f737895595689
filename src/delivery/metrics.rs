//! The Prometheus series of one destination's deliveries.

use super::decision::Outcome;

/// Handles on one destination's delivery series, registered once per worker.
pub struct DeliveryMetrics {
    delivered: ::metrics::Counter,
    retried: ::metrics::Counter,
    dead: ::metrics::Counter,
    filtered: ::metrics::Counter,
    /// Deliveries parked without an attempt because the circuit opened.
    pub parked: ::metrics::Counter,
    retried_over_3: ::metrics::Counter,
    /// How long attempts take.
    pub latency: ::metrics::Histogram,
}

impl DeliveryMetrics {
    /// The series of `source`'s deliveries to `destination`.
    pub fn new(source: &str, destination: &str) -> Self {
        let counter = |outcome: &'static str| {
            ::metrics::counter!(
                "hookgate_delivery_attempts_total",
                "source" => source.to_string(),
                "destination" => destination.to_string(),
                "outcome" => outcome
            )
        };
        DeliveryMetrics {
            delivered: counter("delivered"),
            retried: counter("retry"),
            dead: counter("dead"),
            parked: counter("parked"),
            filtered: ::metrics::counter!(
                "hookgate_deliveries_filtered_total",
                "source" => source.to_string(),
                "destination" => destination.to_string()
            ),
            retried_over_3: ::metrics::counter!(
                "hookgate_deliveries_retried_over_3_total",
                "source" => source.to_string(),
                "destination" => destination.to_string()
            ),
            latency: ::metrics::histogram!(
                "hookgate_delivery_duration_seconds",
                "source" => source.to_string(),
                "destination" => destination.to_string()
            ),
        }
    }

    /// Counts an attempt's outcome.
    pub fn count(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Delivered => self.delivered.increment(1),
            Outcome::Retry { attempt, .. } => {
                self.retried.increment(1);
                // Counted once per delivery, when its fourth retry is scheduled.
                if *attempt == 5 {
                    self.retried_over_3.increment(1);
                }
            }
            Outcome::Dead { .. } => self.dead.increment(1),
            Outcome::Filtered => self.filtered.increment(1),
        }
    }
}
