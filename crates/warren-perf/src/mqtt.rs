//! The MQTT side of `warren perf` (`--uri mqtt://user:pass@host:port`): producers publish
//! to `perf/<run>/p<n>` at `--qos`, every consumer subscribes to `perf/<run>/#` (so N
//! consumers are an N-way fan-out), and `--connections-only N` holds N idle clients. Its
//! own minimal client, packets written and parsed in place (a PUBLISH is a header, the
//! topic, a packet id and the body), so that the load generator is not what is measured.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::args::{AckMode, ExchangeType, PerfArgs};
use crate::cpu::process_cpu;
use crate::error::PerfError;
use crate::rate::TokenBucket;
use crate::stats::Stats;
use crate::summary::{Config, ConnectionsSummary, Summary};

/// Where and as whom to connect.
#[derive(Debug, Clone)]
struct MqttUri {
    host: String,
    port: u16,
    user: Option<String>,
    pass: Option<String>,
}

impl MqttUri {
    fn parse(uri: &str) -> Result<MqttUri, PerfError> {
        let rest = uri
            .strip_prefix("mqtt://")
            .ok_or_else(|| PerfError::Uri(format!("{uri}: expected mqtt://")))?;
        let rest = rest.trim_end_matches('/');
        let (creds, addr) = match rest.rsplit_once('@') {
            Some((c, a)) => (Some(c), a),
            None => (None, rest),
        };
        let (user, pass) = match creds.map(|c| c.split_once(':').unwrap_or((c, ""))) {
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (None, None),
        };
        let (host, port) = match addr.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse()
                    .map_err(|_| PerfError::Uri(format!("{uri}: bad port")))?,
            ),
            None => (addr.to_string(), 1883),
        };
        Ok(MqttUri {
            host,
            port,
            user,
            pass,
        })
    }

    fn redacted(&self) -> String {
        match &self.user {
            Some(u) => format!("mqtt://{u}:***@{}:{}", self.host, self.port),
            None => format!("mqtt://{}:{}", self.host, self.port),
        }
    }
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

fn put_len(out: &mut BytesMut, mut n: usize) {
    loop {
        let mut b = (n & 0x7F) as u8;
        n >>= 7;
        if n > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if n == 0 {
            return;
        }
    }
}

fn packet(out: &mut BytesMut, first: u8, body: &[u8]) {
    out.put_u8(first);
    put_len(out, body.len());
    out.put_slice(body);
}

/// A connected MQTT client socket with its read buffer.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
    v5: bool,
}

/// One packet read: type and flags, and the body.
struct Incoming {
    first: u8,
    body: bytes::Bytes,
}

impl Client {
    async fn connect(uri: &MqttUri, client_id: &str, v5: bool) -> Result<Client, PerfError> {
        let io = |context| move |source| PerfError::Io { context, source };
        let stream = TcpStream::connect((uri.host.as_str(), uri.port))
            .await
            .map_err(io("connect"))?;
        let _ = stream.set_nodelay(true);
        let mut body = BytesMut::new();
        put_str(&mut body, b"MQTT");
        body.put_u8(if v5 { 5 } else { 4 });
        let mut flags = 0x02u8;
        if uri.user.is_some() {
            flags |= 0xC0;
        }
        body.put_u8(flags);
        body.put_u16(0); // no keep alive: idle clients send nothing
        if v5 {
            body.put_u8(0);
        }
        put_str(&mut body, client_id.as_bytes());
        if let (Some(u), Some(p)) = (&uri.user, &uri.pass) {
            put_str(&mut body, u.as_bytes());
            put_str(&mut body, p.as_bytes());
        }
        let mut c = Client {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            v5,
        };
        let mut out = BytesMut::new();
        packet(&mut out, 0x10, &body);
        c.stream.write_all(&out).await.map_err(io("CONNECT"))?;
        let ack = c.next().await?;
        if ack.first >> 4 != 2 || ack.body.len() < 2 || ack.body[1] != 0 {
            return Err(PerfError::Protocol(format!(
                "CONNECT refused: {:?}",
                &ack.body[..ack.body.len().min(2)]
            )));
        }
        Ok(c)
    }

