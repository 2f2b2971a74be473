//! IP anonymisation: keep the network, drop the host part.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Zeroes the host part of an address: IPv4 keeps its /24, IPv6 its /48. IPv4-mapped IPv6
/// addresses are treated as the IPv4 address they carry.
pub fn anonymize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(anonymize_v4(v4)),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                IpAddr::V4(anonymize_v4(v4))
            } else {
                let [a, b, c, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0))
            }
        }
    }
}

fn anonymize_v4(ip: Ipv4Addr) -> Ipv4Addr {
    let [a, b, c, _] = ip.octets();
    Ipv4Addr::new(a, b, c, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_network_part() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        assert_eq!(anonymize(v4).to_string(), "203.0.113.0");
        let v6: IpAddr = "2001:db8:abcd:1234::1".parse().unwrap();
        assert_eq!(anonymize(v6).to_string(), "2001:db8:abcd::");
    }
}
