//! `parse_documents`: a whole `orion.yaml` (one or more `---` separated documents)
//! into typed resources, or every problem found in it.

use std::collections::BTreeMap;

use super::decode::Decoder;
use super::error::{SpecError, SpecErrors};
use super::job::decode_job;
use super::node::{read_documents, Node, Pos, Value};
use super::service::decode_service;
use super::Resource;

/// The `kind`s a document may have.
pub const KINDS: &[&str] = &["Service", "Job"];

/// Most resources one apply may carry, over all its files. They go into one Raft
/// entry, applied as one; a hundred services is more than one application's
/// folder of manifests holds, and keeps that entry, its apply on every peer and
/// the answer listing every resource small. Larger sets are applied in groups.
pub const MAX_RESOURCES_PER_APPLY: usize = 100;

/// The error for an apply of `count` resources, if that is over the limit.
pub fn check_apply_size(count: usize) -> Result<(), crate::Invalid> {
    check_apply_size_text(count).map_err(crate::Invalid)
}

fn check_apply_size_text(count: usize) -> Result<(), String> {
    if count > MAX_RESOURCES_PER_APPLY {
        return Err(format!(
            "{count} resources in one apply is above the limit of \
             {MAX_RESOURCES_PER_APPLY}; apply them in smaller groups"
        ));
    }
    Ok(())
}

/// Parses every document of `text`. `file` only names the file in errors.
///
/// Either every resource comes back, in file order, or none does: one bad
/// document fails the whole file, and the error lists every problem found in
/// every document, each with its `file:line:column` and field. YAML syntax
/// errors stop parsing at the first one. Empty documents are skipped.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Resource>, SpecErrors> {
    let docs = read_documents(text).map_err(|e| syntax_error(file, &e))?;
    let mut dec = Decoder::new(file);
    let mut resources = Vec::with_capacity(docs.len());
    // (kind, name) → line of the first document using it.
    let mut seen: BTreeMap<(&'static str, String), Pos> = BTreeMap::new();
    for doc in &docs {
        let Some((resource, name_at)) = decode_document(&mut dec, doc) else {
            continue;
        };
        let key = (resource.kind(), resource.name().to_owned());
        if let Some(first) = seen.get(&key) {
            dec.error(
                name_at,
                "name",
                format!(
                    "duplicate {} name `{}` (first defined at line {})",
                    key.0, key.1, first.line
                ),
            );
            continue;
        }
        seen.insert(key, name_at);
        resources.push(resource);
    }
    if dec.errors.is_empty() {
        Ok(resources)
    } else {
        let mut errors = dec.errors;
        errors.sort_by_key(|e| (e.line, e.column));
        Err(SpecErrors(errors))
    }
}

fn decode_document(dec: &mut Decoder, doc: &Node) -> Option<(Resource, Pos)> {
    let Value::Map(entries) = &doc.value else {
        dec.error(
            doc.at,
            "",
            format!(
                "expected a resource (a mapping with `kind`), found {}",
                doc.value.describe()
            ),
        );
        return None;
    };
    let Some((_, kind)) = entries.iter().find(|(k, _)| k.name == "kind") else {
        dec.error(
            doc.at,
            "kind",
            format!("missing required field; expected one of {}", kind_list()),
        );
        return None;
    };
    let kind_name = dec.string(kind, "kind")?;
    match kind_name.as_str() {
        "Service" => decode_service(dec, doc).map(|(s, at)| (Resource::Service(s), at)),
        "Job" => decode_job(dec, doc).map(|(j, at)| (Resource::Job(j), at)),
        other => {
            dec.error(
                kind.at,
                "kind",
                format!("unknown kind `{other}`, expected one of {}", kind_list()),
            );
            None
        }
    }
}

fn kind_list() -> String {
    KINDS
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A YAML error from the parser, with its position when it has one.
fn syntax_error(file: &str, err: &serde_saphyr::Error) -> SpecErrors {
    let (line, column) = err.location().map_or((0, 0), |loc| {
        (
            usize::try_from(loc.line()).unwrap_or(usize::MAX),
            usize::try_from(loc.column()).unwrap_or(usize::MAX),
        )
    });
    SpecErrors(vec![SpecError {
        file: file.to_owned(),
        line,
        column,
        field: String::new(),
        message: err.without_snippet().to_string(),
    }])
}
