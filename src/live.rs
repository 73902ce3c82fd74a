//! A value the running service reads and a reload swaps: routes, channels,
//! credentials. Readers take an `Arc` and finish with the value they got.

use std::sync::{Arc, RwLock};

/// A value the running service reads and a reload replaces.
pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    /// Holding `value`.
    pub fn new(value: T) -> Self {
        Self(RwLock::new(Arc::new(value)))
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces it; readers holding the old one finish with it.
    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}
