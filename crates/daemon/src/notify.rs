//! The systemd notification protocol (`sd_notify`), without libsystemd: readiness, watchdog
//! pings and stopping, as datagrams to `$NOTIFY_SOCKET`. Outside systemd (no socket) every call
//! does nothing.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;

/// Sends one notification; failures are logged, never fatal (the service works without them).
fn notify(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket: the name after '@' with a leading NUL.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(message.as_bytes(), &address)
            }
            None => socket.send_to(message.as_bytes(), &path),
        }
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Connected and resumed: systemd may consider the service started.
pub fn ready() {
    notify("READY=1\nSTATUS=following the binlog");
}

pub fn stopping() {
    notify("STOPPING=1");
}

/// When systemd asks for watchdog pings (`WatchdogSec=`), pings at half the interval while the
/// pipeline keeps turning, so that a stuck pipeline (a hung store, a wedged runtime) stops the
/// pings and systemd restarts the service.
pub fn spawn_watchdog(metrics: Arc<Metrics>) -> Option<tokio::task::JoinHandle<()>> {
    let micros: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    {
        if pid != std::process::id() {
            return None;
        }
    }
    let period = Duration::from_micros(micros / 2).max(Duration::from_millis(100));
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            if metrics.alive_within(period) {
                notify("WATCHDOG=1");
            } else {
                tracing::warn!(
                    "the pipeline has not turned for {period:?}; not feeding the watchdog"
                );
            }
        }
    }))
}
