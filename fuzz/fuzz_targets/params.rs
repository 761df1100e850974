//! The daemon's parameter checks (`quiver_daemon::params::parse`, no IO): every method with
//! arbitrary params gives a typed call or an `invalid_params` / `unknown_method` error naming
//! the method, never a panic. The input is `METHOD\n{params JSON}`, or raw bytes taken as a
//! whole frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_daemon::params::{self, METHODS};
use quiver_shared::proto::{self, ErrorCode};
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let req = match std::str::from_utf8(data)
        .ok()
        .and_then(|t| t.split_once('\n'))
    {
        Some((method, body)) => {
            let method = METHODS
                .iter()
                .find(|m| **m == method)
                .map_or(method.to_string(), |m| m.to_string());
            let Ok(params) = serde_json::from_str::<Value>(body) else {
                return;
            };
            let frame = json!({"id": 1, "method": method, "params": params}).to_string();
            match proto::parse_request(frame.as_bytes()) {
                Ok(r) => r,
                Err(_) => return,
            }
        }
        None => match proto::parse_request(data) {
            Ok(r) => r,
            Err(_) => return,
        },
    };
    if let Err(e) = params::parse(&req) {
        assert!(
            matches!(
                e.code,
                ErrorCode::InvalidParams
                    | ErrorCode::UnknownMethod
                    | ErrorCode::UnsupportedProtocol
            ),
            "{e:?}"
        );
        assert!(!e.message.is_empty());
    }
});
