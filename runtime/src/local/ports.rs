//! Free loopback ports for local replicas.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// Asks the kernel for a free TCP port on 127.0.0.1. The port is released
/// before the replica binds it; a replica that loses the race fails its
/// readiness probe and is restarted on a new port.
pub fn free_loopback_port() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    listener.local_addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_distinct_bindable_loopback_ports() {
        let a = free_loopback_port().unwrap();
        let b = free_loopback_port().unwrap();
        assert!(a.ip().is_loopback());
        assert_ne!(a.port(), 0);
        // The port is really free: we can bind it.
        let _held = TcpListener::bind(a).unwrap();
        assert_ne!(b.port(), 0);
    }
}
