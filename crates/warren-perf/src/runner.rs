//! Orchestration of a run: declare the topology, open the connections and
//! channels, start consumers then producers, print a progress line each
//! second, decide when to stop, close everything and build the [`Summary`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::debug;
use warren_amqp::{
    encode_method_frame, BasicConsume, BasicQos, ConfirmSelect, ExchangeDeclare, FieldTable,
    FieldValue, Method, QueueBind, QueueDeclare, QueueDelete, QueuePurge,
};

use crate::args::{AckMode, ExchangeType, PerfArgs, Plan};
use crate::conn::{ConfirmTracker, Live, Role, Run};
use crate::cpu::process_cpu;
use crate::error::PerfError;
use crate::producer::{run_producer, ProducerCfg};
use crate::proto::{unexpected, SetupConn};
use crate::stats::Stats;
use crate::summary::{Config, ConnectionsSummary, Summary};

/// How long consumers may see nothing before a drain (or the tail of a
/// counted run) is considered finished.
const IDLE_LIMIT: Duration = Duration::from_secs(2);

fn config(args: &PerfArgs, plan: &Plan) -> Config {
    let (p, c) = args.effective_counts();
    Config {
        producers: if args.connections_only.is_some() {
            0
        } else {
            p
        },
        consumers: if args.connections_only.is_some() {
            0
        } else {
            c
        },
        queues: plan.queues.len() as u32,
        size: args.size,
        confirm: args.confirm,
        ack: args.ack,
        multiple_ack_every: args.multiple_ack_every,
        prefetch: args.prefetch,
        persistent: args.persistent,
        durable: args.durable,
        rate: args.rate,
        shared_connection: args.shared_connection,
        exchange: plan.exchange.clone(),
        exchange_type: plan.exchange_type,
        bindings: plan.bindings.len(),
        mqtt_qos: None,
    }
}

/// Declare exchange, queues and bindings (unless `--predeclared`); returns
/// the number of messages the queues held (from `queue.declare-ok`).
async fn declare(setup: &mut SetupConn, args: &PerfArgs, plan: &Plan) -> Result<u64, PerfError> {
    let passive = args.predeclared;
    if !plan.exchange.is_empty() && !passive {
        match setup
            .rpc(
                1,
                Method::ExchangeDeclare(ExchangeDeclare {
                    exchange: plan.exchange.clone(),
                    kind: plan.exchange_type.as_str().into(),
                    durable: args.durable,
                    ..ExchangeDeclare::default()
                }),
            )
            .await?
        {
            Method::ExchangeDeclareOk(_) => {}
            m => return Err(unexpected("exchange.declare-ok", &m)),
        }
    }
    let mut backlog = 0u64;
    for q in &plan.queues {
        match setup
            .rpc(
                1,
                Method::QueueDeclare(QueueDeclare {
                    queue: q.clone(),
                    passive,
                    durable: args.durable,
                    ..QueueDeclare::default()
                }),
            )
            .await?
        {
            Method::QueueDeclareOk(ok) => backlog += u64::from(ok.message_count),
            m => return Err(unexpected("queue.declare-ok", &m)),
        }
    }
    if !passive {
        for b in &plan.bindings {
            let (routing_key, arguments) = if plan.exchange_type == ExchangeType::Headers {
                let mut t = FieldTable::new();
                t.insert(
                    "x-match",
                    FieldValue::LongString(Bytes::from_static(b"all")),
                );
                t.insert(
                    "key",
                    FieldValue::LongString(Bytes::copy_from_slice(b.key.as_bytes())),
                );
                (String::new(), t)
            } else {
                (b.key.clone(), FieldTable::new())
            };
            match setup
                .rpc(
                    1,
                    Method::QueueBind(QueueBind {
                        queue: plan.queues[b.queue].clone(),
                        exchange: plan.exchange.clone(),
                        routing_key,
                        arguments,
                        ..QueueBind::default()
                    }),
                )
                .await?
            {
                Method::QueueBindOk(_) => {}
                m => return Err(unexpected("queue.bind-ok", &m)),
            }
        }
    }
    Ok(backlog)
}

