//! Per-user limits, as RabbitMQ's `set_user_limits` sets them: `max-connections` (checked
//! at `connection.open`) and `max-channels` (checked when a channel opens), counted over
//! all of the user's connections. A negative value removes the limit; 0 allows none.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use warren_amqp::FieldTable;

use super::{AccessControl, AccessError};
use crate::error::{CoreError, ErrorKind};
use crate::limits::{read_limits, write_limits};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserLimits {
    pub max_connections: Option<u64>,
    pub max_channels: Option<u64>,
}

impl UserLimits {
    /// Reads `{"max-connections": N, "max-channels": N}`; other keys are refused.
    pub fn from_definition(definition: &FieldTable) -> Result<UserLimits, String> {
        let [max_connections, max_channels] =
            read_limits(definition, ["max-connections", "max-channels"])?;
        Ok(UserLimits {
            max_connections,
            max_channels,
        })
    }

    pub fn to_definition(&self) -> FieldTable {
        write_limits(&[
            ("max-connections", self.max_connections),
            ("max-channels", self.max_channels),
        ])
    }
}

/// What one user has open, over all its connections.
#[derive(Default)]
pub(super) struct Usage {
    connections: AtomicU64,
    channels: AtomicU64,
}

pub(super) type UsageTable = HashMap<String, Arc<Usage>>;

/// A connection's place in its user's counts; its channels are given back with it.
pub struct UserSlot {
    user: String,
    usage: Arc<Usage>,
    channels: u64,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        self.usage.connections.fetch_sub(1, Ordering::AcqRel);
        self.usage
            .channels
            .fetch_sub(self.channels, Ordering::AcqRel);
    }
}

impl AccessControl {
    pub fn set_user_limits(&self, user: &str, limits: UserLimits) -> Result<(), AccessError> {
        self.update_user(user, |u| u.limits = limits)
    }

    /// Counts a new connection of `user`, unless its `max-connections` is reached (530 with
    /// RabbitMQ's text, at `connection.open`).
    pub fn open_user_connection(&self, user: &str) -> Result<UserSlot, CoreError> {
        let max = self.user(user).and_then(|u| u.limits.max_connections);
        let usage = Arc::clone(self.usage.lock().entry(user.to_string()).or_default());
        let previous = usage.connections.fetch_add(1, Ordering::AcqRel);
        let slot = UserSlot {
            user: user.to_string(),
            usage,
            channels: 0,
        };
        if max.is_some_and(|max| previous >= max) {
            drop(slot);
            return Err(CoreError::new(
                ErrorKind::NotAllowed,
                format!(
                    "connection refused for user '{user}': user connection limit ({}) is reached",
                    max.unwrap_or_default()
                ),
            ));
        }
        Ok(slot)
    }

    /// Counts a new channel of the slot's user, unless its `max-channels` is reached (530, a
    /// connection error in RabbitMQ).
    pub fn open_user_channel(&self, slot: &mut UserSlot) -> Result<(), CoreError> {
        let max = self.user(&slot.user).and_then(|u| u.limits.max_channels);
        let previous = slot.usage.channels.fetch_add(1, Ordering::AcqRel);
        if let Some(max) = max.filter(|&max| previous >= max) {
            slot.usage.channels.fetch_sub(1, Ordering::AcqRel);
            return Err(CoreError::new(
                ErrorKind::NotAllowed,
                format!(
                    "number of channels opened for user '{}' has reached the maximum allowed user limit of ({max})",
                    slot.user
                ),
            ));
        }
        slot.channels += 1;
        Ok(())
    }

    pub fn close_user_channel(&self, slot: &mut UserSlot) {
        if slot.channels > 0 {
            slot.channels -= 1;
            slot.usage.channels.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
