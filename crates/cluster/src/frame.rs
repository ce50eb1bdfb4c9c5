//! The messages between pools and worker hosts, and their authentication.
//!
//! Every message is postcard-encoded and *sealed*: prefixed with an HMAC-SHA-256 (truncated to
//! 16 bytes) under the cluster key, over a byte naming the message's kind and its body. A worker
//! host resolves a task address only from a sealed request whose tag checks out and whose build
//! fingerprint is its own. NATS's own authentication decides who may talk on the subjects at
//! all; the key makes sure that what a worker jumps into was named by a holder of the key.
//!
//! The one unsealed message is a [`Refusal`]: a host that cannot open a request (another key)
//! says so, so that the submitter gets a clear error instead of a wait. A forged refusal can
//! only fail a task, which anyone allowed on the subjects could do anyway by deleting it.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use polyexec_core::TaskError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::addr::{TaskAddr, Verified};
use crate::build_id::BuildId;

const TAG_LEN: usize = 16;
const SEALED: u8 = 0;
const REFUSAL: u8 = 1;

/// The cluster key: authenticates every frame. 32 bytes.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Key([u8; 32]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A fresh random key from the operating system.
    pub(crate) fn random() -> Result<Key, String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("no random key: {e}"))?;
        Ok(Key(bytes))
    }

    /// A key from its 64 hex digits (the form of `POLYEXEC_CLUSTER_KEY`).
    pub(crate) fn from_hex(text: &str) -> Result<Key, String> {
        let text = text.trim();
        let valid = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(
                "the cluster key must be 64 hex digits (32 random bytes), for example \
                        from `openssl rand -hex 32`"
                    .into(),
            );
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("checked hex digits");
        }
        Ok(Key(bytes))
    }

    pub(crate) fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn mac(&self, kind: u8, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(&[kind]);
        mac.update(body);
        mac
    }

    /// Encodes and seals a message of kind `kind`.
    pub(crate) fn seal<T: Serialize>(&self, kind: u8, message: &T) -> Vec<u8> {
        let body = postcard::to_allocvec(message).expect("frames always encode");
        let tag = self.mac(kind, &body).finalize().into_bytes();
        let mut out = Vec::with_capacity(1 + TAG_LEN + body.len());
        out.push(SEALED);
        out.extend_from_slice(&tag[..TAG_LEN]);
        out.extend_from_slice(&body);
        out
    }

    /// Checks and decodes a sealed message of kind `kind`.
    pub(crate) fn open<T: DeserializeOwned>(&self, kind: u8, frame: &[u8]) -> Result<T, Opened> {
        match frame.first() {
            Some(&SEALED) if frame.len() > TAG_LEN => {}
            Some(&REFUSAL) => {
                return Err(match postcard::from_bytes::<Refusal>(&frame[1..]) {
                    Ok(refusal) => Opened::Refusal(refusal),
                    Err(_) => Opened::Invalid,
                });
            }
            _ => return Err(Opened::Invalid),
        }
        let (tag, body) = frame[1..].split_at(TAG_LEN);
        self.mac(kind, body)
            .verify_truncated_left(tag)
            .map_err(|_| Opened::Invalid)?;
        postcard::from_bytes(body).map_err(|_| Opened::Invalid)
    }
}

/// Why a frame did not open.
#[derive(Debug)]
pub(crate) enum Opened {
    /// Not sealed with this key, or not a message of this kind.
    Invalid,
    /// A host's refusal of a task.
    Refusal(Refusal),
}

/// Message kinds (part of the tag: a reply can never pass for a request).
pub(crate) mod kind {
    pub(crate) const REQUEST: u8 = 1;
    pub(crate) const REPLY: u8 = 2;
    pub(crate) const CANCEL: u8 = 3;
    pub(crate) const HELLO: u8 = 4;
}

/// A task, from a pool to the worker hosts of its build.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) build: BuildId,
    /// The subject the result goes to (the pool's own).
    pub(crate) reply_to: String,
    pub(crate) id: u64,
    pub(crate) addr: TaskAddr,
    #[serde(with = "serde_bytes")]
    pub(crate) input: Vec<u8>,
    /// The task's time limit, if it has one. The host counts it from when it starts the task
    /// (the pool counts it from submission, so the pool's handle times out first; the host's
    /// count stops the work even if the pool's cancel notice never arrives).
    pub(crate) time_limit: Option<Duration>,
}

/// A request that passed the checks: its address may be resolved.
#[derive(Debug)]
pub(crate) struct OpenRequest {
    pub(crate) reply_to: String,
    pub(crate) id: u64,
    pub(crate) addr: Verified,
    pub(crate) input: Vec<u8>,
    pub(crate) time_limit: Option<Duration>,
}

/// Why a host does not run a request.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Not sealed with this host's key (or not a request at all): nothing in it can be trusted.
    NotAuthenticated,
    /// Sealed with the key but for another build: the reply subject and id can be trusted.
    OtherBuild {
        reply_to: String,
        id: u64,
        theirs: BuildId,
    },
}

