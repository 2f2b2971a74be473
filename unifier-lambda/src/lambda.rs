//! What the Lambda binaries share: logging, and Lambda diagnostics for handler errors.

use lambda_runtime::Diagnostic;

use crate::unify::HandlerError;

/// Logs to stdout, which Lambda sends to `CloudWatch`; level from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .init();
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Diagnostic {
        Diagnostic {
            error_type: error.error_type.to_owned(),
            error_message: error.message,
        }
    }
}
