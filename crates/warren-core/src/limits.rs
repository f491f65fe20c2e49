//! Per-vhost limits, as RabbitMQ's `set_vhost_limits` sets them: `max-connections` (checked
//! at `connection.open`) and `max-queues` (checked when a queue would be created). A
//! negative value removes the limit, as in RabbitMQ; 0 allows none.

use warren_amqp::{FieldTable, FieldValue};

/// The limits of one vhost (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VHostLimits {
    pub max_connections: Option<u64>,
    pub max_queues: Option<u64>,
}

impl VHostLimits {
    /// Reads a definition such as `{"max-connections": 10, "max-queues": -1}`. Keys not
    /// named here are refused (RabbitMQ validates them too), so a limit is never accepted
    /// and ignored.
    pub fn from_definition(definition: &FieldTable) -> Result<VHostLimits, String> {
        let [max_connections, max_queues] =
            read_limits(definition, ["max-connections", "max-queues"])?;
        Ok(VHostLimits {
            max_connections,
            max_queues,
        })
    }

    /// The definition these limits come from (only the limits that are set).
    pub fn to_definition(&self) -> FieldTable {
        write_limits(&[
            ("max-connections", self.max_connections),
            ("max-queues", self.max_queues),
        ])
    }

    pub fn is_empty(&self) -> bool {
        *self == VHostLimits::default()
    }
}

/// Reads a limits definition (RabbitMQ's JSON object of integers) whose keys are `names`:
/// one value per name, `None` when absent or negative (no limit). Any other key is refused
/// with RabbitMQ's words.
pub(crate) fn read_limits<const N: usize>(
    definition: &FieldTable,
    names: [&str; N],
) -> Result<[Option<u64>; N], String> {
    let mut values = [None; N];
    for (key, value) in definition.iter() {
        let Some(i) = names.iter().position(|n| n == key) else {
            return Err(format!("unrecognised terms [{key}] in limits"));
        };
        let n = value
            .as_i64()
            .ok_or_else(|| format!("{key}: expected an integer"))?;
        values[i] = u64::try_from(n).ok();
    }
    Ok(values)
}

/// The definition of the limits that are set.
pub(crate) fn write_limits(limits: &[(&str, Option<u64>)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (name, value) in limits {
        if let Some(n) = value {
            t.insert(
                *name,
                FieldValue::I64(i64::try_from(*n).unwrap_or(i64::MAX)),
            );
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_round_trip_and_negative_means_none() {
        let mut d = FieldTable::default();
        d.insert("max-connections", FieldValue::I64(2));
        d.insert("max-queues", FieldValue::I64(-1));
        let l = VHostLimits::from_definition(&d).unwrap();
        assert_eq!(l.max_connections, Some(2));
        assert_eq!(l.max_queues, None);
        assert_eq!(VHostLimits::from_definition(&l.to_definition()).unwrap(), l);
        let mut bad = FieldTable::default();
        bad.insert("max-consumers", FieldValue::I64(1));
        assert!(VHostLimits::from_definition(&bad).is_err());
    }
}
