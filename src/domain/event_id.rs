//! Public ids of audit events. Events are numbered by one sequence across every workspace,
//! so a plain number would let a tenant read everyone's activity off two of its own ids.
//! The public id is that number encrypted: one AES-128 block (the id, then eight zero
//! bytes) under a key generated once per deployment (`app_secrets`), base64url, behind
//! `evt_`. Only this server can turn it back, and the zero half makes a forged or foreign
//! id fail to decode rather than name another event. Ids order nothing; the API's cursor
//! is the same value.

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

const PREFIX: &str = "evt_";

/// Encodes and decodes audit event ids with this deployment's key.
#[derive(Clone)]
pub struct EventIds(Aes128);

impl EventIds {
    pub fn new(key: [u8; 16]) -> Self {
        EventIds(Aes128::new(&GenericArray::from(key)))
    }

    /// `evt_` and 22 base64url characters.
    pub fn public(&self, id: i64) -> String {
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&id.to_be_bytes());
        let mut block = GenericArray::from(block);
        self.0.encrypt_block(&mut block);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(block))
    }

    /// The event number behind a public id this server made; `None` for anything else.
    pub fn parse(&self, public: &str) -> Option<i64> {
        // Every id is 26 characters: anything else is refused before any decoding.
        if public.len() != PREFIX.len() + 22 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(public.strip_prefix(PREFIX)?).ok()?;
        let mut block = GenericArray::from(<[u8; 16]>::try_from(raw.as_slice()).ok()?);
        self.0.decrypt_block(&mut block);
        let (id, zeros) = block.split_at(8);
        if zeros.iter().any(|b| *b != 0) {
            return None;
        }
        let id = i64::from_be_bytes(id.try_into().ok()?);
        (id > 0).then_some(id)
    }
}

impl std::fmt::Debug for EventIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventIds(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_show_no_order_or_distance() {
        let ids = EventIds::new([7; 16]);
        let a = ids.public(1000);
        let b = ids.public(1001);
        assert!(a.starts_with("evt_") && a.len() == 26, "{a}");
        assert_eq!(ids.parse(&a), Some(1000));
        assert_eq!(ids.parse(&b), Some(1001));
        let differing = a.bytes().zip(b.bytes()).filter(|(x, y)| x != y).count();
        assert!(differing > 10, "neighbours look unrelated: {a} {b}");
    }

    #[test]
    fn foreign_or_forged_ids_do_not_decode() {
        let ids = EventIds::new([7; 16]);
        let other = EventIds::new([8; 16]);
        assert_eq!(ids.parse(&other.public(1000)), None, "another deployment's");
        let mut forged = ids.public(1000).into_bytes();
        forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(ids.parse(std::str::from_utf8(&forged).unwrap()), None);
        for junk in [
            "",
            "evt_",
            "1000",
            "evt_1000",
            "evt_!!!!",
            &"evt_".repeat(40),
        ] {
            assert_eq!(ids.parse(junk), None, "{junk:?}");
        }
        assert_eq!(ids.parse(&ids.public(0)), None, "ids start at 1");
    }
}
