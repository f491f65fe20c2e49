//! Permission checks on a channel, with RabbitMQ's per-channel cache: the last 12 allowed
//! (permission, resource) pairs are not checked again, so a publish to the same exchange
//! costs one string comparison instead of a registry lookup and a regex match. Topic
//! permissions (on routing and binding keys of topic exchanges) are checked only once any
//! exists in the broker.

use warren_core::access::{Perm, ResourceKind};

use super::*;

/// RabbitMQ's `MAX_PERMISSION_CACHE_SIZE`.
const PERMISSION_CACHE_SIZE: usize = 12;

/// One allowed check.
pub(super) struct Allowed {
    perm: Perm,
    kind: ResourceKind,
    name: String,
}

/// The name permissions see for an exchange: RabbitMQ checks the default exchange as
/// `amq.default`.
pub(super) fn exchange_resource(name: &str) -> &str {
    if name.is_empty() {
        "amq.default"
    } else {
        name
    }
}

impl Channel {
    pub(super) fn check_permission(
        &mut self,
        ctx: &ConnCtx,
        perm: Perm,
        kind: ResourceKind,
        name: &str,
    ) -> AmqpResult<()> {
        let cached = self
            .permission_cache
            .iter()
            .any(|a| a.perm == perm && a.kind == kind && a.name == name);
        if cached {
            return Ok(());
        }
        ctx.broker
            .access()
            .check(&ctx.user, &ctx.vhost.name, perm, kind, name)?;
        // Newest first; the oldest falls out (RabbitMQ does not reorder on a hit either).
        self.permission_cache.truncate(PERMISSION_CACHE_SIZE - 1);
        self.permission_cache.insert(
            0,
            Allowed {
                perm,
                kind,
                name: name.to_string(),
            },
        );
        Ok(())
    }

    pub(super) fn check_queue(&mut self, ctx: &ConnCtx, perm: Perm, name: &str) -> AmqpResult<()> {
        self.check_permission(ctx, perm, ResourceKind::Queue, name)
    }

    pub(super) fn check_exchange(
        &mut self,
        ctx: &ConnCtx,
        perm: Perm,
        name: &str,
    ) -> AmqpResult<()> {
        self.check_permission(ctx, perm, ResourceKind::Exchange, exchange_resource(name))
    }

    /// What declaring a queue or exchange with these arguments needs besides configure on
    /// itself, as RabbitMQ 3.10 checks it: a dead-letter exchange needs read on the queue
    /// and write on that exchange; an alternate exchange read on the exchange declared and
    /// write on the alternate.
    pub(super) fn check_declare_arguments(
        &mut self,
        ctx: &ConnCtx,
        kind: ResourceKind,
        name: &str,
        arguments: &FieldTable,
    ) -> AmqpResult<()> {
        let argument = match kind {
            ResourceKind::Queue => "x-dead-letter-exchange",
            ResourceKind::Exchange => "alternate-exchange",
        };
        let Some(target) = arguments.get(argument).and_then(|v| v.as_str()) else {
            return Ok(());
        };
        let target = target.to_string();
        self.check_permission(ctx, Perm::Read, kind, name)?;
        self.check_exchange(ctx, Perm::Write, &target)
    }
}

impl Channel {
    /// A routing key (publish, `Perm::Write`) or binding key (`Perm::Read`) on `exchange`,
    /// when it is a topic exchange, against the user's topic permissions.
    pub(super) fn check_topic(
        &mut self,
        ctx: &ConnCtx,
        perm: Perm,
        exchange: &str,
        key: &str,
    ) -> AmqpResult<()> {
        let access = ctx.broker.access();
        if !access.has_topic_permissions() {
            return Ok(());
        }
        // An entry here was allowed on a topic exchange: no need to look the exchange up.
        let cached = self
            .topic_cache
            .iter()
            .any(|(p, x, k)| *p == perm && x == exchange && k == key);
        if cached || ctx.vhost.exchange_kind(exchange) != Some(ExchangeKind::Topic) {
            return Ok(());
        }
        access.check_topic(&ctx.user, &ctx.vhost.name, exchange, key, perm)?;
        // RabbitMQ keeps a separate cache of 12 topic checks.
        self.topic_cache.truncate(PERMISSION_CACHE_SIZE - 1);
        self.topic_cache
            .insert(0, (perm, exchange.to_string(), key.to_string()));
        Ok(())
    }
}
