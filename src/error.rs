//! Errors of the HTTP contract, mapped to status codes and JSON bodies in one place.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use serde::Serialize;

use crate::verify::VerifyError;

/// Every way an HTTP request can be refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unknown source {0:?}")]
    UnknownSource(String),
    #[error("no such route")]
    NotFound,
    #[error("{0}")]
    Unauthorized(#[from] VerifyError),
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    BadRequest(String),
    /// An admin JSON body that is missing, not JSON, not `application/json`, or not the
    /// expected shape (unknown fields included).
    #[error("invalid body: {0}")]
    InvalidBody(String),
    #[error("body is larger than the source's limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the queue is unavailable, retry later: {0}")]
    Unavailable(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("missing or wrong admin token (Authorization: Bearer ...)")]
    AdminUnauthorized,
    #[error("{0}")]
    NotFoundWhat(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// Refused by the HTTP server before routing: more than 96 header fields or a head over
    /// 128 KiB (actix-http's fixed limits).
    #[error("request head too large: at most 96 header fields and 128 KiB")]
    HeadersTooLarge,
    /// Refused by the HTTP server before routing: the request head did not arrive in time.
    #[error("the request head did not arrive within {timeout_ms} ms")]
    RequestTimeout { timeout_ms: u64 },
    /// Refused by the HTTP server before routing: not a parseable HTTP/1.x request.
    #[error("malformed HTTP request")]
    MalformedRequest,
    /// Refused by the HTTP server before routing: a body over a server-wide limit.
    #[error("request body is too large")]
    ServerPayloadTooLarge,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

impl ApiError {
    /// The stable error code of the JSON answer.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownSource(_) => "unknown_source",
            ApiError::NotFound => "not_found",
            ApiError::Unauthorized(e) => e.code(),
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::AdminUnauthorized => "unauthorized",
            ApiError::NotFoundWhat(_) => "not_found",
            ApiError::Internal(_) => "internal",
            ApiError::HeadersTooLarge => "headers_too_large",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::MalformedRequest => "bad_request",
            ApiError::ServerPayloadTooLarge => "payload_too_large",
        }
    }

    /// The refusal the HTTP server itself answers with `status` before any route runs (see
    /// `http_refusals`), if it is one of those; `head_timeout` is the server's.
    pub fn server_refusal(status: StatusCode, head_timeout: Duration) -> Option<ApiError> {
        match status {
            StatusCode::BAD_REQUEST => Some(ApiError::MalformedRequest),
            StatusCode::REQUEST_TIMEOUT => Some(ApiError::RequestTimeout {
                timeout_ms: head_timeout.as_millis() as u64,
            }),
            StatusCode::PAYLOAD_TOO_LARGE => Some(ApiError::ServerPayloadTooLarge),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Some(ApiError::HeadersTooLarge),
            _ => None,
        }
    }

    /// The JSON body of the answer: `{"error":"<code>","message":"<text>"}`.
    pub fn json_body(&self) -> Vec<u8> {
        serde_json::to_vec(&ErrorBody {
            error: self.code(),
            message: self.to_string(),
        })
        .unwrap_or_default()
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::UnknownSource(_) | ApiError::NotFound | ApiError::NotFoundWhat(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::AdminUnauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::InvalidJson(_) | ApiError::BadRequest(_) | ApiError::InvalidBody(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::MalformedRequest => StatusCode::BAD_REQUEST,
            ApiError::ServerPayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            // Senders that honour it come back after a short pause instead of hammering.
            ApiError::Unavailable(_) => {
                res.insert_header(("Retry-After", "5"));
            }
            ApiError::AdminUnauthorized => {
                res.insert_header(("WWW-Authenticate", "Bearer"));
            }
            _ => {}
        }
        res.json(ErrorBody {
            error: self.code(),
            message: self.to_string(),
        })
    }
}

/// Largest admin JSON body: filters and options, never payloads.
const ADMIN_JSON_LIMIT: usize = 64 * 1024;

/// JSON bodies of the admin API: `application/json` required, bounded, refused as
/// `invalid_body` when they do not parse into the expected shape.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(ADMIN_JSON_LIMIT)
        .error_handler(|e, _| ApiError::InvalidBody(e.to_string()).into())
}

/// Query strings that do not parse into the expected shape are `bad_request`.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into())
}

/// Path segments that do not parse (an id that is not a UUID) are `bad_request`.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into())
}
