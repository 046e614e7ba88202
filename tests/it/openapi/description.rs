//! A forge's API description, read once per test binary: GitHub's OpenAPI document (npm
//! `@octokit/openapi`) as it is, and Gitea's swagger as gitea-js carries it: TypeScript
//! types generated from it (interfaces for the schemas, a `@request METHOD:/path` comment
//! and a `Promise<HttpResponse<Type, ...>>` per operation), turned into the same shape
//! (`paths`, `components.schemas`) so that one checker reads both.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::fields::Field;

/// One forge's API description.
pub struct Description {
    pub name: &'static str,
    doc: Value,
}

/// Where `npm ci` in tests/octokit puts `relative`.
fn installed(relative: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/octokit/node_modules").join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run `(cd tests/octokit && npm ci --no-audit --no-fund --ignore-scripts)` or `make test`",
        path.display()
    );
    path
}

impl Description {
    /// A description made from a document with `paths` and `components.schemas`.
    pub fn new(name: &'static str, doc: Value) -> Description {
        Description { name, doc }
    }

    /// GitHub's REST API (api.github.com), from the pinned `@octokit/openapi`.
    pub fn github() -> &'static Description {
        static GITHUB: OnceLock<Description> = OnceLock::new();
        GITHUB.get_or_init(|| {
            let path = installed("@octokit/openapi/generated/api.github.com.json");
            let doc = serde_json::from_slice(&std::fs::read(path).unwrap()).expect("GitHub's OpenAPI JSON");
            Description::new("GitHub's OpenAPI description", doc)
        })
    }

    /// Gitea's REST API, from the pinned gitea-js's types.
    pub fn gitea() -> &'static Description {
        static GITEA: OnceLock<Description> = OnceLock::new();
        GITEA.get_or_init(|| {
            let text = std::fs::read_to_string(installed("gitea-js/dist/index.d.ts")).unwrap();
            Description::new("Gitea's swagger (gitea-js)", from_typescript(&text))
        })
    }

    /// The operation `method template`, or what is wrong with asking for it.
    pub fn operation(&self, method: &str, template: &str) -> Result<&Value, String> {
        let Some(path) = self.doc["paths"].get(template) else {
            let alike: Vec<&String> = self.doc["paths"]
                .as_object()
                .map(|paths| paths.keys().filter(|k| shape(k) == shape(template)).collect())
                .unwrap_or_default();
            return Err(format!("{} has no path {template} (paths of the same shape: {alike:?})", self.name));
        };
        path.get(method.to_ascii_lowercase()).ok_or_else(|| {
            let methods: Vec<&String> = path.as_object().map(|p| p.keys().collect()).unwrap_or_default();
            format!("{} has no {method} on {template} (it has {methods:?})", self.name)
        })
    }

    /// The JSON schema of the success answer of `method template`; `None` when it has no body.
    pub fn success_schema(&self, method: &str, template: &str) -> Result<Option<&Value>, String> {
        let responses =
            self.operation(method, template)?["responses"].as_object().cloned().unwrap_or_default();
        let Some(status) = responses.keys().filter(|s| s.starts_with('2')).min().cloned() else {
            return Err(format!("{} lists no success answer of {method} {template}", self.name));
        };
        let response =
            self.resolve(&self.doc["paths"][template][method.to_ascii_lowercase()]["responses"][&status]);
        let schema = response["content"].as_object().and_then(|c| c.values().find_map(|m| m.get("schema")));
        Ok(schema)
    }

    /// The fields of `fields` (at `at`) that `schema` does not have, as dotted paths.
    pub fn missing_fields(&self, schema: &Value, fields: &[Field], at: &str) -> Vec<String> {
        let mut missing = Vec::new();
        for field in fields {
            let path = if at.is_empty() { field.name.clone() } else { format!("{at}.{}", field.name) };
            match self.property(schema, &field.name) {
                None => missing.push(path),
                Some(inner) => {
                    for schema in inner {
                        missing.extend(self.missing_fields(schema, &field.fields, &path));
                    }
                }
            }
        }
        missing.dedup();
        missing
    }

    /// Follows `$ref`s to the schema (or response) they name.
    fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        while let Some(reference) = value.get("$ref").and_then(Value::as_str) {
            value = self.doc.pointer(reference.trim_start_matches('#')).unwrap_or(&Value::Null);
        }
        value
    }

    /// Whether `schema` describes an object or list (not a bare string, number or null).
    fn is_structured(&self, schema: &Value) -> bool {
        let schema = self.resolve(schema);
        ["properties", "items", "allOf", "oneOf", "anyOf"].iter().any(|k| schema.get(k).is_some())
    }

    /// The schemas of property `name` of `schema` (of its items, for a list), or `None` when
    /// it has none. Every object variant of a `oneOf`/`anyOf` must have it; any part of an
    /// `allOf` may.
    fn property<'a>(&'a self, schema: &'a Value, name: &str) -> Option<Vec<&'a Value>> {
        let schema = self.resolve(schema);
        if let Some(items) = schema.get("items") {
            return self.property(items, name);
        }
        let mut found: Vec<&Value> = schema.get("properties").and_then(|p| p.get(name)).into_iter().collect();
        for part in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            found.extend(self.property(part, name).unwrap_or_default());
        }
        for key in ["oneOf", "anyOf"] {
            let variants = schema.get(key).and_then(Value::as_array).into_iter().flatten();
            let objects: Vec<&Value> = variants.filter(|v| self.is_structured(v)).collect();
            if objects.is_empty() {
                continue;
            }
            for variant in objects {
                found.extend(self.property(variant, name)?);
            }
        }
        (!found.is_empty()).then_some(found)
    }
}

