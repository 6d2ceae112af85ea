//! Targets, source addresses, the file limit and the worker count.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, bail};

use super::messages::Target;

/// Clients one worker process holds by default (the hard file limit is 20,000 here).
pub const CLIENTS_PER_WORKER: u64 = 15_000;
/// Files a worker keeps for itself besides its client sockets.
const SPARE_FILES: u64 = 200;

/// Resolves each `--url` (http:// or ws://, with or without a path) into a [`Target`].
pub async fn resolve_targets(urls: &[String]) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::with_capacity(urls.len());
    for raw in urls {
        targets.push(resolve_target(raw).await.with_context(|| format!("--url {raw}"))?);
    }
    Ok(targets)
}

async fn resolve_target(raw: &str) -> anyhow::Result<Target> {
    let url = reqwest::Url::parse(raw).context("not a URL")?;
    if !matches!(url.scheme(), "http" | "ws") {
        bail!("only http:// and ws:// URLs are supported (no TLS)");
    }
    let host = url.host_str().context("URL has no host")?.to_owned();
    let port = url.port_or_known_default().context("URL has no port")?;
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .context("cannot resolve host")?
        .next()
        .context("host resolves to no address")?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    let base = url.path().trim_end_matches('/');
    Ok(Target {
        ws_url: format!("ws://{authority}{base}/socket.io/?EIO=4&transport=websocket"),
        addr,
        presence_url: format!("http://{authority}{base}/api/presence"),
    })
}

/// Parses `--source-ips`: comma-separated addresses or IPv4 ranges `A-B`.
pub fn parse_source_ips(spec: &str) -> anyhow::Result<Vec<IpAddr>> {
    let mut ips = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        match item.split_once('-') {
            Some((first, last)) => {
                let first: Ipv4Addr =
                    first.trim().parse().with_context(|| format!("bad source address range {item}"))?;
                let last: Ipv4Addr =
                    last.trim().parse().with_context(|| format!("bad source address range {item}"))?;
                if u32::from(last) < u32::from(first) || u32::from(last) - u32::from(first) > 65_535 {
                    bail!("bad source address range {item}");
                }
                ips.extend((u32::from(first)..=u32::from(last)).map(|n| IpAddr::V4(n.into())));
            }
            None => ips.push(item.parse().with_context(|| format!("bad source address {item}"))?),
        }
    }
    Ok(ips)
}

/// Default source addresses: 127.0.0.2..=127.0.0.250 when every target is IPv4 loopback,
/// none (the kernel picks) otherwise.
pub fn default_source_ips(targets: &[Target]) -> Vec<IpAddr> {
    let all_loopback =
        targets.iter().all(|target| matches!(target.addr.ip(), IpAddr::V4(ip) if ip.is_loopback()));
    if !all_loopback {
        return Vec::new();
    }
    (2..=250u8).map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))).collect()
}

/// The share of `ips` worker `index` of `workers` binds to (all of them if too few).
pub fn ips_for_worker(ips: &[IpAddr], index: usize, workers: usize) -> Vec<IpAddr> {
    if ips.len() < workers {
        return ips.to_vec();
    }
    ips.iter().skip(index).step_by(workers).copied().collect()
}

/// Raises the soft open-files limit to the hard one; returns the new soft limit.
pub fn raise_file_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024)
}

/// How many clients one worker may hold under a file limit.
pub fn clients_per_worker_limit(file_limit: u64) -> u64 {
    file_limit.saturating_sub(SPARE_FILES).max(1)
}

/// Chooses the worker count: `requested`, or enough for [`CLIENTS_PER_WORKER`] each; fails when
/// a worker would need more sockets than the file limit allows.
pub fn choose_workers(clients: u64, requested: Option<usize>, file_limit: u64) -> anyhow::Result<usize> {
    let per_worker = CLIENTS_PER_WORKER.min(clients_per_worker_limit(file_limit));
    let workers = match requested {
        Some(0) => bail!("--workers must be at least 1"),
        Some(workers) => workers,
        None => clients.div_ceil(per_worker).max(1) as usize,
    };
    let largest_share = clients.div_ceil(workers as u64);
    if largest_share > clients_per_worker_limit(file_limit) {
        bail!(
            "{largest_share} clients per worker exceed the open-files limit {file_limit}; \
             use more --workers"
        );
    }
    Ok(workers)
}

/// Splits `total` into `parts` shares that differ by at most one.
pub fn split(total: u64, parts: usize) -> Vec<u64> {
    let parts = parts.max(1) as u64;
    (0..parts).map(|part| total / parts + u64::from(part < total % parts)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ip_lists_and_ranges() {
        let ips = parse_source_ips("127.0.0.2-127.0.0.4, 10.0.0.1").expect("parses");
        assert_eq!(ips.len(), 4);
        assert_eq!(ips[3], IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(parse_source_ips("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_source_ips("nonsense").is_err());
        assert_eq!(ips_for_worker(&ips, 1, 2).len(), 2);
        assert_eq!(ips_for_worker(&ips[..1], 1, 2).len(), 1);
    }

    #[test]
    fn workers_follow_the_file_limit() {
        assert_eq!(choose_workers(50_000, None, 20_000).expect("fits"), 4);
        assert_eq!(choose_workers(10, None, 20_000).expect("fits"), 1);
        assert_eq!(choose_workers(10_000, None, 1024).expect("fits"), 13);
        assert!(choose_workers(50_000, Some(2), 20_000).is_err());
        assert!(choose_workers(5, Some(0), 20_000).is_err());
    }

    #[test]
    fn split_is_fair() {
        assert_eq!(split(10, 3), vec![4, 3, 3]);
        assert_eq!(split(2, 4), vec![1, 1, 0, 0]);
    }

    #[tokio::test]
    async fn urls_become_targets() {
        let targets = resolve_targets(&["http://127.0.0.1:3001/".to_owned()]).await.expect("ok");
        assert_eq!(targets[0].ws_url, "ws://127.0.0.1:3001/socket.io/?EIO=4&transport=websocket");
        assert_eq!(targets[0].presence_url, "http://127.0.0.1:3001/api/presence");
        assert_eq!(default_source_ips(&targets).len(), 249);
        assert!(resolve_targets(&["https://127.0.0.1/".to_owned()]).await.is_err());
    }
}