    /// A whole packet already read, if any.
    fn parse(&mut self) -> Result<Option<Incoming>, PerfError> {
        let mut len = 0usize;
        let mut i = 1;
        loop {
            let Some(&b) = self.buf.get(i) else {
                return Ok(None);
            };
            len |= ((b & 0x7F) as usize) << (7 * (i - 1));
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            if i > 4 {
                return Err(PerfError::Protocol("bad remaining length".into()));
            }
        }
        if self.buf.len() < i + len {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(i + len).freeze();
        let first = frame[0];
        frame.advance(i);
        Ok(Some(Incoming { first, body: frame }))
    }

    async fn fill(&mut self) -> Result<(), PerfError> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(64 * 1024);
        }
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .map_err(|source| PerfError::Io {
                context: "read",
                source,
            })?;
        if n == 0 {
            return Err(PerfError::Eof("MQTT"));
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<Incoming, PerfError> {
        loop {
            if let Some(p) = self.parse()? {
                return Ok(p);
            }
            self.fill().await?;
        }
    }

    async fn write(&mut self, out: &mut BytesMut) -> Result<(), PerfError> {
        if out.is_empty() {
            return Ok(());
        }
        self.stream
            .write_all(out)
            .await
            .map_err(|source| PerfError::Io {
                context: "write",
                source,
            })?;
        out.clear();
        Ok(())
    }

    async fn subscribe(&mut self, filter: &str, qos: u8) -> Result<(), PerfError> {
        let mut body = BytesMut::new();
        body.put_u16(1);
        if self.v5 {
            body.put_u8(0);
        }
        put_str(&mut body, filter.as_bytes());
        body.put_u8(qos);
        let mut out = BytesMut::new();
        packet(&mut out, 0x82, &body);
        self.write(&mut out).await?;
        let ack = self.next().await?;
        if ack.first >> 4 != 9 || ack.body.last().is_none_or(|&c| c >= 0x80) {
            return Err(PerfError::Protocol("SUBSCRIBE refused".into()));
        }
        Ok(())
    }
}

fn ack(out: &mut BytesMut, first: u8, pid: u16) {
    out.put_u8(first);
    out.put_u8(2);
    out.put_u16(pid);
}

/// Shared state of one run.
struct Run {
    stats: Stats,
    stop: AtomicBool,
    error: parking_lot_free::Slot,
    topic: String,
    qos: u8,
}

/// A first-error slot without another dependency.
mod parking_lot_free {
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Slot(Mutex<Option<crate::error::PerfError>>);

    impl Slot {
        pub fn set(&self, e: crate::error::PerfError) {
            if let Ok(mut s) = self.0.lock() {
                s.get_or_insert(e);
            }
        }

        pub fn take(&self) -> Option<crate::error::PerfError> {
            self.0.lock().ok().and_then(|mut s| s.take())
        }
    }
}

async fn consume(run: Arc<Run>, mut c: Client) -> Result<(), PerfError> {
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut samples = Vec::with_capacity(1024);
    let (mut count, mut bytes) = (0u64, 0u64);
    loop {
        if run.stop.load(Relaxed) {
            return Ok(());
        }
        match tokio::time::timeout(Duration::from_millis(200), c.fill()).await {
            Err(_) => continue,
            Ok(r) => r?,
        }
        while let Some(p) = c.parse()? {
            match p.first >> 4 {
                3 => {
                    let qos = (p.first >> 1) & 3;
                    let mut b = p.body;
                    if b.len() < 2 {
                        return Err(PerfError::Protocol("short PUBLISH".into()));
                    }
                    let tlen = b.get_u16() as usize;
                    b.advance(tlen.min(b.len()));
                    if qos > 0 && b.len() >= 2 {
                        let pid = b.get_u16();
                        ack(&mut out, if qos == 1 { 0x40 } else { 0x50 }, pid);
                    }
                    if c.v5 && !b.is_empty() {
                        let n = b[0] as usize; // short property lists only (< 128 bytes)
                        b.advance((1 + n).min(b.len()));
                    }
                    if b.len() >= 8 {
                        let sent = u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8]));
                        samples.push(run.stats.now_ns().saturating_sub(sent) / 1000);
                    }
                    count += 1;
                    bytes += b.len() as u64;
                }
                6 if p.body.len() >= 2 => {
                    ack(&mut out, 0x70, u16::from_be_bytes([p.body[0], p.body[1]]));
                }
                _ => {}
            }
        }
        c.write(&mut out).await?;
        run.stats.consumed.fetch_add(count, Relaxed);
        run.stats.consumed_bytes.fetch_add(bytes, Relaxed);
        if count > 0 {
            run.stats.last_consume_ns.store(run.stats.now_ns(), Relaxed);
        }
        run.stats.record_latencies(&samples);
        samples.clear();
        count = 0;
        bytes = 0;
    }
}

