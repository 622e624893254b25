//! Exposed and published ports: Docker's `80/tcp` notation, ranges, and what `-P`
//! publishes. Pure functions.
use berth_proto::{
    engine::v1::CreateContainerRequest, image::v1::ImageConfig, network::v1::PortBinding,
};

/// One container port with its protocol (`tcp`, `udp`, `sctp`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortProto {
    pub port: u32,
    pub proto: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port {value:?}: {reason}")]
pub struct PortError {
    pub value: String,
    pub reason: &'static str,
}

fn port_number(value: &str, s: &str) -> Result<u32, PortError> {
    let err = |reason| PortError {
        value: value.to_string(),
        reason,
    };
    let n: u32 = s.parse().map_err(|_| err("not a number"))?;
    if n == 0 || n > 65535 {
        return Err(err("must be between 1 and 65535"));
    }
    Ok(n)
}

/// Expands `80`, `53/udp`, `8000-8002/tcp` into one entry per port (tcp by default).
pub fn expand(value: &str) -> Result<Vec<PortProto>, PortError> {
    let (ports, proto) = match value.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (value, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(PortError {
            value: value.to_string(),
            reason: "protocol must be tcp, udp or sctp",
        });
    }
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (port_number(value, a)?, port_number(value, b)?),
        None => {
            let p = port_number(value, ports)?;
            (p, p)
        }
    };
    if end < start {
        return Err(PortError {
            value: value.to_string(),
            reason: "the range ends before it starts",
        });
    }
    Ok((start..=end)
        .map(|port| PortProto {
            port,
            proto: proto.clone(),
        })
        .collect())
}

/// The container's exposed ports, sorted and without duplicates: the image's EXPOSE, the
/// request's `--expose`, and every port published with `-p` (Docker exposes those too).
pub fn exposed(
    image: &ImageConfig,
    req_exposed: &[String],
    published: &[PortBinding],
) -> Result<Vec<PortProto>, PortError> {
    let mut out = Vec::new();
    for value in image.exposed_ports.iter().chain(req_exposed) {
        out.extend(expand(value)?);
    }
    out.extend(published.iter().map(|b| PortProto {
        port: b.container_port,
        proto: normalized_proto(&b.protocol),
    }));
    out.sort();
    out.dedup();
    Ok(out)
}

fn normalized_proto(p: &str) -> String {
    if p.is_empty() {
        "tcp".to_string()
    } else {
        p.to_ascii_lowercase()
    }
}

/// The bindings to ask the network service for: the request's `-p` bindings, and with
/// `-P` every exposed port not already published, on an ephemeral host port.
pub fn bindings(
    req: &CreateContainerRequest,
    image: &ImageConfig,
) -> Result<Vec<PortBinding>, PortError> {
    let mut out: Vec<PortBinding> = req
        .ports
        .iter()
        .map(|b| PortBinding {
            protocol: normalized_proto(&b.protocol),
            ..b.clone()
        })
        .collect();
    if req.publish_all {
        for p in exposed(image, &req.exposed_ports, &[])? {
            let taken = out
                .iter()
                .any(|b| b.container_port == p.port && b.protocol == p.proto);
            if !taken {
                out.push(PortBinding {
                    protocol: p.proto,
                    container_port: p.port,
                    host_ip: String::new(),
                    host_port: 0,
                });
            }
        }
    } else {
        // Fail on a malformed --expose even when nothing is published from it.
        exposed(image, &req.exposed_ports, &[])?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pp(port: u32, proto: &str) -> PortProto {
        PortProto {
            port,
            proto: proto.into(),
        }
    }

    #[test]
    fn single_ports_ranges_and_protocols() {
        assert_eq!(expand("80").unwrap(), vec![pp(80, "tcp")]);
        assert_eq!(expand("53/udp").unwrap(), vec![pp(53, "udp")]);
        assert_eq!(
            expand("8000-8002/tcp").unwrap(),
            vec![pp(8000, "tcp"), pp(8001, "tcp"), pp(8002, "tcp")]
        );
        assert_eq!(expand("80/TCP").unwrap(), vec![pp(80, "tcp")]);
        for bad in ["", "x", "0", "70000", "80/icmp", "9-8", "1-x/tcp"] {
            let e = expand(bad).unwrap_err();
            assert_eq!(e.value, bad);
            assert!(e.to_string().starts_with(&format!("invalid port {bad:?}")));
        }
    }

    #[test]
    fn exposed_merges_image_request_and_published_ports() {
        let image = ImageConfig {
            exposed_ports: vec!["80/tcp".into(), "53/udp".into()],
            ..Default::default()
        };
        let published = [PortBinding {
            protocol: "tcp".into(),
            container_port: 443,
            host_ip: String::new(),
            host_port: 8443,
        }];
        assert_eq!(
            exposed(&image, &["80".into(), "9000-9001".into()], &published).unwrap(),
            vec![
                pp(53, "udp"),
                pp(80, "tcp"),
                pp(443, "tcp"),
                pp(9000, "tcp"),
                pp(9001, "tcp")
            ]
        );
    }

    #[test]
    fn publish_all_adds_ephemeral_bindings_for_unpublished_ports() {
        let image = ImageConfig {
            exposed_ports: vec!["80/tcp".into(), "8000-8001/tcp".into()],
            ..Default::default()
        };
        let mut req = CreateContainerRequest {
            ports: vec![PortBinding {
                protocol: String::new(),
                container_port: 80,
                host_ip: "127.0.0.1".into(),
                host_port: 8080,
            }],
            exposed_ports: vec!["53/udp".into()],
            ..Default::default()
        };
        let only_p = bindings(&req, &image).unwrap();
        assert_eq!(only_p.len(), 1);
        assert_eq!(only_p[0].protocol, "tcp");

        req.publish_all = true;
        let all = bindings(&req, &image).unwrap();
        let summary: Vec<(u32, &str, u32)> = all
            .iter()
            .map(|b| (b.container_port, b.protocol.as_str(), b.host_port))
            .collect();
        assert_eq!(
            summary,
            vec![
                (80, "tcp", 8080),
                (53, "udp", 0),
                (8000, "tcp", 0),
                (8001, "tcp", 0)
            ]
        );

        req.exposed_ports = vec!["nope".into()];
        req.publish_all = false;
        assert!(bindings(&req, &image).is_err());
    }
}
