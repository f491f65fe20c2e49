//! Topic permissions: per user, vhost and topic exchange, write and read expressions on
//! routing keys (RabbitMQ 3.10's `set_topic_permissions`). No entry for an exchange means
//! every key is allowed; an empty expression allows only the empty key. `{username}` and
//! `{vhost}` in an expression stand for the entry's own user and vhost (replaced, not
//! escaped, as in RabbitMQ), so each expression is compiled once, when it is set.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use regex::Regex;

use super::{records, AccessControl, AccessError, Perm};
use crate::error::{CoreError, CoreResult};

/// Topic permissions by vhost, then user; one entry per exchange.
pub(super) type TopicTable = HashMap<String, HashMap<String, Vec<Arc<TopicPermission>>>>;

/// Which name a listed topic permission carries.
#[derive(Clone, Copy)]
enum Named {
    ByVhost,
    ByUser,
}

/// One user's topic permissions on one exchange.
#[derive(Debug, Clone)]
pub struct TopicPermission {
    pub exchange: String,
    /// The expressions as given (with their variables), for listing and saving.
    pub write_source: String,
    pub read_source: String,
    write: Regex,
    read: Regex,
}

impl PartialEq for TopicPermission {
    fn eq(&self, other: &Self) -> bool {
        (&self.exchange, &self.write_source, &self.read_source)
            == (&other.exchange, &other.write_source, &other.read_source)
    }
}

fn compile(source: &str, user: &str, vhost: &str) -> Result<Regex, regex::Error> {
    if source.is_empty() {
        return Regex::new("^$");
    }
    Regex::new(&source.replace("{username}", user).replace("{vhost}", vhost))
}

impl TopicPermission {
    pub fn new(
        vhost: &str,
        user: &str,
        exchange: &str,
        write: &str,
        read: &str,
    ) -> Result<TopicPermission, regex::Error> {
        Ok(TopicPermission {
            exchange: exchange.to_string(),
            write_source: write.to_string(),
            read_source: read.to_string(),
            write: compile(write, user, vhost)?,
            read: compile(read, user, vhost)?,
        })
    }

    pub fn allows_write(&self, routing_key: &str) -> bool {
        self.write.is_match(routing_key)
    }

    pub fn allows_read(&self, routing_key: &str) -> bool {
        self.read.is_match(routing_key)
    }
}

impl AccessControl {
    pub fn set_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: &str,
        write: &str,
        read: &str,
    ) -> Result<(), AccessError> {
        let p = TopicPermission::new(vhost, user, exchange, write, read)
            .map_err(|e| AccessError::BadPattern(e.to_string()))?;
        if self.user(user).is_none() {
            return Err(AccessError::NoSuchUser(user.to_string()));
        }
        let mut topics = self.topic_permissions.write();
        self.save(vec![records::put_topic_permission(vhost, user, &p)])?;
        let list = topics
            .entry(vhost.to_string())
            .or_default()
            .entry(user.to_string())
            .or_default();
        list.retain(|t| t.exchange != exchange);
        list.push(Arc::new(p));
        self.any_topic_permissions.store(true, Ordering::Release);
        Ok(())
    }

    /// Clears the user's topic permissions in `vhost` on one exchange, or on all.
    pub fn clear_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: Option<&str>,
    ) -> Result<(), AccessError> {
        if self.user(user).is_none() {
            return Err(AccessError::NoSuchUser(user.to_string()));
        }
        let mut topics = self.topic_permissions.write();
        let Some(list) = topics
            .get_mut(vhost)
            .and_then(|by_user| by_user.get_mut(user))
        else {
            return Ok(());
        };
        let gone: Vec<String> = list
            .iter()
            .filter(|t| exchange.is_none_or(|x| x == t.exchange))
            .map(|t| t.exchange.clone())
            .collect();
        self.save(
            gone.iter()
                .map(|x| records::delete_topic_permission(vhost, user, x))
                .collect(),
        )?;
        list.retain(|t| !gone.contains(&t.exchange));
        Ok(())
    }

    /// Every (user, topic permission) in a vhost.
    pub fn vhost_topic_permissions(&self, vhost: &str) -> Vec<(String, Arc<TopicPermission>)> {
        self.topic_list(|v, _| v == vhost, Named::ByUser)
    }

    /// Every (vhost, topic permission) of a user.
    pub fn user_topic_permissions(&self, user: &str) -> Vec<(String, Arc<TopicPermission>)> {
        self.topic_list(|_, u| u == user, Named::ByVhost)
    }

    /// The topic permissions `pick(vhost, user)` selects, each with its vhost or user
    /// name, sorted by that name and the exchange.
    fn topic_list(
        &self,
        pick: impl Fn(&str, &str) -> bool,
        named: Named,
    ) -> Vec<(String, Arc<TopicPermission>)> {
        let topics = self.topic_permissions.read();
        let mut out = Vec::new();
        for (vhost, by_user) in topics.iter() {
            for (user, list) in by_user.iter().filter(|(u, _)| pick(vhost, u)) {
                let name = match named {
                    Named::ByVhost => vhost,
                    Named::ByUser => user,
                };
                out.extend(list.iter().map(|t| (name.clone(), Arc::clone(t))));
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1.exchange).cmp(&(&b.0, &b.1.exchange)));
        out
    }

    /// Whether any topic permission was ever set: when not, the publish path skips the
    /// topic check altogether.
    pub fn has_topic_permissions(&self) -> bool {
        self.any_topic_permissions.load(Ordering::Acquire)
    }

    /// Checks a routing key (publish: `Perm::Write`) or binding key (`Perm::Read`) on a
    /// topic exchange, with RabbitMQ's 403 text when refused.
    pub fn check_topic(
        &self,
        user: &str,
        vhost: &str,
        exchange: &str,
        routing_key: &str,
        perm: Perm,
    ) -> CoreResult<()> {
        if !self.has_topic_permissions() {
            return Ok(());
        }
        let allowed = {
            let topics = self.topic_permissions.read();
            match topics
                .get(vhost)
                .and_then(|by_user| by_user.get(user))
                .and_then(|list| list.iter().find(|t| t.exchange == exchange))
            {
                None => true,
                Some(t) => match perm {
                    Perm::Write => t.allows_write(routing_key),
                    _ => t.allows_read(routing_key),
                },
            }
        };
        if allowed {
            return Ok(());
        }
        Err(CoreError::access_refused(format!(
            "access to topic '{routing_key}' in exchange '{exchange}' in vhost '{vhost}' refused for user '{user}'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_the_entrys_user_and_vhost_and_empty_means_the_empty_key() {
        let p = TopicPermission::new("/", "alice", "amq.topic", "^{username}\\.", "").unwrap();
        assert!(p.allows_write("alice.orders"));
        assert!(!p.allows_write("bob.orders"));
        assert!(p.allows_read(""));
        assert!(!p.allows_read("x"));
        let v = TopicPermission::new("prod", "alice", "amq.topic", "^{vhost}-", ".*").unwrap();
        assert!(v.allows_write("prod-x"));
        assert!(v.allows_read("anything"));
        assert!(TopicPermission::new("/", "a", "x", "(", ".*").is_err());
    }
}
