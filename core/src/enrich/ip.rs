//! IP anonymisation: keep the network, drop the host part.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Zeroes the host part of an address: IPv4 keeps its /24, IPv6 its /48. IPv4-mapped IPv6
/// addresses are treated as the IPv4 address they carry.
pub fn anonymize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(anonymize_v4(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(anonymize_v4(v4)),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
            }
        },
    }
}

fn anonymize_v4(ip: Ipv4Addr) -> Ipv4Addr {
    let [a, b, c, _] = ip.octets();
    Ipv4Addr::new(a, b, c, 0)
}
