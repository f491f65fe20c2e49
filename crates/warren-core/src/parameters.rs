//! Global runtime parameters (RabbitMQ's `set_global_parameter`): named JSON values the
//! broker stores for tools, `cluster_name` among them. The core keeps each value as the JSON
//! text it was given (it interprets none but the cluster name), in the definitions log
//! under kind `G`.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::CoreResult;
use crate::persist::{encoded, key, s, table, Persistence, KEY_GLOBAL_PARAMETER};

pub struct GlobalParameters {
    values: RwLock<BTreeMap<String, String>>,
    persistence: Option<Arc<Persistence>>,
}

impl GlobalParameters {
    pub(crate) fn load(persistence: Option<Arc<Persistence>>) -> GlobalParameters {
        let mut values = BTreeMap::new();
        if let Some(p) = &persistence {
            for (parts, value) in p.records(KEY_GLOBAL_PARAMETER) {
                if let (Some(name), Some(json)) =
                    (parts.first(), value.get("json").and_then(|v| v.as_str()))
                {
                    values.insert(name.clone(), json.to_string());
                }
            }
        }
        GlobalParameters {
            values: RwLock::new(values),
            persistence,
        }
    }

    /// Sets `name` to the JSON text `json` (durably first).
    pub fn set(&self, name: &str, json: &str) -> CoreResult<()> {
        let record = table(vec![("json", s(json))]);
        self.save(name, Some(encoded(record)))?;
        self.values
            .write()
            .insert(name.to_string(), json.to_string());
        Ok(())
    }

    /// Removes `name`; false if it was not set.
    pub fn clear(&self, name: &str) -> CoreResult<bool> {
        if !self.values.read().contains_key(name) {
            return Ok(false);
        }
        self.save(name, None)?;
        self.values.write().remove(name);
        Ok(true)
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.values.read().get(name).cloned()
    }

    /// Every parameter as (name, JSON text), by name.
    pub fn list(&self) -> Vec<(String, String)> {
        self.values
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn save(&self, name: &str, value: Option<Vec<u8>>) -> CoreResult<()> {
        match &self.persistence {
            Some(p) => p.apply(vec![(key(KEY_GLOBAL_PARAMETER, &[name.as_bytes()]), value)]),
            None => Ok(()),
        }
    }
}
