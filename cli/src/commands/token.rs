//! `orion token create|list|revoke`.

use anyhow::bail;
use orion_api::security::{CreateToken, CreatedToken, TokenList};

use crate::args::{Output, TokenCommand};
use crate::output::{human_duration, print, Table};
use orion_client::Client;

/// Parses `90s`, `30m`, `1h`, `7d` or a bare number of seconds.
pub fn parse_ttl(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = match num.parse() {
        Ok(n) => n,
        Err(_) => bail!("ttl {s:?}: expected a number and a unit, such as 30m, 1h or 7d"),
    };
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => bail!("ttl {s:?}: unknown unit {other:?}; use s, m, h or d"),
    };
    match n.checked_mul(mult) {
        Some(0) | None => bail!("ttl {s:?} is out of range"),
        Some(v) => Ok(v),
    }
}

pub async fn run(client: &Client, output: Output, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            role,
            ttl,
            description,
        } => {
            let req = CreateToken {
                role,
                ttl_seconds: parse_ttl(&ttl)?,
                description,
            };
            let created: CreatedToken = client.create_token(&req).await?;
            match output {
                Output::Json | Output::Yaml => print(output, &created, |_| Table::new(&[]))?,
                Output::Table | Output::Wide => {
                    // The token alone on stdout, so `$(orion token create …)` is it;
                    // its id (to list or revoke it) on stderr.
                    println!("{}", created.token);
                    let r = &created.record;
                    eprintln!(
                        "token id {} ({}, expires in {}); revoke it with `orion token revoke {}`",
                        r.id,
                        r.role,
                        human_duration(r.expires_at.saturating_sub(r.created_at)),
                        r.id
                    );
                }
            }
        }
        TokenCommand::List => {
            let list: TokenList = client.tokens().await?;
            print(output, &list, |l| {
                let now = orion_tls::token::now();
                let mut t = Table::new(&["ID", "ROLE", "EXPIRES IN", "STATE", "DESCRIPTION"]);
                for r in &l.tokens {
                    let state = if r.revoked {
                        "revoked"
                    } else if r.used {
                        "used"
                    } else if r.expires_at <= now {
                        "expired"
                    } else {
                        "valid"
                    };
                    t.row(vec![
                        r.id.clone(),
                        r.role.clone(),
                        human_duration(r.expires_at.saturating_sub(now)),
                        state.into(),
                        r.description.clone(),
                    ]);
                }
                t
            })?;
        }
        TokenCommand::Revoke { id } => {
            client.revoke_token(&id).await?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttls_parse_and_junk_is_refused() {
        assert_eq!(parse_ttl("90").ok(), Some(90));
        assert_eq!(parse_ttl("30m").ok(), Some(1800));
        assert_eq!(parse_ttl("24h").ok(), Some(86_400));
        assert_eq!(parse_ttl("7d").ok(), Some(604_800));
        for bad in ["", "h", "1y", "0s", "-1h", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
