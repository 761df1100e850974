//! JSON text of the wire structs (adapters, Sobot, WeChat): the lowest module, so every
//! protocol module can use it without importing another.

use serde::Serialize;

/// Serializes a wire struct. The structs are plain data, so this cannot fail.
pub(crate) fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serializable wire struct")
}