/// Opens a request: checks its tag under `key` and that it names this build.
pub(crate) fn open_request(key: &Key, frame: &[u8], ours: BuildId) -> Result<OpenRequest, Refused> {
    let request: Request = key
        .open(kind::REQUEST, frame)
        .map_err(|_| Refused::NotAuthenticated)?;
    if request.build != ours {
        return Err(Refused::OtherBuild {
            reply_to: request.reply_to,
            id: request.id,
            theirs: request.build,
        });
    }
    Ok(OpenRequest {
        reply_to: request.reply_to,
        id: request.id,
        addr: Verified::after_checks(request.addr),
        input: request.input,
        time_limit: request.time_limit,
    })
}

/// A task's outcome, from a host to the pool that submitted it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub(crate) id: u64,
    #[serde(with = "outcome_bytes")]
    pub(crate) outcome: Result<Vec<u8>, TaskError>,
}

/// A reply's outcome with its value encoded as one byte string (serde_bytes has no form for a
/// `Result`).
mod outcome_bytes {
    use polyexec_core::TaskError;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub(super) fn serialize<S: Serializer>(
        outcome: &Result<Vec<u8>, TaskError>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        outcome
            .as_ref()
            .map(|bytes| Bytes::new(bytes))
            .serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Result<Vec<u8>, TaskError>, D::Error> {
        Ok(Result::<ByteBuf, TaskError>::deserialize(deserializer)?.map(ByteBuf::into_vec))
    }
}

/// "Stop task `id` of the pool whose result subject is `reply_to`", to every host of a build.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CancelNotice {
    pub(crate) reply_to: String,
    pub(crate) id: u64,
}

/// A host's answer to a pool's roll call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) build: BuildId,
    pub(crate) queue: String,
    pub(crate) slots: u32,
    pub(crate) host: String,
    pub(crate) pid: u32,
}

/// An unsealed refusal: task `id` of the pool listening on the subject it is sent to was not
/// run, for `reason`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Refusal {
    pub(crate) id: u64,
    pub(crate) reason: String,
}

impl Refusal {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![REFUSAL];
        out.extend(postcard::to_allocvec(self).expect("refusals always encode"));
        out
    }
}

/// How long a time is, for messages: whole milliseconds.
pub(crate) fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

/// The reply subject and id of a request, read *without* checking its tag: only for telling
/// its sender why it was refused.
pub(crate) fn peek_request(frame: &[u8]) -> Option<(String, u64)> {
    let body = frame.get(1 + TAG_LEN..)?;
    let request: Request = postcard::from_bytes(body).ok()?;
    let subject_ok = !request.reply_to.is_empty()
        && request.reply_to.len() < 256
        && !request.reply_to.contains(['*', '>', ' ']);
    subject_ok.then_some((request.reply_to, request.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Kind;

    fn request(build: BuildId) -> Request {
        Request {
            build,
            reply_to: "r".into(),
            id: 7,
            addr: TaskAddr {
                kind: Kind::Blocking,
                offset: 12,
            },
            input: vec![1, 2, 3],
            time_limit: Some(Duration::from_millis(1500)),
        }
    }

    #[test]
    fn a_sealed_request_opens_under_its_key_and_build_only() {
        let key = Key::from_hex(&"ab".repeat(32)).unwrap();
        let ours = BuildId([1; 16]);
        let frame = key.seal(kind::REQUEST, &request(ours));
        let open = open_request(&key, &frame, ours).unwrap();
        assert_eq!((open.id, open.input.as_slice()), (7, &[1u8, 2, 3][..]));
        assert_eq!(open.time_limit, Some(Duration::from_millis(1500)));

        let other_key = Key::from_hex(&"cd".repeat(32)).unwrap();
        assert!(matches!(
            open_request(&other_key, &frame, ours),
            Err(Refused::NotAuthenticated)
        ));
        assert!(matches!(
            open_request(&key, &frame, BuildId([2; 16])),
            Err(Refused::OtherBuild { id: 7, .. })
        ));
        let mut tampered = frame.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(
            open_request(&key, &tampered, ours),
            Err(Refused::NotAuthenticated)
        ));
        // A reply sealed with the key never passes for a request.
        let reply = key.seal(
            kind::REPLY,
            &Reply {
                id: 7,
                outcome: Ok(vec![]),
            },
        );
        assert!(open_request(&key, &reply, ours).is_err());
    }

    #[test]
    fn replies_round_trip_with_values_as_byte_strings() {
        let key = Key::from_hex(&"ab".repeat(32)).unwrap();
        for outcome in [Ok(vec![9u8; 300]), Err(TaskError::Cancelled)] {
            let frame = key.seal(
                kind::REPLY,
                &Reply {
                    id: 3,
                    outcome: outcome.clone(),
                },
            );
            let reply: Reply = key.open(kind::REPLY, &frame).unwrap();
            assert_eq!((reply.id, reply.outcome), (3, outcome));
        }
    }

    #[test]
    fn keys_are_64_hex_digits() {
        assert!(Key::from_hex("abc").is_err());
        let key = Key::random().unwrap();
        assert_eq!(Key::from_hex(&key.hex()).unwrap(), key);
    }
}
