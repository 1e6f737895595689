//! A source and its destinations, checked: names, kinds, secrets, selectors, URLs. The only
//! place `config` reaches into `verify` (each scheme checks its own fields in `verify::build`).

use std::collections::HashSet;

use super::raw::RawSource;
use super::*;
use crate::idempotency::Selector;
use crate::routing::filter::FilterError;
use crate::routing::{EventFilter, OnDead, OrderedDelivery};
use crate::signature_kind::{Encoding, Kind};
use crate::verify;

/// Largest `max_body_bytes`: a spooled webhook (body, headers, key) must stay well inside a
/// spool record's limit, `spool::record::MAX_PAYLOAD` (64 MiB).
pub(super) const MAX_BODY_BYTES: usize = 32 << 20;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(super) fn validate_source(s: RawSource, field: &str) -> Result<SourceConfig, ConfigError> {
    if !valid_name(&s.name) {
        return Err(ConfigError::at(
            format!("{field}.name"),
            format!("{:?} must be 1-64 letters, digits, '-' or '_'", s.name),
        ));
    }
    let field = format!("{field} ({})", s.name);
    let kind: Kind = s.kind.parse().map_err(|_| {
        ConfigError::at(
            format!("{field}.kind"),
            format!(
                "unknown kind {:?}; expected one of: {}",
                s.kind,
                Kind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    if s.secrets.is_empty() {
        return Err(ConfigError::at(
            format!("{field}.secrets"),
            "at least one secret is required",
        ));
    }
    for (j, secret) in s.secrets.iter().enumerate() {
        if secret.trim().is_empty() {
            return Err(ConfigError::at(format!("{field}.secrets[{j}]"), "is empty"));
        }
    }
    if s.max_body_bytes == 0 {
        return Err(ConfigError::at(
            format!("{field}.max_body_bytes"),
            "must be greater than 0",
        ));
    }
    // Well inside what one spool record may hold, headers and all.
    if s.max_body_bytes > MAX_BODY_BYTES {
        return Err(ConfigError::at(
            format!("{field}.max_body_bytes"),
            format!("must be at most {MAX_BODY_BYTES} (32 MiB)"),
        ));
    }
    if s.dedup_ttl_seconds == 0 {
        return Err(ConfigError::at(
            format!("{field}.dedup_ttl_seconds"),
            "must be greater than 0",
        ));
    }
    let idempotency_key = match s.idempotency_key {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(ConfigError::at(
                format!("{field}.idempotency_key"),
                "is an empty list",
            ));
        }
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(j, sel)| {
                    sel.parse::<Selector>()
                        .map_err(|e| ConfigError::at(format!("{field}.idempotency_key[{j}]"), e))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let event_type = s
        .event_type
        .map(|sel| sel.parse::<Selector>())
        .transpose()
        .map_err(|e| ConfigError::at(format!("{field}.event_type"), e))?;
    let path_token = match s.path_token {
        Some(t) if t.trim().is_empty() => {
            return Err(ConfigError::at(format!("{field}.path_token"), "is empty"));
        }
        Some(t) if !t.bytes().all(|b| b.is_ascii_graphic() && b != b'/') => {
            return Err(ConfigError::at(
                format!("{field}.path_token"),
                "must be printable ASCII without '/'",
            ));
        }
        other => other.map(Secret::new),
    };
    if kind == Kind::Token
        && s.secrets
            .iter()
            .any(|t| !t.bytes().all(|b| b.is_ascii_graphic() && b != b'/'))
    {
        return Err(ConfigError::at(
            format!("{field}.secrets"),
            "token secrets must be printable ASCII without '/' (they are URL path segments)",
        ));
    }
    let signature_encoding = s
        .signature_encoding
        .map(|e| e.parse::<Encoding>())
        .transpose()
        .map_err(|e| ConfigError::at(format!("{field}.signature_encoding"), e))?;

    if !(1..=MAX_PARTITIONS).contains(&s.partitions) {
        return Err(ConfigError::at(
            format!("{field}.partitions"),
            format!("must be from 1 to {MAX_PARTITIONS}"),
        ));
    }
    if s.priority > 9 {
        return Err(ConfigError::at(
            format!("{field}.priority"),
            "must be 0 (default) to 9 (most important)",
        ));
    }
    if s.retry.max_attempts == 0 {
        return Err(ConfigError::at(
            format!("{field}.retry.max_attempts"),
            "must be at least 1",
        ));
    }
    if s.retry.base_delay_ms == 0 || s.retry.base_delay_ms > s.retry.max_delay_ms {
        return Err(ConfigError::at(
            format!("{field}.retry.base_delay_ms"),
            "must be greater than 0 and at most retry.max_delay_ms",
        ));
    }
    if s.circuit.failure_threshold == 0 {
        return Err(ConfigError::at(
            format!("{field}.circuit.failure_threshold"),
            "must be at least 1",
        ));
    }
    if s.circuit.open_seconds == 0 {
        return Err(ConfigError::at(
            format!("{field}.circuit.open_seconds"),
            "must be at least 1",
        ));
    }

    let mut dest_names = HashSet::new();
    let mut destinations = Vec::with_capacity(s.destinations.len());
    for (j, d) in s.destinations.into_iter().enumerate() {
        let dfield = format!("{field}.destinations[{j}]");
        if !valid_name(&d.name) {
            return Err(ConfigError::at(
                format!("{dfield}.name"),
                format!("{:?} must be 1-64 letters, digits, '-' or '_'", d.name),
            ));
        }
        if !dest_names.insert(d.name.clone()) {
            return Err(ConfigError::at(
                format!("{dfield}.name"),
                format!("duplicate destination name {:?}", d.name),
            ));
        }
        check_destination_url(&d.url).map_err(|e| ConfigError::at(format!("{dfield}.url"), e))?;
        if d.timeout_ms == 0 || d.timeout_ms > 600_000 {
            return Err(ConfigError::at(
                format!("{dfield}.timeout_ms"),
                "must be between 1 and 600000",
            ));
        }
        if let Some(secret) = &d.secret {
            verify::standard_webhooks::decode_secret(secret)
                .map_err(|e| ConfigError::at(format!("{dfield}.secret"), e))?;
        }
        if d.rate_limit_per_second == Some(0) {
            return Err(ConfigError::at(
                format!("{dfield}.rate_limit_per_second"),
                "must be at least 1 (omit it for no limit)",
            ));
        }
        let filter = EventFilter::new(
            d.event_types.as_deref().unwrap_or_default(),
            d.filter.into_iter().collect(),
        )
        .map_err(|e| {
            let at = match e {
                FilterError::EmptyPattern => "event_types",
                _ => "filter",
            };
            ConfigError::at(format!("{dfield}.{at}"), e)
        })?;
        if let Some(patterns) = &d.forward_headers {
            for (k, p) in patterns.iter().enumerate() {
                let name_like = !p.is_empty()
                    && p.bytes()
                        .all(|b| b == b'*' || b == b'-' || b == b'_' || b.is_ascii_alphanumeric());
                if !name_like {
                    return Err(ConfigError::at(
                        format!("{dfield}.forward_headers[{k}]"),
                        format!("{p:?} must be a header name, '*' standing for any characters"),
                    ));
                }
            }
        }
        let ordering = match (d.ordering_key, d.on_dead) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ConfigError::at(
                    format!("{dfield}.on_dead"),
                    "is set without ordering_key (it says what a dead event does to its key)",
                ))
            }
            (Some(key), on_dead) => {
                let key = key
                    .parse::<Selector>()
                    .map_err(|e| ConfigError::at(format!("{dfield}.ordering_key"), e))?;
                let on_dead = on_dead
                    .map(|o| o.parse::<OnDead>())
                    .transpose()
                    .map_err(|e| ConfigError::at(format!("{dfield}.on_dead"), e))?
                    .unwrap_or_default();
                // A key's events must share one stream for their order to be known.
                if s.partitions > 1 {
                    return Err(ConfigError::at(
                        format!("{dfield}.ordering_key"),
                        "needs the source's partitions = 1 (events of one key must share a stream)",
                    ));
                }
                Some(OrderedDelivery { key, on_dead })
            }
        };
        destinations.push(DestinationConfig {
            name: d.name,
            url: d.url,
            timeout_ms: d.timeout_ms,
            secret: d.secret.map(Secret::new),
            rate_limit_per_second: d.rate_limit_per_second,
            max_in_flight: d.max_in_flight.max(1),
            filter,
            forward_headers: d.forward_headers,
            ordering,
        });
    }

    let config = SourceConfig {
        name: s.name,
        kind,
        secrets: s.secrets.into_iter().map(Secret::new).collect(),
        tolerance_seconds: s.tolerance_seconds,
        dedup_ttl_seconds: s.dedup_ttl_seconds,
        max_body_bytes: s.max_body_bytes,
        idempotency_key,
        event_type,
        path_token,
        signature_header: s.signature_header,
        signature_prefix: s.signature_prefix,
        signature_encoding,
        priority: s.priority,
        partitions: s.partitions,
        destinations,
        retry: s.retry,
        circuit: s.circuit,
        internal: false,
    };
    // Building the verifier checks the kind-specific fields (secret formats, header names).
    verify::build(&config).map_err(|e| ConfigError::at(&field, e))?;
    Ok(config)
}

/// Checks a destination URL: http(s) with a host.
pub(super) fn check_destination_url(url: &str) -> Result<(), String> {
    let uri: actix_web::http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

impl<'a> From<&'a SourceConfig> for verify::Spec<'a> {
    fn from(source: &'a SourceConfig) -> Self {
        verify::Spec {
            kind: source.kind,
            secrets: source.secrets.iter().map(Secret::expose).collect(),
            tolerance_seconds: source.tolerance_seconds,
            signature_header: source.signature_header.as_deref(),
            signature_prefix: source.signature_prefix.as_deref(),
            signature_encoding: source.signature_encoding,
        }
    }
}
