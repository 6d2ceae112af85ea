//! A minimal HTTP/1.1 GET over a plain TCP stream, so `rollcall healthcheck` needs no HTTP client.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// True if `url` (`http://host:port/path`) answers with a 2xx status within 3 seconds.
pub async fn http_ok(url: &str) -> std::io::Result<bool> {
    let invalid =
        || std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not an http:// URL: {url}"));
    let rest = url.strip_prefix("http://").ok_or_else(invalid)?;
    let (authority, path) =
        rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let exchange = async {
        let mut stream = TcpStream::connect(authority).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 16];
        let read = stream.read(&mut head).await?;
        let status_line = String::from_utf8_lossy(&head[..read]).into_owned();
        Ok::<_, std::io::Error>(status_line.split(' ').nth(1).is_some_and(|code| code.starts_with('2')))
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "health check timed out")))
}
