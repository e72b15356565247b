//! Static bearer tokens from a CSV file (`--token-auth-file`, kube-apiserver's format):
//! `token,user,uid,"group1,group2"` per line.

use std::collections::HashMap;
use std::path::Path;

use axum::http::request::Parts;

use super::authn::{Authenticator, AuthnError, UserInfo, bearer_token};

/// Tokens read from a file at start.
pub struct TokenFile {
    users: HashMap<String, UserInfo>,
}

impl TokenFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading token file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("token file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            if fields.len() < 3 {
                anyhow::bail!("line {}: want at least token,user,uid", i + 1);
            }
            let groups = fields
                .get(3)
                .map(|g| g.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_string).collect())
                .unwrap_or_default();
            let user = UserInfo { name: fields[1].clone(), uid: fields[2].clone(), groups, ..UserInfo::default() };
            users.insert(fields[0].clone(), user);
        }
        Ok(Self { users })
    }
}

/// Split one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[async_trait::async_trait]
impl Authenticator for TokenFile {
    async fn authenticate(&self, parts: &mut Parts) -> Result<Option<UserInfo>, AuthnError> {
        let Some(token) = bearer_token(parts) else {
            return Ok(None);
        };
        match self.users.get(token) {
            Some(u) => Ok(Some(u.clone())),
            None => Err(AuthnError("invalid bearer token".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kube_format() {
        let f = TokenFile::parse("# comment\nt1,alice,u1,\"system:masters,devs\"\nt2,bob,u2\n").unwrap();
        assert_eq!(f.users["t1"].groups, vec!["system:masters", "devs"]);
        assert_eq!(f.users["t2"].name, "bob");
        assert!(TokenFile::parse("only,two").is_err());
    }
}