async fn cleanup(setup: &mut SetupConn, args: &PerfArgs, plan: &Plan) -> Result<(), PerfError> {
    for q in &plan.queues {
        if args.delete_queues {
            match setup
                .rpc(
                    1,
                    Method::QueueDelete(QueueDelete {
                        queue: q.clone(),
                        ..QueueDelete::default()
                    }),
                )
                .await?
            {
                Method::QueueDeleteOk(_) => {}
                m => return Err(unexpected("queue.delete-ok", &m)),
            }
        } else if args.purge {
            match setup
                .rpc(
                    1,
                    Method::QueuePurge(QueuePurge {
                        queue: q.clone(),
                        ..QueuePurge::default()
                    }),
                )
                .await?
            {
                Method::QueuePurgeOk(_) => {}
                m => return Err(unexpected("queue.purge-ok", &m)),
            }
        }
    }
    Ok(())
}

async fn prepare_consumer(
    conn: &mut SetupConn,
    ch: u16,
    args: &PerfArgs,
) -> Result<Role, PerfError> {
    conn.open_channel(ch).await?;
    if args.prefetch > 0 {
        match conn
            .rpc(
                ch,
                Method::BasicQos(BasicQos {
                    prefetch_size: 0,
                    prefetch_count: args.prefetch,
                    global: false,
                }),
            )
            .await?
        {
            Method::BasicQosOk(_) => {}
            m => return Err(unexpected("basic.qos-ok", &m)),
        }
    }
    Ok(Role::Consumer {
        manual: args.ack == AckMode::Manual,
        ack_every: u64::from(args.multiple_ack_every),
    })
}

async fn prepare_producer(
    conn: &mut SetupConn,
    ch: u16,
    args: &PerfArgs,
) -> Result<(Role, Option<Arc<Semaphore>>), PerfError> {
    conn.open_channel(ch).await?;
    if args.confirm == 0 {
        return Ok((Role::Producer(None), None));
    }
    match conn
        .rpc(ch, Method::ConfirmSelect(ConfirmSelect { no_wait: false }))
        .await?
    {
        Method::ConfirmSelectOk(_) => {}
        m => return Err(unexpected("confirm.select-ok", &m)),
    }
    let sem = Arc::new(Semaphore::new(args.confirm as usize));
    Ok((
        Role::Producer(Some(ConfirmTracker::new(args.confirm, sem.clone()))),
        Some(sem),
    ))
}

fn consume_frames(
    ch: u16,
    consumer: usize,
    queues: &[usize],
    plan: &Plan,
    args: &PerfArgs,
) -> Vec<Bytes> {
    queues
        .iter()
        .map(|&q| {
            let mut out = BytesMut::with_capacity(128);
            encode_method_frame(
                &mut out,
                ch,
                &Method::BasicConsume(BasicConsume {
                    queue: plan.queues[q].clone(),
                    consumer_tag: format!("perf-c{}-q{}", consumer + 1, q + 1),
                    no_ack: args.ack == AckMode::Auto,
                    ..BasicConsume::default()
                }),
            );
            out.freeze()
        })
        .collect()
}

/// A producer waiting to start: its connection index, channel, permits.
struct ProducerSlot {
    live: usize,
    channel: u16,
    index: usize,
    permits: Option<Arc<Semaphore>>,
}

/// Open the connections and channels. Returns the live connections, the
/// producers to start and the `basic.consume` frames to send per connection.
type Opened = (Vec<Live>, Vec<ProducerSlot>, Vec<(usize, Vec<Bytes>)>);

async fn open_all(args: &PerfArgs, plan: &Plan, run: &Arc<Run>) -> Result<Opened, PerfError> {
    let mut lives = Vec::new();
    match open_into(args, plan, run, &mut lives).await {
        Ok((producers, consumes)) => Ok((lives, producers, consumes)),
        Err(e) => {
            // close what was opened before the failure
            run.stopping.store(true, Relaxed);
            close_all(lives).await;
            Err(e)
        }
    }
}

