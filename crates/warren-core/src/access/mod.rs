//! Access control: users (RabbitMQ's password hashes and tags), the vhosts each may use and
//! what it may do there (configure / write / read expressions on queue and exchange names).
//! One registry for every front end and for `warren ctl` (the management API will call the
//! same operations). Every change is written to the definitions log before it is made.

pub mod password;
pub mod permissions;
mod records;
pub mod scram;
pub mod topics;
pub mod user_limits;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{CoreError, CoreResult};
use crate::persist::Persistence;
use password::{HashError, PasswordHash};
pub use permissions::{Perm, Permissions, ResourceKind};

/// A user as stored: no password hash means login by password is impossible (certificate
/// login only, RabbitMQ's `clear_password`).
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub name: String,
    pub hash: Option<PasswordHash>,
    pub tags: Vec<String>,
    pub limits: user_limits::UserLimits,
}

impl UserRecord {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AccessError {
    // rabbitmqctl's words.
    #[error("User \"{0}\" already exists")]
    UserExists(String),
    #[error("User \"{0}\" does not exist")]
    NoSuchUser(String),
    #[error("Virtual host {0} does not exist")]
    NoSuchVhost(String),
    #[error("invalid permission expression: {0}")]
    BadPattern(String),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("{}", .0.text)]
    NotDurable(CoreError),
}

/// Why a login failed: logged (never the password), while the client sees RabbitMQ's one
/// answer for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginFailure {
    #[error("user does not exist")]
    NoSuchUser,
    #[error("blank password (refused, as by RabbitMQ's internal backend)")]
    BlankPassword,
    #[error("user has no password")]
    NoPassword,
    #[error("wrong password")]
    WrongPassword,
    #[error("user may only connect via localhost")]
    LoopbackOnly,
}

pub struct AccessControl {
    users: RwLock<HashMap<String, Arc<UserRecord>>>,
    /// (vhost, user) to that user's permissions in the vhost.
    permissions: RwLock<HashMap<(String, String), Arc<Permissions>>>,
    /// vhost to user to that user's topic permissions there, one per exchange (nested, so
    /// the publish path looks them up by `&str` without building a key).
    topic_permissions: RwLock<topics::TopicTable>,
    any_topic_permissions: AtomicBool,
    /// Open connections and channels per user (for user limits).
    usage: parking_lot::Mutex<user_limits::UsageTable>,
    /// RabbitMQ's `loopback_users`: may log in only from a loopback address.
    loopback_users: RwLock<Vec<String>>,
    persistence: Option<Arc<Persistence>>,
}

impl AccessControl {
    /// The registry, with what the store saved (nothing without a store).
    pub(crate) fn load(persistence: Option<Arc<Persistence>>) -> AccessControl {
        let (users, permissions, topics) = match &persistence {
            Some(p) => records::load(p),
            None => Default::default(),
        };
        let any_topics = !topics.is_empty();
        let mut topic_permissions = topics::TopicTable::new();
        for (vhost, user, t) in topics {
            topic_permissions
                .entry(vhost)
                .or_default()
                .entry(user)
                .or_default()
                .push(Arc::new(t));
        }
        AccessControl {
            users: RwLock::new(
                users
                    .into_iter()
                    .map(|u| (u.name.clone(), Arc::new(u)))
                    .collect(),
            ),
            permissions: RwLock::new(
                permissions
                    .into_iter()
                    .map(|(vhost, user, p)| ((vhost, user), Arc::new(p)))
                    .collect(),
            ),
            topic_permissions: RwLock::new(topic_permissions),
            any_topic_permissions: AtomicBool::new(any_topics),
            usage: Default::default(),
            loopback_users: RwLock::new(vec!["guest".to_string()]),
            persistence,
        }
    }

    pub(super) fn save(
        &self,
        changes: Vec<crate::storage::DefinitionChange>,
    ) -> Result<(), AccessError> {
        match &self.persistence {
            Some(p) => p.apply(changes).map_err(AccessError::NotDurable),
            None => Ok(()),
        }
    }

    /// RabbitMQ's `loopback_users`: who may log in only from a loopback address.
    pub fn set_loopback_users(&self, users: Vec<String>) {
        *self.loopback_users.write() = users;
    }

    pub fn has_users(&self) -> bool {
        !self.users.read().is_empty()
    }

    /// RabbitMQ's first start: the default user (an administrator) with every permission
    /// on the default vhost, when no user exists yet.
    pub fn create_default_user(
        &self,
        name: &str,
        password: &str,
        vhost: &str,
    ) -> Result<(), AccessError> {
        let mut users = self.users.write();
        if !users.is_empty() {
            return Ok(());
        }
        let user = UserRecord {
            name: name.to_string(),
            hash: Some(PasswordHash::new(password)),
            tags: vec!["administrator".to_string()],
            limits: Default::default(),
        };
        let all = Permissions::all();
        // One batch: a crash cannot leave a default user without its permissions (which the
        // next start, seeing a user, would not repair).
        self.save(vec![
            records::put_user(&user),
            records::put_permissions(vhost, name, &all),
        ])?;
        users.insert(name.to_string(), Arc::new(user));
        self.permissions
            .write()
            .insert((vhost.to_string(), name.to_string()), Arc::new(all));
        Ok(())
    }