#[allow(clippy::too_many_arguments)]
async fn produce(
    run: Arc<Run>,
    mut c: Client,
    index: u32,
    size: usize,
    window: u32,
    quota: Option<u64>,
    deadline: Instant,
    rate: f64,
) -> Result<(), PerfError> {
    let topic = format!("{}/p{index}", run.topic);
    let qos = run.qos;
    let mut out = BytesMut::with_capacity(256 * 1024);
    let mut body = vec![0u8; size.max(16)];
    let mut bucket = (rate > 0.0).then(|| TokenBucket::new(rate, Instant::now()));
    let mut inflight = 0u32;
    let mut pid: u16 = 0;
    let mut sent = 0u64;
    let mut pubrels = BytesMut::new();
    let done = |sent: u64| {
        run.stop.load(Relaxed) || Instant::now() >= deadline || quota.is_some_and(|q| sent >= q)
    };
    while !done(sent) {
        let mut budget = 64u64;
        if let Some(b) = bucket.as_mut() {
            match b.take(64, Instant::now()) {
                Ok(n) => budget = n,
                Err(wait) => {
                    tokio::time::sleep(wait.min(Duration::from_millis(5))).await;
                    budget = 0;
                }
            }
        }
        let mut batch = 0u64;
        while batch < budget
            && (qos == 0 || inflight < window)
            && quota.is_none_or(|q| sent + batch < q)
        {
            let seq = sent + batch;
            body[..8].copy_from_slice(&run.stats.now_ns().to_be_bytes());
            body[8..16].copy_from_slice(&seq.to_be_bytes());
            let mut len = 2 + topic.len() + body.len();
            if qos > 0 {
                len += 2;
            }
            if c.v5 {
                len += 1;
            }
            out.put_u8(0x30 | qos << 1);
            put_len(&mut out, len);
            put_str(&mut out, topic.as_bytes());
            if qos > 0 {
                pid = pid.checked_add(1).unwrap_or(1);
                out.put_u16(pid);
                inflight += 1;
            }
            if c.v5 {
                out.put_u8(0);
            }
            out.put_slice(&body);
            batch += 1;
        }
        if let Some(b) = bucket.as_mut() {
            b.give_back(budget - batch);
        }
        if batch > 0 {
            c.write(&mut out).await?;
            sent += batch;
            run.stats.published.fetch_add(batch, Relaxed);
        }
        // Acknowledgements: wait for one when the window is full, else take what is there.
        if qos > 0 && inflight >= window {
            match tokio::time::timeout(Duration::from_millis(500), c.fill()).await {
                Ok(r) => r?,
                Err(_) => continue,
            }
        }
        if qos > 0 {
            loop {
                match c.stream.try_read_buf(&mut c.buf) {
                    Ok(0) => return Err(PerfError::Eof("MQTT producer")),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(source) => {
                        return Err(PerfError::Io {
                            context: "read",
                            source,
                        })
                    }
                }
            }
            let mut confirmed = 0;
            while let Some(p) = c.parse()? {
                match p.first >> 4 {
                    4 | 7 => {
                        inflight = inflight.saturating_sub(1);
                        confirmed += 1;
                    }
                    5 if p.body.len() >= 2 => {
                        ack(
                            &mut pubrels,
                            0x62,
                            u16::from_be_bytes([p.body[0], p.body[1]]),
                        );
                    }
                    _ => {}
                }
            }
            c.write(&mut pubrels).await?;
            if confirmed > 0 {
                run.stats.confirmed.fetch_add(confirmed, Relaxed);
                run.stats.last_confirm_ns.store(run.stats.now_ns(), Relaxed);
            }
        }
    }
    // The last acknowledgements (bounded).
    let end = Instant::now() + Duration::from_secs(5);
    while qos > 0 && inflight > 0 && Instant::now() < end {
        let p = match tokio::time::timeout(Duration::from_millis(500), c.next()).await {
            Ok(p) => p?,
            Err(_) => continue,
        };
        match p.first >> 4 {
            4 | 7 => {
                inflight -= 1;
                run.stats.confirmed.fetch_add(1, Relaxed);
                run.stats.last_confirm_ns.store(run.stats.now_ns(), Relaxed);
            }
            5 if p.body.len() >= 2 => {
                ack(
                    &mut pubrels,
                    0x62,
                    u16::from_be_bytes([p.body[0], p.body[1]]),
                );
                c.write(&mut pubrels).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn config(args: &PerfArgs, producers: u32, consumers: u32, window: u32) -> Config {
    Config {
        producers,
        consumers,
        queues: consumers,
        size: args.size,
        confirm: if args.qos > 0 { window } else { 0 },
        ack: if args.qos > 0 {
            AckMode::Manual
        } else {
            AckMode::Auto
        },
        multiple_ack_every: 1,
        prefetch: 0,
        persistent: args.qos > 0,
        durable: false,
        rate: args.rate,
        shared_connection: false,
        exchange: "amq.topic".into(),
        exchange_type: ExchangeType::Topic,
        bindings: consumers as usize,
        mqtt_qos: Some(args.qos),
    }
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Runs an MQTT test.
pub async fn run(args: PerfArgs) -> Result<Summary, PerfError> {
    let uri = MqttUri::parse(&args.uri)?;
    let v5 = args.mqtt_version == 5;
    if args.size < 16 {
        return Err(PerfError::Args("--size must be at least 16".into()));
    }
    let duration = Duration::from_secs_f64(args.duration.unwrap_or(if args.count.is_some() {
        600.0
    } else {
        10.0
    }));
    let tag = format!(
        "{:08x}",
        std::process::id() ^ (Instant::now().elapsed().as_nanos() as u32)
    );
    if let Some(n) = args.connections_only {
        return idle(&args, &uri, n, duration, v5, &tag).await;
    }
    let (np, nc) = (args.producers, args.consumers);
    let window = if args.confirm == 0 { 100 } else { args.confirm };
    let run = Arc::new(Run {
        stats: Stats::new(),
        stop: AtomicBool::new(false),
        error: Default::default(),
        topic: format!("perf/{tag}"),
        qos: args.qos,
    });
    let mut consumers = JoinSet::new();
    for i in 0..nc {
        let mut c = Client::connect(&uri, &format!("perf-{tag}-c{i}"), v5).await?;
        c.subscribe(&format!("{}/#", run.topic), args.qos).await?;
        let run = Arc::clone(&run);
        consumers.spawn(async move {
            if let Err(e) = consume(Arc::clone(&run), c).await {
                run.error.set(e);
            }
        });
    }
    let mut producers = Vec::new();
    for i in 0..np {
        producers.push(Client::connect(&uri, &format!("perf-{tag}-p{i}"), v5).await?);
    }
    let cpu0 = process_cpu();
    let t0 = run.stats.now_ns();
    let started = Instant::now();
    let deadline = started + duration;
    let quota = args.count.map(|c| c.div_ceil(np.max(1) as u64));
    let mut set = JoinSet::new();
    for (i, c) in producers.into_iter().enumerate() {
        let run = Arc::clone(&run);
        let (size, r) = (args.size, args.rate);
        set.spawn(async move {
            if let Err(e) = produce(
                Arc::clone(&run),
                c,
                i as u32,
                size,
                window,
                quota,
                deadline,
                r,
            )
            .await
            {
                run.error.set(e);
            }
        });
    }
    let progress = !args.quiet;
    let mut last = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !set.is_empty() {
        tokio::select! {
            _ = set.join_next() => {}
            _ = tick.tick() => {
                let (p, c) = (Stats::get(&run.stats.published), Stats::get(&run.stats.consumed));
                let lat = run.stats.roll_interval();
                if progress {
                    eprintln!(
                        "[{:>4.0} s] sent {}/s, received {}/s{}",
                        started.elapsed().as_secs_f64(),
                        p - last.0,
                        c - last.1,
                        lat.map(|l| format!(", latency p50 {:.3} ms", l.p50)).unwrap_or_default()
                    );
                }
                last = (p, c);
            }
        }
    }
    let pub_secs = started.elapsed().as_secs_f64();
    // Let the consumers take what is still on its way: until they expect no more or
    // nothing arrived for a second.
    let expected = Stats::get(&run.stats.published) * nc as u64;
    let drain_end = Instant::now() + Duration::from_secs(10);
    let mut seen = Stats::get(&run.stats.consumed);
    let mut quiet_since = Instant::now();
    while nc > 0 && Stats::get(&run.stats.consumed) < expected && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Stats::get(&run.stats.consumed);
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_secs(1) {
            break;
        }
    }
    run.stop.store(true, Relaxed);
    while consumers.join_next().await.is_some() {}
    run.stats.roll_interval();
    let cpu1 = process_cpu();
    if let Some(e) = run.error.take() {
        return Err(e);
    }
    let s = &run.stats;
    let since = |ns: u64| {
        if ns > t0 {
            (ns - t0) as f64 / 1e9
        } else {
            pub_secs
        }
    };
    let (published, consumed) = (Stats::get(&s.published), Stats::get(&s.consumed));
    let confirmed = Stats::get(&s.confirmed);
    let cons_secs = since(Stats::get(&s.last_consume_ns));
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
        _ => None,
    };
    let elapsed = started.elapsed().as_secs_f64();
    let msgs = published.max(consumed);
    Ok(Summary {
        label: args.label.clone(),
        mode: if nc == 0 {
            "publish-only"
        } else {
            "publish-consume"
        },
        broker: uri.redacted(),
        config: config(&args, np, nc, window),
        stop_reason: if args.count.is_some() && published >= args.count.unwrap_or(0) {
            "count"
        } else {
            "duration"
        },
        elapsed_s: elapsed,
        published,
        confirmed,
        nacked: 0,
        returned: 0,
        consumed,
        publish_rate: rate(published, pub_secs),
        confirm_rate: rate(confirmed, since(Stats::get(&s.last_confirm_ns))),
        consume_rate: rate(consumed, cons_secs),
        consume_mib_per_s: rate(Stats::get(&s.consumed_bytes), cons_secs) / (1024.0 * 1024.0),
        backlog_at_start: None,
        latency_ms: s.total_latency(),
        client_cpu_s: cpu,
        client_cpu_percent: cpu.map(|c| 100.0 * c / elapsed.max(1e-9)),
        client_cpu_us_per_msg: cpu.filter(|_| msgs > 0).map(|c| c * 1e6 / msgs as f64),
        connections: None,
    })
}

/// `--connections-only N`: N clients connected (no keep alive, so silent), held, closed.
async fn idle(
    args: &PerfArgs,
    uri: &MqttUri,
    n: u32,
    duration: Duration,
    v5: bool,
    tag: &str,
) -> Result<Summary, PerfError> {
    let t0 = Instant::now();
    let mut conns = Vec::with_capacity(n as usize);
    let mut times = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = Instant::now();
        let c = tokio::time::timeout(
            Duration::from_secs(10),
            Client::connect(uri, &format!("perf-{tag}-idle{i}"), v5),
        )
        .await
        .map_err(|_| PerfError::Timeout("MQTT connect (10 s)"))
        .and_then(|r| r)
        .map_err(|e| PerfError::ConnectionsFailed {
            opened: i,
            source: Box::new(e),
        })?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        conns.push(c);
    }
    let open_total = t0.elapsed().as_secs_f64();
    if !args.quiet {
        eprintln!(
            "opened {n} MQTT connections in {open_total:.2} s; holding them for {duration:?}"
        );
    }
    let held = Instant::now();
    tokio::time::sleep(duration).await;
    let held_s = held.elapsed().as_secs_f64();
    let mut close_failures = 0;
    for mut c in conns {
        let mut out = BytesMut::new();
        packet(&mut out, 0xE0, &[]);
        if c.write(&mut out).await.is_err() {
            close_failures += 1;
        }
    }
    Ok(Summary::connections_only(
        args.label.clone(),
        uri.redacted(),
        config(args, 0, 0, 0),
        t0.elapsed().as_secs_f64(),
        None,
        ConnectionsSummary::from_open_times(&times, open_total, held_s, close_failures),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_uris_parse() {
        let u = MqttUri::parse("mqtt://guest:secret@127.0.0.1:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 1884));
        assert_eq!(u.redacted(), "mqtt://guest:***@127.0.0.1:1884");
        let u = MqttUri::parse("mqtt://localhost").unwrap();
        assert_eq!((u.port, u.user), (1883, None));
        assert!(MqttUri::parse("amqp://x").is_err());
    }
}
