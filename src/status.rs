//! Status names shared by the audit trail, the admin API and the breaker: enums that
//! serialise to the exact strings stored in PostgreSQL and Redis, so no code compares free
//! strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An unknown status name; holds the names that are known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of {0}")]
pub struct UnknownStatus(pub &'static str);

/// Enums named by fixed strings: `as_str`, `Display`, `FromStr` and comparison with `&str`.
macro_rules! named {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The stored name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            /// The stored names, comma-separated (for error messages).
            pub const NAMES: &'static str = concat_names!($($name),+);
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownStatus;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownStatus(Self::NAMES)),
                }
            }
        }

        // Callers (and tests) compare with the stored strings they read elsewhere.
        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

macro_rules! concat_names {
    ($first:literal $(, $rest:literal)*) => {
        concat!($first $(, ", ", $rest)*)
    };
}

/// The status of an event (the least advanced of its deliveries) or of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted, not attempted yet (for an event: some destination not attempted yet).
    Queued,
    /// An attempt is under way.
    Delivering,
    /// The destination answered 2xx.
    Delivered,
    /// Failed; another attempt is scheduled.
    Retrying,
    /// Given up: in the dead-letter stream.
    Dead,
    /// Not wanted by the destination (its `event_types` or `filter`): never attempted there.
    Filtered,
}

named!(Status {
    Queued => "queued",
    Delivering => "delivering",
    Delivered => "delivered",
    Retrying => "retrying",
    Dead => "dead",
    Filtered => "filtered",
});

/// A destination's circuit breaker state, as stored in its Redis hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitStatus {
    /// Deliveries pass.
    #[default]
    Closed,
    /// Deliveries wait until the open period ends.
    Open,
    /// One probe delivery decides whether it closes or opens again.
    HalfOpen,
}

named!(CircuitStatus {
    Closed => "closed",
    Open => "open",
    HalfOpen => "half_open",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_stored_names() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in CircuitStatus::ALL {
            assert_eq!(s.as_str().parse::<CircuitStatus>(), Ok(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(CircuitStatus::HalfOpen.as_str(), "half_open");
    }

    #[test]
    fn unknown_names_are_refused_with_the_known_ones() {
        let err = "sent".parse::<Status>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "must be one of queued, delivering, delivered, retrying, dead, filtered"
        );
        assert!("half-open".parse::<CircuitStatus>().is_err());
    }
}
