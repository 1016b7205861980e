//! Plan texts, content-addressed by the sha256 of their exact bytes: storing the same text
//! twice is a no-op that returns the same hash, and a run can always name the exact text it
//! ran.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::codec::{decode_json, encode_json};
use super::{Sled, StoreError, PLANS};
use crate::api::PlanInfo;

/// One record of the `plans` tree.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PlanRecord {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) stored_at_ms: u64,
}

impl PlanRecord {
    /// The hash a plan text is stored under, and its record as stored (JSON).
    pub(crate) fn encode(
        path: &std::path::Path,
        name: &str,
        text: &str,
        now_ms: u64,
    ) -> Result<(String, Vec<u8>), StoreError> {
        let record = PlanRecord {
            name: name.to_owned(),
            text: text.to_owned(),
            stored_at_ms: now_ms,
        };
        Ok((
            plan_hash(text),
            encode_json(path, "a plan record", &record)?,
        ))
    }
}

/// Lower-case hex sha256 of `text`.
pub fn plan_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Sled {
    /// Store a plan's text, content-addressed (sha256 hex of the exact text), flushed.
    /// Idempotent: storing a text that is already there keeps the first record (its name and
    /// time) and returns the same hash.
    pub(super) fn put_plan(
        &self,
        name: &str,
        text: &str,
        now_ms: u64,
    ) -> Result<String, StoreError> {
        let (hash, bytes) = PlanRecord::encode(self.path(), name, text, now_ms)?;
        let swapped = self
            .inner
            .plans
            .compare_and_swap(hash.as_bytes(), None::<&[u8]>, Some(bytes))
            .map_err(|e| self.sled_error("storing a plan", e))?;
        if swapped.is_ok() {
            self.flush("flushing a stored plan")?;
        }
        Ok(hash)
    }

    /// The exact text of the plan stored under `hash`, if any.
    pub(super) fn plan_text(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let Some(bytes) = self
            .inner
            .plans
            .get(hash.as_bytes())
            .map_err(|e| self.sled_error("reading a plan", e))?
        else {
            return Ok(None);
        };
        let record: PlanRecord = decode_json(self.path(), PLANS, hash.as_bytes(), &bytes)?;
        Ok(Some(record.text))
    }

    /// Every stored plan, oldest first.
    pub(super) fn plans(&self) -> Result<Vec<PlanInfo>, StoreError> {
        let mut out = Vec::new();
        for entry in self.inner.plans.iter() {
            let (key, value) = entry.map_err(|e| self.sled_error("listing plans", e))?;
            let record: PlanRecord = decode_json(self.path(), PLANS, &key, &value)?;
            out.push(PlanInfo {
                hash: String::from_utf8_lossy(&key).into_owned(),
                name: record.name,
                stored_at_ms: record.stored_at_ms,
            });
        }
        out.sort_by(|a, b| (a.stored_at_ms, &a.hash).cmp(&(b.stored_at_ms, &b.hash)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex() {
        // sha256("abc") from FIPS 180-2, appendix B.1.
        assert_eq!(
            plan_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(plan_hash("abc"), plan_hash("abc\n"));
    }
}
