//! The one form a Keel address takes: `host:port`, where the host is an IP
//! address (IPv6 in brackets) or a DNS name, so members, gateways and
//! clients can be named as hosts are on real networks.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest address accepted (a DNS name is at most 253 characters).
pub const ADDR_LEN_MAX: usize = 261;

/// Why a string is not an address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{addr:?} is not host:port ({why}); e.g. 10.0.0.5:7101 or db-1.shop.example:7101")]
pub struct AddrError {
    /// What was given.
    pub addr: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Checks that `addr` is `host:port` with a port above 0 and a host that is
/// an IP address or a DNS name; returns the host and the port.
pub fn parse_host_port(addr: &str) -> Result<(&str, u16), AddrError> {
    let bad = |why| AddrError {
        addr: addr.chars().take(ADDR_LEN_MAX).collect(),
        why,
    };
    if addr.len() > ADDR_LEN_MAX {
        return Err(bad("too long"));
    }
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("the port is not a number up to 65535"))?;
    if port == 0 {
        return Err(bad("port 0"));
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<Ipv6Addr>()
            .map_err(|_| bad("bad IPv6 address"))?;
        return Ok((host, port));
    }
    if host.parse::<Ipv4Addr>().is_ok() || is_dns_name(host) {
        Ok((host, port))
    } else {
        Err(bad("the host is neither an IP address nor a DNS name"))
    }
}

/// Whether `name` is a DNS host name: dot-separated labels of letters,
/// digits and inner hyphens, each 1 to 63 long, 253 in all, and not all
/// digits (that would be a mistyped IPv4 address).
fn is_dns_name(name: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(label_ok)
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_and_dns_names_are_addresses_and_the_rest_are_not() {
        assert_eq!(parse_host_port("127.0.0.1:7101"), Ok(("127.0.0.1", 7101)));
        assert_eq!(parse_host_port("[::1]:7101"), Ok(("[::1]", 7101)));
        assert_eq!(
            parse_host_port("db-1.shop.example:7101"),
            Ok(("db-1.shop.example", 7101))
        );
        assert_eq!(parse_host_port("keel-2:7101"), Ok(("keel-2", 7101)));
        for bad in [
            "",
            "nope",
            "host:",
            "host:0",
            "host:70000",
            ":7101",
            "-x:1",
            "a..b:1",
            "999.1.1.1:1",
            "[zz]:1",
            "sp ace:1",
            "under_score:1",
        ] {
            assert!(parse_host_port(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_host_port(&format!("{}:1", "a".repeat(300))).is_err());
    }
}