#[allow(clippy::type_complexity)]
async fn open_into(
    args: &PerfArgs,
    plan: &Plan,
    run: &Arc<Run>,
    lives: &mut Vec<Live>,
) -> Result<(Vec<ProducerSlot>, Vec<(usize, Vec<Bytes>)>), PerfError> {
    let np = plan.producer_keys.len();
    let nc = plan.consumer_queues.len();
    let mut producers = Vec::new();
    let mut consumes = Vec::new();
    if args.shared_connection {
        let mut conn = SetupConn::open(&plan.uri, "warren-perf shared").await?;
        let mut roles = Vec::new();
        let mut frames = Vec::new();
        for c in 0..nc {
            let ch = (c + 1) as u16;
            roles.push((ch, prepare_consumer(&mut conn, ch, args).await?));
            frames.extend(consume_frames(ch, c, &plan.consumer_queues[c], plan, args));
        }
        for p in 0..np {
            let ch = (nc + p + 1) as u16;
            let (role, permits) = prepare_producer(&mut conn, ch, args).await?;
            roles.push((ch, role));
            producers.push(ProducerSlot {
                live: 0,
                channel: ch,
                index: p,
                permits,
            });
        }
        lives.push(Live::start(conn, roles, run.clone()));
        consumes.push((0, frames));
    } else {
        for c in 0..nc {
            let mut conn =
                SetupConn::open(&plan.uri, &format!("warren-perf consumer {}", c + 1)).await?;
            let role = prepare_consumer(&mut conn, 1, args).await?;
            consumes.push((
                lives.len(),
                consume_frames(1, c, &plan.consumer_queues[c], plan, args),
            ));
            lives.push(Live::start(conn, vec![(1, role)], run.clone()));
        }
        for p in 0..np {
            let mut conn =
                SetupConn::open(&plan.uri, &format!("warren-perf producer {}", p + 1)).await?;
            let (role, permits) = prepare_producer(&mut conn, 1, args).await?;
            producers.push(ProducerSlot {
                live: lives.len(),
                channel: 1,
                index: p,
                permits,
            });
            lives.push(Live::start(conn, vec![(1, role)], run.clone()));
        }
    }
    Ok((producers, consumes))
}

async fn close_all(lives: Vec<Live>) {
    let mut set = JoinSet::new();
    for l in lives {
        set.spawn(l.close());
    }
    while set.join_next().await.is_some() {}
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

async fn reporter(
    run: Arc<Run>,
    start: tokio::time::Instant,
    quiet: bool,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let s = &run.stats;
    let mut last = (0u64, 0u64, 0u64);
    let mut last_t = start;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = tokio::time::Instant::now();
        let cur = (
            Stats::get(&s.published),
            Stats::get(&s.confirmed),
            Stats::get(&s.consumed),
        );
        let dt = (now - last_t).as_secs_f64();
        let lat = s.roll_interval();
        if !quiet {
            let lat = lat
                .map(|l| format!("latency p50 {:.3} ms p99 {:.3} ms", l.p50, l.p99))
                .unwrap_or_else(|| "latency -".into());
            eprintln!(
                "[{:>4.0} s] published {:>9.0}/s  confirmed {:>9.0}/s  consumed {:>9.0}/s  {lat}",
                (now - start).as_secs_f64(),
                rate(cur.0 - last.0, dt),
                rate(cur.1 - last.1, dt),
                rate(cur.2 - last.2, dt),
            );
        }
        last = cur;
        last_t = now;
    }
}

