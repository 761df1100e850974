//! Reply chunking: any reply text and any frame limit give chunks that each fit the limit and
//! join back into exactly the reply; the reassembler never panics on arbitrary chunk frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_shared::proto::{split_reply, Reassembler};
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let id = json!(u64::from(limit) * 7);
    let reply = json!({"id": id, "result": {"text": text}}).to_string();
    let max = 80 + usize::from(limit) * 4;
    let frames = split_reply(&id, &reply, max).expect("room for data");
    let mut r = Reassembler::new();
    let mut whole = None;
    for f in &frames {
        assert!(f.len() <= max || frames.len() == 1, "{} > {max}", f.len());
        let v: Value = serde_json::from_str(f).expect("a chunk is JSON");
        whole = r.push(v).expect("chunks join");
    }
    assert_eq!(
        whole.expect("complete"),
        serde_json::from_str::<Value>(&reply).unwrap()
    );
    // arbitrary frames into a reassembler: errors, never panics
    if let Ok(v) = serde_json::from_slice::<Value>(rest) {
        let _ = Reassembler::new().push(v);
    }
});