/// A path template with its parameters unnamed.
fn shape(template: &str) -> Vec<&str> {
    template.split('/').map(|s| if s.starts_with('{') { "{}" } else { s }).collect()
}

/// gitea-js's generated TypeScript as an OpenAPI-shaped document.
fn from_typescript(text: &str) -> Value {
    let lines: Vec<&str> = text.lines().collect();
    let aliases: BTreeMap<&str, &str> =
        lines.iter().filter_map(|l| l.strip_prefix("type ")?.strip_suffix(';')?.split_once(" = ")).collect();
    let names: HashSet<&str> =
        lines.iter().filter_map(|l| l.strip_prefix("interface ")?.strip_suffix(" {")).collect();
    let types = Types { aliases, names };
    let mut schemas = Map::new();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(name) = line.strip_prefix("interface ").and_then(|l| l.strip_suffix(" {")) {
            schemas.insert(name.to_owned(), types.interface(&lines[i + 1..]));
        }
        if let Some((method, path)) = line.trim().strip_prefix("* @request ").and_then(|r| r.split_once(':'))
        {
            let answer = lines[i..].iter().find_map(|l| answer_type(l)).unwrap_or("void");
            let schema = types.schema(answer);
            let operation = json!({ "responses": { "200": { "content": { "application/json": { "schema": schema } } } } });
            paths.entry(path.to_owned()).or_default().insert(method.to_ascii_lowercase(), operation);
        }
    }
    json!({ "paths": paths, "components": { "schemas": schemas } })
}

/// `Type` of a line ending in `Promise<HttpResponse<Type, Error>>;`.
fn answer_type(line: &str) -> Option<&str> {
    let start = line.find("Promise<HttpResponse<")? + "Promise<HttpResponse<".len();
    let inner = line[start..].strip_suffix(">>;")?;
    Some(inner[..inner.rfind(", ")?].trim())
}

/// The interface and alias names of the generated TypeScript.
struct Types<'t> {
    aliases: BTreeMap<&'t str, &'t str>,
    names: HashSet<&'t str>,
}

impl Types<'_> {
    /// The schema of an interface whose body starts at `body`: `name?: Type;` lines at one
    /// indent, up to the closing brace.
    fn interface(&self, body: &[&str]) -> Value {
        let mut properties = Map::new();
        for line in body.iter().take_while(|l| **l != "}") {
            let Some(field) = line.strip_prefix("    ").filter(|f| !f.starts_with([' ', '/', '*'])) else {
                continue;
            };
            let Some((name, ty)) = field.split_once(": ") else { continue };
            let name = name.trim_end_matches('?').trim_matches('\'');
            properties.insert(name.to_owned(), self.schema(ty.trim_end_matches(';')));
        }
        json!({ "type": "object", "properties": properties })
    }

    /// The schema of a TypeScript type expression.
    fn schema(&self, ty: &str) -> Value {
        let ty = ty.trim();
        if let Some(item) = ty.strip_suffix("[]") {
            return json!({ "type": "array", "items": self.schema(item) });
        }
        if ty.contains(" | ") {
            return json!({ "anyOf": ty.split(" | ").map(|t| self.schema(t)).collect::<Vec<_>>() });
        }
        if let Some(value) = ty.strip_prefix("Record<string, ").and_then(|t| t.strip_suffix('>')) {
            return json!({ "type": "object", "additionalProperties": self.schema(value) });
        }
        if self.names.contains(ty) {
            return json!({ "$ref": format!("#/components/schemas/{ty}") });
        }
        match self.aliases.get(ty) {
            Some(aliased) => self.schema(aliased),
            None => json!({ "type": ty }),
        }
    }
}
