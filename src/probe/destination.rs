//! Which destinations probes and proxied requests may reach (SPEC.md section 4,
//! "Probe destinations"; SPEC-proxy.md section 6): loopback, link-local and cloud
//! metadata addresses are refused by address at connect time, metadata names before
//! any lookup.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::Url;

/// Which destination addresses a probe may connect to (SPEC section 4, "Probe
/// destinations"). Checked at connect time on the resolved addresses, and before each
/// request (redirects included) on IP-literal hosts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DestinationPolicy {
    /// Every address (the `check` CLI, run by a person on their own machine; tests).
    #[default]
    Any,
    /// Refuses link-local and cloud-metadata addresses but allows loopback (local
    /// demos and tests of the operator: `--allow-loopback-destinations`).
    AllowLoopback,
    /// Refuses loopback, link-local and cloud-metadata addresses (the running
    /// operator).
    Public,
}

// ---- destinations ---------------------------------------------------------------

/// Why an address or a name is not a probe destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Internal {
    Loopback,
    LinkLocal,
    Metadata,
}

impl Internal {
    fn describe(self) -> &'static str {
        match self {
            Internal::Loopback => "a loopback address",
            Internal::LinkLocal => "a link-local address",
            Internal::Metadata => "a cloud metadata address",
        }
    }
}

impl DestinationPolicy {
    /// Why the policy refuses a resolved address (for probes that connect themselves,
    /// such as the LDAP check of the identity controller), or `None`.
    pub fn refusal(self, host: &str, ip: IpAddr) -> Option<String> {
        let kind = classify_name(host).or_else(|| classify(ip))?;
        self.refuses(kind).then(|| {
            Refused {
                host: host.to_string(),
                kind,
            }
            .to_string()
        })
    }

    /// Whether the policy refuses that kind of address.
    fn refuses(self, kind: Internal) -> bool {
        match self {
            DestinationPolicy::Any => false,
            DestinationPolicy::AllowLoopback => kind != Internal::Loopback,
            DestinationPolicy::Public => true,
        }
    }
}

/// Cloud metadata endpoints, refused by address whatever name resolves to them. Some
/// are also link-local (169.254/16); others (100.100.100.200, 192.0.0.192,
/// 168.63.129.16) are refused only because they are listed here.
const METADATA_V4: &[Ipv4Addr] = &[
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack, DigitalOcean, ...
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task metadata
    Ipv4Addr::new(169, 254, 169, 253), // AWS DNS / time
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud
    Ipv4Addr::new(168, 63, 129, 16),   // Azure WireServer
];

const METADATA_V6: &[Ipv6Addr] = &[
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254), // AWS IMDS over IPv6
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23),  // AWS IPv6 DNS / time
];

/// Host names of metadata services (refused by name, before any lookup).
const METADATA_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
    "metadata.platformequinix.com",
];

fn classify_v4(ip: Ipv4Addr) -> Option<Internal> {
    if METADATA_V4.contains(&ip) {
        Some(Internal::Metadata)
    } else if ip.is_loopback() || ip.octets()[0] == 0 {
        // 0.0.0.0/8 ("this host") connects to the local host.
        Some(Internal::Loopback)
    } else if ip.is_link_local() {
        Some(Internal::LinkLocal)
    } else {
        None
    }
}

/// The kind of an internal address, IPv4 addresses embedded in IPv6 ones included
/// (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`).
fn classify(ip: IpAddr) -> Option<Internal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if METADATA_V6.contains(&v6) {
                return Some(Internal::Metadata);
            }
            if v6.is_loopback() || v6.is_unspecified() {
                return Some(Internal::Loopback);
            }
            let seg = v6.segments();
            if seg[0] & 0xffc0 == 0xfe80 {
                return Some(Internal::LinkLocal);
            }
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify_v4(v4);
            }
            let embedded = Ipv4Addr::new(
                (seg[6] >> 8) as u8,
                seg[6] as u8,
                (seg[7] >> 8) as u8,
                seg[7] as u8,
            );
            let compatible = seg[..6].iter().all(|s| *s == 0);
            let nat64 = seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6].iter().all(|s| *s == 0);
            if compatible || nat64 {
                return classify_v4(embedded);
            }
            None
        }
    }
}

fn classify_name(name: &str) -> Option<Internal> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    METADATA_NAMES
        .contains(&name.as_str())
        .then_some(Internal::Metadata)
}

/// A refused destination; the resolver's error, found again in the error chain.
#[derive(Debug)]
pub struct Refused {
    pub host: String,
    kind: Internal,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "destination refused: {} is {}, which may not be reached",
            self.host,
            self.kind.describe()
        )
    }
}

impl std::error::Error for Refused {}

/// The check before each request: an IP-literal host (which no resolver sees) or a
/// metadata host name. Names are checked again, on their addresses, by the resolver.
pub fn check_url(url: &Url, policy: DestinationPolicy) -> Result<(), Refused> {
    if policy == DestinationPolicy::Any {
        return Ok(());
    }
    let kind = match url.host() {
        Some(url::Host::Ipv4(ip)) => classify(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => classify(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => classify_name(name),
        None => None,
    };
    match kind {
        Some(kind) if policy.refuses(kind) => Err(Refused {
            host: url.host_str().unwrap_or_default().to_string(),
            kind,
        }),
        _ => Ok(()),
    }
}

/// The refusal in an error's chain (through `io::Error` wrappers), if the resolver
/// refused the host.
pub fn find_refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    use std::error::Error as StdError;
    let mut next: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = next {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return Some(r);
        }
        next = match s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => s.source(),
        };
    }
    None
}

impl DestinationPolicy {
    /// Resolves `host` with the system resolver and keeps only the addresses the
    /// policy allows: checked at connect time on what the name resolves to now (a
    /// name that resolves to 127.0.0.1, or is rebound to it, is refused).
    pub async fn resolve(
        self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let policy = self;
        let host = host.to_string();
        if let Some(kind) = classify_name(&host).filter(|k| policy.refuses(*k)) {
            return Err(Box::new(Refused { host, kind }));
        }
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .collect();
        let mut refused = None;
        let allowed: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|a| match classify(a.ip()) {
                Some(kind) if policy.refuses(kind) => {
                    refused.get_or_insert(kind);
                    false
                }
                _ => true,
            })
            .collect();
        match (allowed.is_empty(), refused) {
            (true, Some(kind)) => Err(Box::new(Refused { host, kind })),
            _ => Ok(allowed),
        }
    }
}

/// The policy as reqwest's resolver (probes; redirects go through it too).
pub(super) struct PolicyResolver {
    pub(super) policy: DestinationPolicy,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let allowed = policy.resolve(&host, 0).await?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
