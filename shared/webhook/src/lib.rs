//! Standard Webhooks (<https://www.standardwebhooks.com>): how an event is signed, and which
//! addresses a webhook may reach.
//!
//! A webhook URL whose host is, or resolves to, a loopback, private, link-local, unique-local,
//! unspecified, shared (carrier-grade NAT), multicast or cloud-metadata address is refused —
//! at submission ([`check_destination`]) and again at delivery, where [`delivery_client`]'s
//! resolver drops such addresses from every lookup, so the connection goes only to an address
//! that passed the check and DNS rebinding cannot get in. `STORYFORGE_WEBHOOK_ALLOW_PRIVATE`
//! turns the rule off.
//!
//! # Layout
//! One file: [`signature`] (HMAC-SHA256 over id, timestamp and body), [`check_destination`] and
//! [`literal_refusal`] (the address rule at submission), [`delivery_client`] (the HTTP client
//! whose resolver applies the rule at delivery).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sha2::Sha256;

/// How long a receiver gets to answer one delivery.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The HMAC key of a secret: the decoded bytes of `whsec_<base64>`, else the secret's bytes.
pub fn signing_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|encoded| BASE64.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The `webhook-signature` header: `v1,` and the base64 HMAC-SHA256 of
/// `{webhook-id}.{webhook-timestamp}.{body}`.
pub fn signature(secret: &str, event_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&signing_key(secret))
        .expect("HMAC-SHA256 takes a key of any length");
    mac.update(format!("{event_id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// Why a webhook may not reach `ip`, or `None` when it may.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("a cloud metadata address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if a == 0 {
        Some("an unspecified address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared (carrier-grade NAT) address")
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some("a multicast or broadcast address")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some("a cloud metadata address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_unique_local() {
        Some("a unique-local address")
    } else if ip.is_unicast_link_local() {
        Some("a link-local address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else {
        None
    }
}

/// Refuses a webhook URL whose host is, or resolves to, a forbidden address. A host that does
/// not resolve now is accepted: its deliveries fail and are retried, and checked again then.
pub async fn check_destination(url: &str) -> Result<(), String> {
    let url = Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    let host = url.host_str().ok_or("has no host")?;
    if let Some(reason) = literal_refusal(&url) {
        return Err(reason);
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let Ok(addrs) = tokio::net::lookup_host((host, port)).await else {
        return Ok(());
    };
    for addr in addrs {
        if let Some(reason) = forbidden(addr.ip()) {
            return Err(format!(
                "resolves to {reason} ({}); webhooks may not reach inside the network unless STORYFORGE_WEBHOOK_ALLOW_PRIVATE=true",
                addr.ip()
            ));
        }
    }
    Ok(())
}

/// Why a URL whose host is an IP address literal is refused; such hosts are not looked up, so
/// the resolver never sees them.
pub fn literal_refusal(url: &Url) -> Option<String> {
    let ip = match url.host()? {
        url::Host::Ipv4(ip) => IpAddr::V4(ip),
        url::Host::Ipv6(ip) => IpAddr::V6(ip),
        url::Host::Domain(_) => return None,
    };
    forbidden(ip)
        .map(|reason| format!("is {reason} ({ip}); webhooks may not reach inside the network unless STORYFORGE_WEBHOOK_ALLOW_PRIVATE=true"))
}

/// A DNS resolver that drops forbidden addresses, so a connection can only go to an address
/// that passed the rule — the check and the connection use the same lookup.
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|addr| forbidden(addr.ip()).is_none())
                .collect();
            if allowed.is_empty() {
                let reason = found
                    .first()
                    .and_then(|addr| forbidden(addr.ip()))
                    .unwrap_or("no address");
                return Err(format!("{host} resolves only to {reason}; refused").into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client deliveries use: a 10 s limit per attempt, no redirects (a redirect is a
/// failed attempt), and — unless private addresses are allowed — the guarded resolver.
pub fn delivery_client(allow_private: bool, user_agent: &str) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .user_agent(user_agent)
        .timeout(DELIVERY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    let builder = if allow_private {
        builder
    } else {
        builder.dns_resolver(Arc::new(GuardedResolver))
    };
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_addresses_are_named() {
        for (ip, reason) in [
            ("127.0.0.1", "a loopback address"),
            ("10.1.2.3", "a private address"),
            ("172.16.0.1", "a private address"),
            ("192.168.1.1", "a private address"),
            ("169.254.169.254", "a cloud metadata address"),
            ("169.254.1.1", "a link-local address"),
            ("0.0.0.0", "an unspecified address"),
            ("100.64.0.1", "a shared (carrier-grade NAT) address"),
            ("::1", "a loopback address"),
            ("::", "an unspecified address"),
            ("fd12::1", "a unique-local address"),
            ("fe80::1", "a link-local address"),
            ("::ffff:127.0.0.1", "a loopback address"),
            ("fd00:ec2::254", "a cloud metadata address"),
        ] {
            assert_eq!(forbidden(ip.parse().unwrap()), Some(reason), "{ip}");
        }
        for ip in ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert_eq!(forbidden(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn whsec_secrets_sign_with_their_decoded_bytes() {
        // The Standard Webhooks specification's own example.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(signing_key("plain"), b"plain".to_vec());
    }
}
