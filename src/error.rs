//! Errors at the HTTP edge: a status and a JSON body `{"error": "..."}`.
//!
//! Client mistakes say exactly what is wrong; server faults (storage down)
//! answer a generic message and log the cause, so internals never leak.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::store::{StoreError, StoreErrorKind};

/// An HTTP error response.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    /// 401: no or wrong credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
    /// 409: the request does not fit the resource's state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            message: message.into(),
        }
    }
    /// 413: body too large.
    pub fn too_large(limit: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("request body is larger than the limit of {limit} bytes"),
        }
    }
    /// 415: not JSON.
    pub fn unsupported_media_type(found: Option<&str>) -> Self {
        let message = match found {
            Some(ct) => format!("Content-Type must be application/json, not {ct}"),
            None => "Content-Type must be application/json".to_string(),
        };
        Self {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message,
        }
    }
    /// 503: storage unavailable; the cause is logged, not sent.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed: storage unavailable");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "storage is unavailable; nothing was stored, retry later".into(),
        }
    }
    /// 500: a fault of ours; the cause is logged, not sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error".into(),
        }
    }
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The message sent to the client.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer, Basic realm=\"alertrelay\""),
            );
        }
        resp
    }
}

/// 415 unless the request says its body is JSON (`application/json` or
/// `application/*+json`, parameters ignored).
pub fn check_json_content_type(headers: &HeaderMap) -> Result<(), HttpError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(HttpError::unsupported_media_type(None));
    };
    let text = value.to_str().unwrap_or("");
    let mime = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else {
        Err(HttpError::unsupported_media_type(Some(text)))
    }
}

/// A storage failure as the client sees it: an outage is a 503 that says
/// to retry, a clash a 409, a missing row a 404, a row that cannot be read
/// a 500; the cause goes to the log only.
impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        match e.kind() {
            StoreErrorKind::Unavailable => HttpError::unavailable(&e),
            StoreErrorKind::Conflict => {
                tracing::warn!(error = %e, "request clashes with what is stored");
                HttpError::conflict("the request clashes with what is stored")
            }
            StoreErrorKind::NotFound => HttpError::not_found("not found"),
            StoreErrorKind::Corrupt => HttpError::internal(&e),
        }
    }
}
