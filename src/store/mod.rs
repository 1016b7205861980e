//! Placeholder; the real store lands from the `store` branch.
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("store")]
pub struct StoreError;

pub struct Store;

impl Store {
    pub fn open(_dir: &Path) -> Result<Store, StoreError> {
        Ok(Store)
    }
    pub fn events_since(
        &self,
        _after_id: u64,
        _limit: usize,
    ) -> Result<Vec<crate::api::Event>, StoreError> {
        Ok(Vec::new())
    }
    pub fn plans(&self) -> Result<Vec<crate::api::PlanInfo>, StoreError> {
        Ok(Vec::new())
    }
    pub fn dir(&self) -> &Path {
        Path::new(".")
    }
}
