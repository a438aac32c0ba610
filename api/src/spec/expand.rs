//! `${NAME}` expansion in commands, from the environment a replica gets.

use std::collections::BTreeMap;

/// Whether `name` is a valid environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces every `${NAME}` with `env[NAME]`; `$$` is a literal `$`, and a `$`
/// followed by anything else is kept as it is. An unknown name, an invalid name
/// or an unclosed `${` is an error naming it.
pub fn expand(template: &str, env: &BTreeMap<String, String>) -> Result<String, crate::Invalid> {
    expand_text(template, env).map_err(crate::Invalid)
}

fn expand_text(template: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let close = tail
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{template}`"))?;
            let name = &tail[..close];
            if !is_env_name(name) {
                return Err(format!("invalid variable name `{name}` in `{template}`"));
            }
            let value = env
                .get(name)
                .ok_or_else(|| format!("unknown variable `{name}` in `{template}`"))?;
            out.push_str(value);
            rest = &tail[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The `${NAME}` names a template refers to, in order (`$$` escapes skipped).
/// Malformed references are left to [`expand`] to report.
pub fn referenced_names(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(close) = tail.find('}') else { break };
            names.push(tail[..close].to_owned());
            rest = &tail[close + 1..];
        } else {
            rest = after;
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("PORT".to_owned(), "8080".to_owned()),
            ("HOST".to_owned(), "0.0.0.0".to_owned()),
        ])
    }

    #[test]
    fn expands_names_and_escapes() {
        let env = env();
        assert_eq!(expand("${PORT}", &env).as_deref(), Ok("8080"));
        assert_eq!(
            expand("${HOST}:${PORT}", &env).as_deref(),
            Ok("0.0.0.0:8080")
        );
        assert_eq!(expand("$${PORT}", &env).as_deref(), Ok("${PORT}"));
        assert_eq!(
            expand("cost: $5 and $$", &env).as_deref(),
            Ok("cost: $5 and $")
        );
        assert_eq!(expand("plain", &env).as_deref(), Ok("plain"));
        assert_eq!(expand("é${PORT}é", &env).as_deref(), Ok("é8080é"));
    }

    #[test]
    fn errors_name_the_problem() {
        let env = env();
        let err = expand("--port=${MISSING}", &env).expect_err("should fail");
        assert!(err.contains("`MISSING`"), "{err}");
        assert!(expand("${PORT", &env)
            .expect_err("should fail")
            .contains("unclosed"));
        assert!(expand("${1X}", &env)
            .expect_err("should fail")
            .contains("invalid"));
        assert!(expand("${}", &env).is_err());
    }

    #[test]
    fn referenced_names_skip_escapes() {
        assert_eq!(referenced_names("${A}:$${B}:${C}"), ["A", "C"]);
        assert!(referenced_names("plain $5").is_empty());
        assert!(referenced_names("${A").is_empty());
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("PORT"));
        assert!(is_env_name("_x1"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name("A-B"));
        assert!(!is_env_name(""));
    }
}