    pub fn add_user(&self, name: &str, password: Option<&str>) -> Result<(), AccessError> {
        let user = UserRecord {
            name: name.to_string(),
            hash: password.map(PasswordHash::new),
            tags: Vec::new(),
            limits: Default::default(),
        };
        let mut users = self.users.write();
        if users.contains_key(name) {
            return Err(AccessError::UserExists(name.to_string()));
        }
        self.save(vec![records::put_user(&user)])?;
        users.insert(name.to_string(), Arc::new(user));
        Ok(())
    }

    /// Creates or updates a user (the management API's `PUT /api/users/{name}`, definitions
    /// import): `hash` replaces the password when given (`Some(None)`: no password), `tags`
    /// replace the tags. Returns true when the user was created.
    pub fn put_user(
        &self,
        name: &str,
        hash: Option<Option<PasswordHash>>,
        tags: Vec<String>,
    ) -> Result<bool, AccessError> {
        let mut users = self.users.write();
        let (user, created) = match users.get(name) {
            Some(current) => {
                let mut u = UserRecord::clone(current);
                if let Some(h) = hash {
                    u.hash = h;
                }
                u.tags = tags;
                (u, false)
            }
            None => (
                UserRecord {
                    name: name.to_string(),
                    hash: hash.flatten(),
                    tags,
                    limits: Default::default(),
                },
                true,
            ),
        };
        self.save(vec![records::put_user(&user)])?;
        users.insert(name.to_string(), Arc::new(user));
        Ok(created)
    }

    /// Deletes a user and every permission it had.
    pub fn delete_user(&self, name: &str) -> Result<(), AccessError> {
        let mut users = self.users.write();
        if !users.contains_key(name) {
            return Err(AccessError::NoSuchUser(name.to_string()));
        }
        self.forget_permissions(|_, u| u == name, vec![records::delete_user(name)])?;
        users.remove(name);
        Ok(())
    }

    /// Removes, in one durable batch with `changes`, every permission and topic permission
    /// whose (vhost, user) `pick` selects.
    fn forget_permissions(
        &self,
        pick: impl Fn(&str, &str) -> bool,
        mut changes: Vec<crate::storage::DefinitionChange>,
    ) -> Result<(), AccessError> {
        let mut permissions = self.permissions.write();
        let mut topics = self.topic_permissions.write();
        let gone: Vec<(String, String)> = permissions
            .keys()
            .filter(|(v, u)| pick(v, u))
            .cloned()
            .collect();
        changes.extend(gone.iter().map(|(v, u)| records::delete_permissions(v, u)));
        for (vhost, by_user) in topics.iter() {
            for (user, list) in by_user.iter().filter(|(u, _)| pick(vhost, u)) {
                changes.extend(
                    list.iter()
                        .map(|t| records::delete_topic_permission(vhost, user, &t.exchange)),
                );
            }
        }
        self.save(changes)?;
        for k in gone {
            permissions.remove(&k);
        }
        for (vhost, by_user) in topics.iter_mut() {
            by_user.retain(|u, _| !pick(vhost, u));
        }
        topics.retain(|_, by_user| !by_user.is_empty());
        Ok(())
    }

    pub(super) fn update_user(
        &self,
        name: &str,
        change: impl FnOnce(&mut UserRecord),
    ) -> Result<(), AccessError> {
        let mut users = self.users.write();
        let current = users
            .get(name)
            .ok_or_else(|| AccessError::NoSuchUser(name.to_string()))?;
        let mut updated = UserRecord::clone(current);
        change(&mut updated);
        self.save(vec![records::put_user(&updated)])?;
        users.insert(name.to_string(), Arc::new(updated));
        Ok(())
    }

    pub fn change_password(&self, name: &str, password: &str) -> Result<(), AccessError> {
        let hash = PasswordHash::new(password);
        self.update_user(name, |u| u.hash = Some(hash))
    }

    /// Removes the password: the user can then log in only by certificate (EXTERNAL).
    pub fn clear_password(&self, name: &str) -> Result<(), AccessError> {
        self.update_user(name, |u| u.hash = None)
    }

    pub fn set_user_tags(&self, name: &str, tags: Vec<String>) -> Result<(), AccessError> {
        self.update_user(name, |u| u.tags = tags)
    }

