//! The `warren` binary: parses options (flags, environment, config file), sets up logging,
//! binds the listeners and runs the broker until SIGTERM/SIGINT.

mod allocator;
mod ctl;
mod ctl_api;
mod ctl_remote;
mod management;
mod mqtt;
mod mqtt_settings;
mod settings;

use std::sync::Arc;

use clap::Parser;
use tokio::net::TcpListener;
use tracing::{error, info};
use warren::control;
use warren_core::Broker;

use settings::{Cli, Command, Settings};

fn main() -> std::process::ExitCode {
    allocator::enlarge_thread_cache();
    allocator::set_thresholds();
    let mut cli = Cli::parse();
    if let Some(Command::Perf(_)) = &cli.command {
        if let Some(Command::Perf(args)) = cli.command.take() {
            return warren_perf::main(args);
        }
    }
    let settings = match Settings::resolve(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("warren: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(Command::Ctl(args)) = &cli.command {
        // Like any command-line tool, `warren ctl list_queues | head` ends quietly when the
        // reader goes away (Rust ignores SIGPIPE, and println! then panics).
        // SAFETY: no other thread exists yet, and SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
        return match ctl::run(args, &settings.data_dir) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                if !e.message.is_empty() {
                    eprintln!("Error: {}", e.message);
                }
                std::process::ExitCode::from(e.exit)
            }
        };
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    allocator::start_trimmer();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("warren: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> Result<(), String> {
    // Durably: a data directory that vanishes at a power cut takes the store with it.
    warren_store::create_dir_durable(&settings.data_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}",
            settings.data_dir.display()
        )
    })?;
    let data_dir = settings
        .data_dir
        .canonicalize()
        .unwrap_or(settings.data_dir.clone());
    let started = std::time::Instant::now();
    let store_options = warren_store::StoreOptions {
        fsync: settings.fsync,
        ..Default::default()
    };
    let store_dir = data_dir.join("store");
    let store =
        tokio::task::block_in_place(|| warren_store::Store::open(&store_dir, store_options))
            .map_err(|e| format!("cannot open the store in {}: {e}", store_dir.display()))?;
    let persistence = warren_core::persist::Persistence::new(
        Arc::new(store.clone()),
        settings.queue_memory_limit,
    );
    let boot_definitions = match &settings.management.load_definitions {
        Some(path) => Some(management::read_definitions(path)?),
        None => None,
    };
    let mut access = settings.access.clone();
    if boot_definitions
        .as_ref()
        .is_some_and(management::defines_users)
    {
        access.create_default_user = false;
    }
    let broker =
        tokio::task::block_in_place(|| Broker::with_persistence_and_access(persistence, &access))
            .map_err(|e| format!("cannot recover from {}: {e}", store_dir.display()))?;
    info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recovery done"
    );
    if let Some(defs) = &boot_definitions {
        tokio::task::block_in_place(|| management::load_definitions(&broker, defs))?;
    }
    if let Some(bytes) = settings.memory_high_watermark {
        broker.alarms().set_memory_high_watermark(bytes);
    }
    if let Some(bytes) = settings.disk_free_limit {
        broker.alarms().set_disk_free_limit(bytes);
    }
    info!(
        memory_high_watermark = broker.alarms().memory_high_watermark(),
        disk_free_limit = broker.alarms().disk_free_limit(),
        "resource alarm thresholds"
    );
    broker
        .start_housekeeping()
        .map_err(|e| format!("cannot start the housekeeping thread: {e}"))?;
    let api = management::api_state(&broker, &settings.management);
    let control_socket =
        control::bind(&data_dir).map_err(|e| format!("cannot create the control socket: {e}"))?;
    let control = {
        let broker = Arc::clone(&broker);
        let api = Arc::clone(&api);
        tokio::spawn(async move {
            if let Err(e) = control::serve(broker, api, control_socket).await {
                error!(error = %e, "control socket failed; warren ctl will not work");
            }
        })
    };
    let mut amqps: Option<warren_server::tls::Tls> = None;
    let mut listeners: Vec<warren_server::Listener> = Vec::new();
    for addr in &settings.listen {
        let listener = TcpListener::bind(addr.as_str())
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        listeners.push(listener.into());
    }
    if !settings.tls_listen.is_empty() {
        let tls = settings
            .tls
            .as_ref()
            .ok_or("--tls-listen needs --tls-cert and --tls-key")?;
        let tls = warren_server::tls::Tls::new(tls.clone()).map_err(|e| format!("TLS: {e}"))?;
        for addr in &settings.tls_listen {
            let tcp = TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            listeners.push(warren_server::Listener {
                tcp,
                tls: Some(tls.clone()),
            });
        }
        control::set_tls(tls.clone());
        reload_tls_on_sighup(tls.clone());
        amqps = Some(tls);
    }
    let management_tls = match (
        &amqps,
        &settings.tls,
        settings.management.tls_listen.is_empty(),
    ) {
        (Some(t), _, false) => Some(t.clone()),
        (None, Some(t), false) => {
            let tls = warren_server::tls::Tls::new(t.clone()).map_err(|e| format!("TLS: {e}"))?;
            control::set_tls(tls.clone());
            reload_tls_on_sighup(tls.clone());
            Some(tls)
        }
        _ => None,
    };
    // The listening lines go to stdout so scripts and tests can find the port (with :0).
    // They come last: once printed, the broker is recovered and `warren ctl` works.
    for listener in &listeners {
        if let Ok(local) = listener.tcp.local_addr() {
            let protocol = if listener.tls.is_some() {
                "AMQPS"
            } else {
                "AMQP"
            };
            println!("warren: listening for {protocol} on {local}");
            info!(%local, protocol, "listening");
        }
    }
    let mqtt_tls = match (
        amqps.as_ref().or(management_tls.as_ref()),
        &settings.tls,
        settings.mqtt.needs_tls(),
    ) {
        (Some(t), _, true) => Some(t.clone()),
        (None, Some(t), true) => {
            let tls = warren_server::tls::Tls::new(t.clone()).map_err(|e| format!("TLS: {e}"))?;
            control::set_tls(tls.clone());
            reload_tls_on_sighup(tls.clone());
            Some(tls)
        }
        _ => None,
    };
    let mqtt_listeners = mqtt::start(&broker, &settings.mqtt, &data_dir, mqtt_tls).await?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut amqp_listeners: Vec<warren_http::ListenerInfo> = listeners
        .iter()
        .filter_map(|l| {
            let local = l.tcp.local_addr().ok()?;
            Some(warren_http::ListenerInfo {
                protocol: if l.tls.is_some() { "amqp/ssl" } else { "amqp" }.into(),
                ip: local.ip().to_string(),
                port: local.port(),
            })
        })
        .collect();
    amqp_listeners.extend(mqtt_listeners);
    management::start(
        &api,
        &settings.management,
        management_tls,
        amqp_listeners,
        shutdown_rx.clone(),
    )
    .await?;
    println!("warren: data directory {}", data_dir.display());
    info!(data_dir = %data_dir.display(), version = env!("CARGO_PKG_VERSION"), "warren started");

    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown requested");
        let _ = shutdown_tx.send(true);
    });

    warren_server::serve(broker, settings.server, listeners, shutdown_rx).await;
    control.abort();
    // Everything acknowledged or published so far reaches the disk before we exit.
    if let Err(e) = tokio::task::block_in_place(|| store.sync_now()) {
        error!(error = %e, "final sync of the store failed");
    }
    let _ = std::fs::remove_file(control::socket_path(&data_dir));
    info!("warren stopped");
    Ok(())
}

/// SIGHUP rereads the TLS certificates (as `warren ctl reload_tls` does).
fn reload_tls_on_sighup(tls: warren_server::tls::Tls) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => info!("TLS certificates reloaded (SIGHUP)"),
                Err(e) => {
                    error!(error = %e, "TLS reload failed; the previous certificates stay in use")
                }
            }
        }
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
