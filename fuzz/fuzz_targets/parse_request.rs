//! Request parsing: any bytes give a request or a `bad_frame` rejection, never a panic; the id
//! echoed back is a number, a short string or null; replies built from it are valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_shared::proto::{self, ErrorCode, MAX_ID_LEN};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    match proto::parse_request(data) {
        Ok(req) => {
            assert!(req.id.is_number() || req.id.as_str().is_some_and(|s| s.len() <= MAX_ID_LEN));
            let reply = proto::reply(&req.id, Value::Null).to_string();
            assert!(serde_json::from_str::<Value>(&reply).is_ok());
        }
        Err(rej) => {
            assert_eq!(rej.error.code, ErrorCode::BadFrame);
            assert!(rej.id.is_null() || rej.id.is_number() || rej.id.is_string());
            let reply = proto::error_reply(&rej.id, &rej.error).to_string();
            assert!(serde_json::from_str::<Value>(&reply).is_ok());
        }
    }
});