    pub fn user(&self, name: &str) -> Option<Arc<UserRecord>> {
        self.users.read().get(name).cloned()
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<Arc<UserRecord>> {
        let mut all: Vec<_> = self.users.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Checks a user name and password; `from_loopback` says where the client connects from.
    /// Costs one hash of the password (the caller keeps it off the I/O threads).
    pub fn authenticate(
        &self,
        name: &str,
        password: &str,
        from_loopback: bool,
    ) -> Result<Arc<UserRecord>, LoginFailure> {
        if password.is_empty() {
            return Err(LoginFailure::BlankPassword);
        }
        let user = self.user(name).ok_or(LoginFailure::NoSuchUser)?;
        let hash = user.hash.as_ref().ok_or(LoginFailure::NoPassword)?;
        if !hash.verify(password) {
            return Err(LoginFailure::WrongPassword);
        }
        self.check_loopback(name, from_loopback)?;
        Ok(user)
    }

    fn check_loopback(&self, name: &str, from_loopback: bool) -> Result<(), LoginFailure> {
        if !from_loopback && self.loopback_users.read().iter().any(|u| u == name) {
            return Err(LoginFailure::LoopbackOnly);
        }
        Ok(())
    }

    /// SASL EXTERNAL: the user a verified client certificate names must exist (no password
    /// is checked, as RabbitMQ's EXTERNAL mechanism); `loopback_users` still applies.
    pub fn authenticate_external(
        &self,
        name: &str,
        from_loopback: bool,
    ) -> Result<Arc<UserRecord>, LoginFailure> {
        let user = self.user(name).ok_or(LoginFailure::NoSuchUser)?;
        self.check_loopback(name, from_loopback)?;
        Ok(user)
    }

    /// The SCRAM-SHA-256 keys of a user whose password was set here.
    pub fn scram_keys(&self, name: &str) -> Option<scram::ScramKeys> {
        self.user(name)?.hash.as_ref()?.scram().cloned()
    }

    /// Sets a user's permissions in a vhost (the caller checks that the vhost exists).
    pub fn set_permissions(
        &self,
        user: &str,
        vhost: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Result<(), AccessError> {
        let perms = Permissions::new(configure, write, read)
            .map_err(|e| AccessError::BadPattern(e.to_string()))?;
        let users = self.users.read();
        if !users.contains_key(user) {
            return Err(AccessError::NoSuchUser(user.to_string()));
        }
        let mut permissions = self.permissions.write();
        self.save(vec![records::put_permissions(vhost, user, &perms)])?;
        permissions.insert((vhost.to_string(), user.to_string()), Arc::new(perms));
        Ok(())
    }

    pub fn clear_permissions(&self, user: &str, vhost: &str) -> Result<(), AccessError> {
        if !self.users.read().contains_key(user) {
            return Err(AccessError::NoSuchUser(user.to_string()));
        }
        let mut permissions = self.permissions.write();
        let k = (vhost.to_string(), user.to_string());
        if permissions.contains_key(&k) {
            self.save(vec![records::delete_permissions(vhost, user)])?;
            permissions.remove(&k);
        }
        Ok(())
    }

    /// Forgets every permission and topic permission on a vhost that is being deleted.
    pub fn remove_vhost(&self, vhost: &str) -> Result<(), AccessError> {
        self.forget_permissions(|v, _| v == vhost, Vec::new())
    }

    pub fn permissions(&self, vhost: &str, user: &str) -> Option<Arc<Permissions>> {
        self.permissions
            .read()
            .get(&(vhost.to_string(), user.to_string()))
            .cloned()
    }

    /// (user, permissions) in a vhost, by user name.
    pub fn vhost_permissions(&self, vhost: &str) -> Vec<(String, Arc<Permissions>)> {
        let mut out: Vec<_> = self
            .permissions
            .read()
            .iter()
            .filter(|((v, _), _)| v == vhost)
            .map(|((_, u), p)| (u.clone(), Arc::clone(p)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// (vhost, permissions) of a user, by vhost name.
    pub fn user_permissions(&self, user: &str) -> Vec<(String, Arc<Permissions>)> {
        let mut out: Vec<_> = self
            .permissions
            .read()
            .iter()
            .filter(|((_, u), _)| u == user)
            .map(|((v, _), p)| (v.clone(), Arc::clone(p)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether `user` may do `perm` on the named resource in `vhost`, with RabbitMQ's 403
    /// text when not.
    pub fn check(
        &self,
        user: &str,
        vhost: &str,
        perm: Perm,
        kind: ResourceKind,
        name: &str,
    ) -> CoreResult<()> {
        let allowed = self
            .permissions(vhost, user)
            .is_some_and(|p| p.allows(perm, name));
        if allowed {
            return Ok(());
        }
        Err(CoreError::access_refused(format!(
            "access to {} '{name}' in vhost '{vhost}' refused for user '{user}'",
            kind.as_str()
        )))
    }
}

#[cfg(test)]
mod tests;
