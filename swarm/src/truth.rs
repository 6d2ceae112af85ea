//! Reads the true total from every node's `GET /api/presence`.

use std::time::Duration;

use serde::Deserialize;

/// How long one presence request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Deserialize)]
struct PresenceBody {
    users: i64,
    /// Distinct users (signed users once, anonymous connections each); absent on old nodes.
    #[serde(default)]
    unique_users: Option<i64>,
}

/// What the nodes say the total is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Truth {
    /// Every URL answered with this total.
    Agreed(i64),
    /// The URLs answered different totals, or some did not answer (`None`).
    Disagree(Vec<Option<i64>>),
}

impl Truth {
    /// The agreed total, if any.
    pub fn value(&self) -> Option<i64> {
        match self {
            Truth::Agreed(total) => Some(*total),
            Truth::Disagree(_) => None,
        }
    }
}

/// A reader of the presence endpoints.
#[derive(Debug, Clone)]
pub struct Presence {
    client: reqwest::Client,
    urls: Vec<String>,
}

impl Presence {
    /// A reader of `urls` (each `http://host:port/api/presence`).
    pub fn new(urls: Vec<String>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?;
        Ok(Self { client, urls })
    }

    /// Reads every URL at once; they must agree.
    pub async fn truth(&self) -> Truth {
        let reads = self.urls.iter().map(|url| async { Some(self.read(url).await?.users) });
        agree(futures_util::future::join_all(reads).await)
    }

    /// Every URL's `unique_users`, read at once; they must agree.
    pub async fn unique_users(&self) -> Truth {
        let reads = self.urls.iter().map(|url| async { self.read(url).await?.unique_users });
        agree(futures_util::future::join_all(reads).await)
    }

    async fn read(&self, url: &str) -> Option<PresenceBody> {
        let response = self.client.get(url).send().await.ok()?.error_for_status().ok()?;
        response.json::<PresenceBody>().await.ok()
    }
}

/// `Agreed` when every total is present and equal.
fn agree(totals: Vec<Option<i64>>) -> Truth {
    match totals.first() {
        Some(Some(first)) if totals.iter().all(|total| *total == Some(*first)) => Truth::Agreed(*first),
        _ => Truth::Disagree(totals),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_must_agree() {
        assert_eq!(agree(vec![Some(3), Some(3)]), Truth::Agreed(3));
        assert_eq!(agree(vec![Some(3), Some(4)]).value(), None);
        assert_eq!(agree(vec![Some(3), None]).value(), None);
        assert_eq!(agree(vec![]).value(), None);
    }

    #[test]
    fn body_ignores_other_fields() {
        let body: PresenceBody = serde_json::from_str(r#"{"users":7,"node":"a"}"#).expect("ok");
        assert_eq!(body.users, 7);
    }
}