/// Run the test described by `args`.
pub async fn run(args: PerfArgs) -> Result<Summary, PerfError> {
    if args.uri.starts_with("mqtt://") {
        return crate::mqtt::run(args).await;
    }
    let plan = args.plan()?;
    if let Some(n) = args.connections_only {
        return connections_only(&args, &plan, n).await;
    }
    let (np, nc) = args.effective_counts();
    let consume_only = np == 0;
    let run = Arc::new(Run::new(!consume_only));

    let mut setup = SetupConn::open(&plan.uri, "warren-perf setup").await?;
    setup.open_channel(1).await?;
    let backlog = declare(&mut setup, &args, &plan).await?;
    debug!(backlog, "topology ready");

    let (lives, slots, consumes) = open_all(&args, &plan, &run).await?;
    let result = drive(&args, &plan, &run, &lives, slots, consumes, backlog, np, nc).await;
    run.stopping.store(true, Relaxed);
    close_all(lives).await;
    let summary = result?;
    if let Some(e) = run.take_error() {
        return Err(e);
    }
    if args.purge || args.delete_queues {
        cleanup(&mut setup, &args, &plan).await?;
    }
    let _ = setup.close().await;
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    args: &PerfArgs,
    plan: &Plan,
    run: &Arc<Run>,
    lives: &[Live],
    slots: Vec<ProducerSlot>,
    consumes: Vec<(usize, Vec<Bytes>)>,
    backlog: u64,
    np: u32,
    nc: u32,
) -> Result<Summary, PerfError> {
    // consumers first, and wait until they are all registered
    let mut expected_ok = 0u64;
    for (li, frames) in consumes {
        for f in frames {
            expected_ok += 1;
            lives[li].send_ctrl(f);
        }
    }
    let ready_by = Instant::now() + Duration::from_secs(30);
    while run.consume_ok.load(Relaxed) < expected_ok {
        if let Some(e) = run.take_error() {
            return Err(e);
        }
        if Instant::now() > ready_by {
            return Err(PerfError::Timeout("basic.consume-ok"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let s = &run.stats;
    let t0 = tokio::time::Instant::now();
    let t0_ns = s.now_ns();
    let cpu0 = process_cpu();
    let deadline = t0 + plan.duration;
    let (stop_tx, stop_rx) = watch::channel(false);
    let rep = tokio::spawn(reporter(run.clone(), t0, args.quiet, stop_rx.clone()));

    let mut producers = JoinSet::new();
    for slot in slots {
        let live = &lives[slot.live];
        let cfg = ProducerCfg {
            channel: slot.channel,
            exchange: plan.exchange.clone(),
            keys: plan.producer_keys[slot.index].clone(),
            key_header: !plan.exchange.is_empty() && plan.exchange_type == ExchangeType::Headers,
            persistent: args.persistent,
            size: plan.size,
            frame_max: live.frame_max,
            permits: slot.permits,
            window: args.confirm,
            rate: args.rate,
            count: plan.producer_counts[slot.index],
            deadline,
        };
        producers.spawn(run_producer(
            cfg,
            live.data_tx.clone(),
            live.blocked.clone(),
            stop_rx.clone(),
            run.clone(),
        ));
    }

    let mut pub_end: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let reason: &'static str = loop {
        tick.tick().await;
        if run.failed() {
            break "error";
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break "duration";
        }
        while producers.try_join_next().is_some() {}
        if np > 0 && pub_end.is_none() && producers.is_empty() {
            pub_end = Some(now);
        }
        let consumed = Stats::get(&s.consumed);
        let last_ns = Stats::get(&s.last_consume_ns).max(t0_ns);
        let idle_since = t0 + Duration::from_nanos(last_ns - t0_ns);
        if np == 0 {
            if let Some(c) = args.count {
                if consumed >= c {
                    break "count";
                }
            } else if backlog > 0 && consumed >= backlog {
                break "drained";
            }
            if now - idle_since >= IDLE_LIMIT {
                break "idle";
            }
        } else if let Some(end) = pub_end {
            if nc == 0 {
                break "count";
            }
            let published = Stats::get(&s.published);
            if let Some(f) = plan.deliveries_per_publish {
                if consumed >= published.saturating_mul(f) {
                    break "count";
                }
            }
            if now - idle_since.max(end) >= IDLE_LIMIT {
                break "idle";
            }
        }
    };
    let stop_at = tokio::time::Instant::now();
    let cpu1 = process_cpu();
    run.stopping.store(true, Relaxed);
    let _ = stop_tx.send(true);
    let published = Stats::get(&s.published);
    let confirmed = Stats::get(&s.confirmed);
    let nacked = Stats::get(&s.nacked);
    let returned = Stats::get(&s.returned);
    let consumed = Stats::get(&s.consumed);
    let consumed_bytes = Stats::get(&s.consumed_bytes);
    let last_consume = Stats::get(&s.last_consume_ns);
    let last_confirm = Stats::get(&s.last_confirm_ns);
    let _ = tokio::time::timeout(Duration::from_secs(1), rep).await;
    s.roll_interval();
    let join = async { while producers.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), join)
        .await
        .is_err()
    {
        producers.abort_all();
    }
    if let Some(e) = run.take_error() {
        return Err(e);
    }

    let elapsed = (stop_at - t0).as_secs_f64();
    let pub_secs = (pub_end.unwrap_or(stop_at) - t0).as_secs_f64();
    let since_t0 = |ns: u64| {
        if ns > t0_ns {
            (ns - t0_ns) as f64 / 1e9
        } else {
            elapsed
        }
    };
    let cons_secs = since_t0(last_consume).min(elapsed);
    let conf_secs = since_t0(last_confirm).min(elapsed);
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
        _ => None,
    };
    let msgs = published.max(consumed);
    Ok(Summary {
        label: args.label.clone(),
        mode: if np == 0 {
            "consume-only"
        } else if nc == 0 {
            "publish-only"
        } else {
            "publish-consume"
        },
        broker: plan.uri.redacted(),
        config: config(args, plan),
        stop_reason: reason,
        elapsed_s: elapsed,
        published,
        confirmed,
        nacked,
        returned,
        consumed,
        publish_rate: rate(published, pub_secs),
        confirm_rate: rate(confirmed + nacked, conf_secs),
        consume_rate: rate(consumed, cons_secs),
        consume_mib_per_s: rate(consumed_bytes, cons_secs) / (1024.0 * 1024.0),
        backlog_at_start: (np == 0).then_some(backlog),
        latency_ms: s.total_latency(),
        client_cpu_s: cpu,
        client_cpu_percent: cpu.map(|c| 100.0 * c / elapsed.max(1e-9)),
        client_cpu_us_per_msg: cpu.filter(|_| msgs > 0).map(|c| c * 1e6 / msgs as f64),
        connections: None,
    })
}

async fn connections_only(args: &PerfArgs, plan: &Plan, n: u32) -> Result<Summary, PerfError> {
    let t0 = Instant::now();
    let cpu0 = process_cpu();
    let mut conns = Vec::with_capacity(n as usize);
    let mut times = Vec::with_capacity(n as usize);
    let mut next_report = t0 + Duration::from_secs(1);
    for i in 0..n {
        let t = Instant::now();
        let opened = async {
            let mut c = SetupConn::open(&plan.uri, &format!("warren-perf idle {}", i + 1)).await?;
            c.open_channel(1).await?;
            Ok::<_, PerfError>(c)
        };
        let c = match tokio::time::timeout(Duration::from_secs(10), opened).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(PerfError::ConnectionsFailed {
                    opened: i,
                    source: Box::new(e),
                })
            }
            Err(_) => {
                return Err(PerfError::ConnectionsFailed {
                    opened: i,
                    source: Box::new(PerfError::Timeout("connection open (10 s)")),
                })
            }
        };
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        conns.push(c);
        if !args.quiet && Instant::now() >= next_report {
            eprintln!(
                "[{:>4.0} s] opened {}/{n} connections",
                t0.elapsed().as_secs_f64(),
                i + 1
            );
            next_report += Duration::from_secs(1);
        }
    }
    let open_total = t0.elapsed().as_secs_f64();
    if !args.quiet {
        eprintln!(
            "opened {n} connections in {open_total:.2} s; holding them for {:.1} s",
            plan.duration.as_secs_f64()
        );
    }
    let held = Instant::now();
    tokio::time::sleep(plan.duration).await;
    let held_s = held.elapsed().as_secs_f64();
    let cpu1 = process_cpu();
    let mut set = JoinSet::new();
    for c in conns {
        set.spawn(c.close());
    }
    let mut close_failures = 0;
    while let Some(r) = set.join_next().await {
        if !matches!(r, Ok(Ok(()))) {
            close_failures += 1;
        }
    }
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
        _ => None,
    };
    Ok(Summary::connections_only(
        args.label.clone(),
        plan.uri.redacted(),
        config(args, plan),
        t0.elapsed().as_secs_f64(),
        cpu,
        ConnectionsSummary::from_open_times(&times, open_total, held_s, close_failures),
    ))
}
