//! Rules shared by the kinds and their parts: names (RFC 1123 labels) and command
//! lists.

use super::decode::Decoder;
use super::node::Node;

/// Names of services, jobs and ports: lowercase letters, digits and `-`,
/// 1 to 63 long, starting and ending with a letter or digit (RFC 1123 label).
pub fn validate_name(name: &str) -> Result<(), crate::Invalid> {
    validate_name_text(name).map_err(crate::Invalid)
}

fn validate_name_text(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() || name.len() > 63 {
        return Err(format!("`{name}` must be 1 to 63 characters long"));
    }
    if !ok_chars || name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "`{name}` must be lowercase letters, digits and '-', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A command list: at least one element, the first non-empty.
pub(crate) fn decode_command(dec: &mut Decoder, node: &Node, field: &str) -> Option<Vec<String>> {
    let parts = dec.text_list(node, field)?;
    match parts.first() {
        None => {
            dec.error(node.at, field, "must name a program to run (an empty list)");
            None
        }
        Some((first, at)) if first.trim().is_empty() => {
            dec.error(*at, &format!("{field}[0]"), "the program name is empty");
            None
        }
        Some(_) => Some(parts.into_iter().map(|(s, _)| s).collect()),
    }
}
