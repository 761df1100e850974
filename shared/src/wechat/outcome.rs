//! What a gateway does after one call to WeChat's customer-service API (research §4.7): from the
//! call's outcome (an `errcode`, or a transport failure before or after the request was fully
//! written) and the endpoint, the [`Action`]. WeChat's send API takes no idempotency key, so a
//! send whose request may have arrived is never repeated automatically: only answers that prove
//! WeChat refused it (token errors, 40007) and failures before the request left are retried.

use serde::{Deserialize, Serialize};

/// The API called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `message/custom/send`: a message the customer sees.
    Send,
    /// `message/custom/typing`.
    Typing,
    /// `media/upload`.
    Upload,
    /// `media/get`.
    GetMedia,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// WeChat answered with this `errcode` (0: done).
    Answer { errcode: i64 },
    /// The request never reached WeChat whole (connection refused, DNS, TLS handshake).
    NotWritten,
    /// The request was written, then the answer did not come (timeout, reset, garbage).
    AfterWritten,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Done.
    Done,
    /// 40001/40014/42001: drop the token if it is still the cached one, get one, retry once.
    RefreshTokenThenRetryOnce,
    /// 40007 on a message with a media id: drop the cached upload, upload again, retry once.
    ReuploadThenRetryOnce,
    /// 45015/45047: refused until the customer acts; learn it, cancel the rest of the answer.
    StopUntilUserActs,
    /// Nothing was sent: retry after a pause (within the part's deadline).
    RetryLater,
    /// The outcome is unknown (the customer may have the message): never retried automatically;
    /// shown as such, an agent may send again.
    Unknown,
    /// Failed; an agent may send again (for a send: -1 may still have been delivered).
    Failed,
    /// Typing only: refused for a reason that needs no attention (45072/45080/45081).
    Ignore,
}

/// Token errors (platform-spec §4.11; 42001 and 40014 drift, so all three alike).
pub fn is_token_error(errcode: i64) -> bool {
    matches!(errcode, 40001 | 40014 | 42001)
}

/// The action for `outcome` of a call to `endpoint`; `has_media`: the message carries a media id
/// (an image, or a card's thumbnail); `retried`: this was already the one retry.
pub fn decide(endpoint: Endpoint, outcome: Outcome, has_media: bool, retried: bool) -> Action {
    let errcode = match outcome {
        Outcome::Answer { errcode } => errcode,
        Outcome::NotWritten => return Action::RetryLater,
        Outcome::AfterWritten => {
            return match endpoint {
                Endpoint::Send => Action::Unknown,
                // typing repeats harmlessly, an upload makes another id, a download has no effect
                Endpoint::Typing | Endpoint::Upload | Endpoint::GetMedia => {
                    if retried {
                        Action::Failed
                    } else {
                        Action::RetryLater
                    }
                }
            };
        }
    };
    if errcode == 0 {
        return Action::Done;
    }
    if is_token_error(errcode) {
        return if retried {
            Action::Failed
        } else {
            Action::RefreshTokenThenRetryOnce
        };
    }
    match (endpoint, errcode) {
        (Endpoint::Send, 40007) if has_media && !retried => Action::ReuploadThenRetryOnce,
        (Endpoint::Send | Endpoint::Typing, 45015 | 45047) => Action::StopUntilUserActs,
        (Endpoint::Typing, 45072 | 45080 | 45081) => Action::Ignore,
        // -1 on a send may have been delivered: the agent decides
        (Endpoint::Send, -1) => Action::Failed,
        (Endpoint::Typing | Endpoint::Upload | Endpoint::GetMedia, -1) if !retried => {
            Action::RetryLater
        }
        _ => Action::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use Endpoint::*;

    fn a(errcode: i64) -> Outcome {
        Outcome::Answer { errcode }
    }

    #[test]
    fn sends() {
        assert_eq!(decide(Send, a(0), false, false), Done);
        for t in [40001, 40014, 42001] {
            assert_eq!(decide(Send, a(t), false, false), RefreshTokenThenRetryOnce);
            assert_eq!(decide(Send, a(t), false, true), Failed, "one retry only");
        }
        assert_eq!(decide(Send, a(40007), true, false), ReuploadThenRetryOnce);
        assert_eq!(decide(Send, a(40007), true, true), Failed);
        assert_eq!(decide(Send, a(40007), false, false), Failed);
        assert_eq!(decide(Send, a(45015), false, false), StopUntilUserActs);
        assert_eq!(decide(Send, a(45047), true, true), StopUntilUserActs);
        assert_eq!(
            decide(Send, a(-1), false, false),
            Failed,
            "-1 may have been delivered"
        );
        assert_eq!(decide(Send, a(40003), false, false), Failed);
        assert_eq!(decide(Send, Outcome::NotWritten, false, true), RetryLater);
        assert_eq!(decide(Send, Outcome::AfterWritten, false, false), Unknown);
        assert_eq!(decide(Send, Outcome::AfterWritten, true, true), Unknown);
    }

    #[test]
    fn the_others() {
        for c in [45072, 45080, 45081] {
            assert_eq!(decide(Typing, a(c), false, false), Ignore);
        }
        assert_eq!(decide(Typing, a(-1), false, false), RetryLater);
        assert_eq!(decide(Typing, a(-1), false, true), Failed);
        assert_eq!(
            decide(Upload, Outcome::AfterWritten, false, false),
            RetryLater
        );
        assert_eq!(decide(Upload, Outcome::AfterWritten, false, true), Failed);
        assert_eq!(decide(GetMedia, a(40007), false, false), Failed);
        assert_eq!(
            decide(GetMedia, a(42001), false, false),
            RefreshTokenThenRetryOnce
        );
        assert_eq!(decide(Upload, a(0), false, false), Done);
    }
}
