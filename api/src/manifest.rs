//! Reading Function manifests from YAML text (one or many documents), with
//! errors that name the document, field and line, never a panic. Used by
//! `flint dev` and by the manifest checks in the test suite.

mod unknown;

use serde::Deserialize;

use crate::function::Function;
use crate::names::{API_VERSION, KIND};
use crate::validate::{ValidationErrors, validate};

/// Why a manifest could not be turned into valid Functions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML.
    #[error("document {document}: not valid YAML: {message}")]
    Syntax {
        /// 1-based position of the document in the file.
        document: usize,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The document is not a mapping with `apiVersion` and `kind`.
    #[error(
        "document {document}: not a Kubernetes object (expected a mapping with apiVersion, kind, metadata, spec)"
    )]
    NotAnObject {
        /// 1-based position of the document in the file.
        document: usize,
    },
    /// The document is some other kind of object.
    #[error("document {document}: kind: {found:?} is not a Function (expected kind: {KIND})")]
    WrongKind {
        /// 1-based position of the document in the file.
        document: usize,
        /// The kind found.
        found: String,
    },
    /// The document is a Function of an API version Flint does not serve.
    #[error(
        "document {document}: apiVersion: {found:?} is not served (expected apiVersion: {API_VERSION})"
    )]
    WrongApiVersion {
        /// 1-based position of the document in the file.
        document: usize,
        /// The apiVersion found.
        found: String,
    },
    /// A field is missing, has the wrong type or an unreadable value.
    #[error("document {document}: {message}")]
    Field {
        /// 1-based position of the document in the file.
        document: usize,
        /// The message, starting with the field path and ending with the line.
        message: String,
    },
    /// Fields Flint does not know (often a typo). Reported before any
    /// missing or mistyped field of the same document, since a typo in a
    /// required field's name also makes that field missing.
    #[error("document {document}: {}", join_unknown(fields))]
    UnknownFields {
        /// 1-based position of the document in the file.
        document: usize,
        /// The unknown fields, in document order.
        fields: Vec<UnknownField>,
    },
    /// The Function parsed but breaks the API's rules.
    #[error("function {name:?}: {errors}")]
    Invalid {
        /// The Function's name (empty when missing).
        name: String,
        /// Every problem found.
        errors: ValidationErrors,
    },
}

/// A field the Function schema does not have at its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    /// Where it is, e.g. `spec.scale.minn` or `spec.env[0].valu`.
    pub path: String,
    /// The known field at the same place whose name is closest, when it is
    /// close enough to be what was meant (e.g. `min`).
    pub suggestion: Option<String>,
}

impl std::fmt::Display for UnknownField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: unknown field", self.path)?;
        if let Some(name) = &self.suggestion {
            write!(f, "; did you mean `{name}`?")?;
        }
        Ok(())
    }
}

fn join_unknown(fields: &[UnknownField]) -> String {
    let all: Vec<String> = fields.iter().map(ToString::to_string).collect();
    all.join("; ")
}

/// Parses every document of `text` as a Function and validates each one.
/// Empty documents are skipped. The first problem found is returned.
pub fn parse_functions(text: &str) -> Result<Vec<Function>, ManifestError> {
    let mut functions = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = index + 1;
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| ManifestError::Syntax {
            document,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        check_type(document, &value)?;
        functions.push((document, unknown::unknown_fields(&value)));
    }
    // Second pass: typed, so field errors carry the field path and the line.
    let mut out = Vec::with_capacity(functions.len());
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = index + 1;
        let Some((_, fields)) = functions.iter_mut().find(|(d, _)| *d == document) else {
            continue;
        };
        if !fields.is_empty() {
            return Err(ManifestError::UnknownFields {
                document,
                fields: std::mem::take(fields),
            });
        }
        // A safety net for fields the schema leaves open but the types do
        // not: serde reports what it ignored.
        let mut unknown = Vec::new();
        let parsed: Result<Function, _> = serde_ignored::deserialize(doc, |path| {
            let path = field_path(&path.to_string());
            // apiVersion and kind were checked in the first pass.
            if path != "apiVersion" && path != "kind" {
                unknown.push(UnknownField {
                    path,
                    suggestion: None,
                });
            }
        });
        if !unknown.is_empty() {
            return Err(ManifestError::UnknownFields {
                document,
                fields: unknown,
            });
        }
        let function = parsed.map_err(|e| ManifestError::Field {
            document,
            message: e.to_string(),
        })?;
        validate(&function).map_err(|errors| ManifestError::Invalid {
            name: function.metadata.name.clone().unwrap_or_default(),
            errors,
        })?;
        out.push(function);
    }
    Ok(out)
}

/// Every document of `text` that is valid YAML and not empty, in order;
/// the others are skipped. For reading objects besides Functions (such as
/// the Secrets and ConfigMaps `flint dev` takes environment variables from).
pub fn documents(text: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|doc| serde_yaml::Value::deserialize(doc).ok())
        .filter(|value| !value.is_null())
        .collect()
}

/// Turns serde_ignored's `spec.env.0.name` into `spec.env[0].name`.
fn field_path(dotted: &str) -> String {
    let mut out = String::with_capacity(dotted.len() + 2);
    for segment in dotted.split('.') {
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(segment);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

fn check_type(document: usize, value: &serde_yaml::Value) -> Result<(), ManifestError> {
    let map = value
        .as_mapping()
        .ok_or(ManifestError::NotAnObject { document })?;
    let field = |key: &str| map.get(key).and_then(serde_yaml::Value::as_str);
    let kind = field("kind").ok_or(ManifestError::NotAnObject { document })?;
    if kind != KIND {
        return Err(ManifestError::WrongKind {
            document,
            found: kind.to_owned(),
        });
    }
    let api_version = field("apiVersion").unwrap_or_default();
    if api_version != API_VERSION {
        return Err(ManifestError::WrongApiVersion {
            document,
            found: api_version.to_owned(),
        });
    }
    Ok(())
}

impl ManifestError {
    /// The field paths this error is about, for tests and tooling.
    pub fn paths(&self) -> Vec<String> {
        match self {
            Self::Invalid { errors, .. } => errors.0.iter().map(|e| e.path.clone()).collect(),
            Self::UnknownFields { fields, .. } => fields.iter().map(|f| f.path.clone()).collect(),
            Self::WrongKind { .. } => vec!["kind".into()],
            Self::WrongApiVersion { .. } => vec!["apiVersion".into()],
            Self::Field { message, .. } => message
                .split(": ")
                .next()
                .map(|p| vec![p.to_owned()])
                .unwrap_or_default(),
            Self::Syntax { .. } | Self::NotAnObject { .. } => Vec::new(),
        }
    }
}
