//! Services that the components of one runtime share, found by their type.
//!
//! A plugin crate defines a service type (the `http` source's listener hub, the `channel`
//! source's named channels) and reaches the runtime's one instance of it through
//! [`ComponentContext::services`](crate::plugin::ComponentContext::services). Core knows none of them:
//! it only keeps one value per type, made on first use.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One value per type, shared by every clone.
#[derive(Clone, Default)]
pub struct Services {
    values: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("count", &self.lock().len())
            .finish()
    }
}

impl Services {
    /// The `T` of this runtime, made by `make` if there is none yet. `make` may itself look up
    /// other services (no lock is held while it runs); if two callers race, the first value
    /// stored wins and both get it.
    pub fn get_or_insert_with<T: Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Arc<T> {
        if let Some(value) = self.get::<T>() {
            return value;
        }
        let made: Arc<dyn Any + Send + Sync> = Arc::new(make());
        let stored = Arc::clone(self.lock().entry(TypeId::of::<T>()).or_insert(made));
        stored
            .downcast()
            .unwrap_or_else(|_| unreachable!("values are stored under their own TypeId"))
    }

    /// The `T` of this runtime, if one was made.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let value = Arc::clone(self.lock().get(&TypeId::of::<T>())?);
        Some(
            value
                .downcast()
                .unwrap_or_else(|_| unreachable!("values are stored under their own TypeId")),
        )
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TypeId, Arc<dyn Any + Send + Sync>>> {
        self.values
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Counter(u32);

    #[test]
    fn one_value_per_type_shared_by_clones() {
        let services = Services::default();
        assert!(services.get::<Counter>().is_none());
        let first = services.get_or_insert_with(|| Counter(1));
        let again = services.clone().get_or_insert_with(|| Counter(2));
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(*services.get::<Counter>().unwrap(), Counter(1));
    }

    #[test]
    fn a_service_can_be_made_from_another() {
        let services = Services::default();
        services.get_or_insert_with(|| Counter(7));
        let derived = services.get_or_insert_with(|| {
            let counter = services.get::<Counter>().unwrap();
            format!("made from {}", counter.0)
        });
        assert_eq!(*derived, "made from 7");
    }
}
